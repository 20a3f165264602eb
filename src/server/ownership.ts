// Who owns a workspace: the one process bound to its state directory's socket; every other process connects to it.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { linkSync, readFileSync, realpathSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

/** What a follower learns about the owner in the handshake. */
export interface OwnerInfo {
  pid: number;
  workspace: string;
  version: string;
}

export type Ownership = { role: 'owner'; listener: OwnerListener } | { role: 'follower'; socket: net.Socket; owner: OwnerInfo };

/** Not a race that a retry can win: a wrong key, another workspace on the same state directory, a socket we cannot bind. */
export class OwnershipError extends Error {}

const HANDSHAKE_TIMEOUT_MS = 10_000;
const MAX_HANDSHAKE_LINE = 4_096;

/**
 * The socket address of a state directory. On Linux an abstract socket: binding it is the election (atomic), and the
 * kernel releases it when the owner dies, so there is never a stale lock to clean up.
 */
export function ownerAddress(stateDir: string, platform: NodeJS.Platform = process.platform): string {
  const real = realpathSync(stateDir);
  const digest = createHash('sha256').update(real).digest('hex').slice(0, 32);
  if (platform === 'linux') return `\0mcp-jupyter-${digest}`;
  if (platform === 'win32') return `\\\\?\\pipe\\mcp-jupyter-${digest}`;
  const inside = join(real, 'owner.sock');
  // sun_path holds about 104 bytes on macOS and the BSDs.
  return Buffer.byteLength(inside) < 100 ? inside : join(tmpdir(), `mcp-jupyter-${digest}.sock`);
}

/**
 * The workspace's shared secret (`owner.key`, mode 0600, made once). An abstract socket has no file permissions:
 * any local user could connect to it, so both ends prove they can read this file before a byte of MCP flows.
 */
export function workspaceKey(stateDir: string): Buffer {
  const path = join(stateDir, 'owner.key');
  const read = (): Buffer | null => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8').trim();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new OwnershipError(`cannot read ${path} (${(error as Error).message}); it must be readable by the user who runs the server.`);
    }
    if (!/^[0-9a-f]{64}$/.test(text)) throw new OwnershipError(`${path} is damaged (not a 64-digit hex key); delete it while no server runs on this workspace, and start again.`);
    return Buffer.from(text, 'hex');
  };
  const existing = read();
  if (existing) return existing;
  // Written whole under another name, then linked in: a racing process sees no file or the complete key, never half of it.
  const temp = join(stateDir, `owner.key.${process.pid}.${randomBytes(4).toString('hex')}`);
  writeFileSync(temp, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  try {
    linkSync(temp, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(temp);
  }
  const made = read();
  if (!made) throw new OwnershipError(`${path} vanished while it was being created; start again.`);
  return made;
}

function proof(key: Buffer, role: 'owner' | 'follower', nonce: string): string {
  return createHmac('sha256', key).update(`${role}:${nonce}`).digest('hex');
}

function proofMatches(key: Buffer, role: 'owner' | 'follower', nonce: string, given: unknown): boolean {
  if (typeof given !== 'string' || !/^[0-9a-f]{64}$/.test(given)) return false;
  return timingSafeEqual(Buffer.from(proof(key, role, nonce), 'hex'), Buffer.from(given, 'hex'));
}

/**
 * Reads one newline-terminated line and leaves the stream paused with whatever followed it unread, so the next reader
 * (an MCP transport, the pipe) gets every byte. The next reader must call `resume()`.
 */
export function readLine(stream: Duplex, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (error: Error | null, line = ''): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('close', onClose);
      stream.off('error', onError);
      stream.pause();
      if (error) reject(error);
      else resolve(line);
    };
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf(10);
      if (end < 0) {
        if (buffered.length > MAX_HANDSHAKE_LINE) finish(new Error('the peer sent a line too long for a handshake'));
        return;
      }
      const rest = buffered.subarray(end + 1);
      finish(null, buffered.toString('utf8', 0, end));
      if (rest.length > 0) stream.unshift(rest);
    };
    const onClose = (): void => finish(new Error('the connection closed during the handshake'));
    const onError = (error: Error): void => finish(error);
    const timer = setTimeout(() => finish(new Error(`no handshake within ${timeoutMs} ms`)), timeoutMs);
    stream.on('data', onData);
    stream.once('close', onClose);
    stream.once('error', onError);
    stream.resume();
  });
}

function parseObject(line: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The owner's side of a new connection: proves it holds the key, checks that the peer does, and says who it is.
 * Resolves with the follower's pid; rejects (and the caller drops the connection) when the peer cannot prove it.
 */
export async function ownerHandshake(socket: Duplex, key: Buffer, info: OwnerInfo): Promise<{ pid: number }> {
  const nonce = randomBytes(16).toString('hex');
  socket.write(`${JSON.stringify({ mcpJupyter: 'owner', pid: info.pid, nonce })}\n`);
  const reply = parseObject(await readLine(socket));
  if (!reply || reply['mcpJupyter'] !== 'follower' || typeof reply['pid'] !== 'number' || typeof reply['nonce'] !== 'string') {
    throw new Error('the peer does not speak the follower handshake');
  }
  if (!proofMatches(key, 'follower', nonce, reply['proof'])) {
    // Said, so that a process with another key gives up at once instead of retrying; nothing secret is in it.
    socket.end(`${JSON.stringify({ mcpJupyter: 'refused', reason: 'wrong key' })}\n`);
    throw new Error(`process ${reply['pid']} does not hold this workspace's key`);
  }
  socket.write(`${JSON.stringify({ mcpJupyter: 'welcome', proof: proof(key, 'owner', reply['nonce']), workspace: info.workspace, version: info.version })}\n`);
  return { pid: reply['pid'] };
}

/** The follower's side: checks that the owner holds the key and serves the same workspace root. */
export async function followerHandshake(socket: Duplex, key: Buffer, workspace: string): Promise<OwnerInfo> {
  const hello = parseObject(await readLine(socket));
  if (!hello || hello['mcpJupyter'] !== 'owner' || typeof hello['pid'] !== 'number' || typeof hello['nonce'] !== 'string') {
    throw new OwnershipError(`another program listens on this workspace's socket and does not speak the mcp-server-jupyter handshake; stop it, or use another --state-dir.`);
  }
  const ownerPid = hello['pid'];
  const nonce = randomBytes(16).toString('hex');
  socket.write(`${JSON.stringify({ mcpJupyter: 'follower', pid: process.pid, nonce, proof: proof(key, 'follower', hello['nonce']) })}\n`);
  const welcome = parseObject(await readLine(socket));
  if (welcome?.['mcpJupyter'] === 'refused') {
    throw new OwnershipError(
      `process ${ownerPid}, which owns this workspace, does not accept this process's key (owner.key in the state directory was replaced while it ran?). Stop process ${ownerPid} and start again.`,
    );
  }
  if (!welcome || welcome['mcpJupyter'] !== 'welcome' || !proofMatches(key, 'owner', nonce, welcome['proof'])) {
    throw new OwnershipError(`process ${ownerPid} answers on this workspace's socket but does not hold its key (owner.key in the state directory); stop that process, or use another --state-dir.`);
  }
  const ownerWorkspace = String(welcome['workspace']);
  if (ownerWorkspace !== workspace) {
    throw new OwnershipError(
      `the state directory is already used by process ${ownerPid} for the workspace ${ownerWorkspace}, not ${workspace}. Give this workspace its own --state-dir, or start with --workspace ${ownerWorkspace}.`,
    );
  }
  return { pid: ownerPid, workspace: ownerWorkspace, version: String(welcome['version']) };
}

/**
 * The bound socket of the owner. Connections that arrive before the owner has opened its workspace wait here and are
 * handed over by `accept`, so none is dropped during start-up.
 */
export class OwnerListener {
  private readonly waiting: net.Socket[] = [];
  private handler: ((socket: net.Socket) => void) | null = null;

  constructor(
    readonly server: net.Server,
    readonly address: string,
    readonly key: Buffer,
  ) {
    server.on('connection', (socket) => {
      if (this.handler) this.handler(socket);
      else this.waiting.push(socket);
    });
  }

  accept(handler: (socket: net.Socket) => void): void {
    this.handler = handler;
    for (const socket of this.waiting.splice(0)) handler(socket);
  }

  /** Unbinds the address (a waiting process can then win it); open connections are the caller's to end. */
  close(): Promise<void> {
    for (const socket of this.waiting.splice(0)) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function tryListen(address: string): Promise<net.Server | null> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    const onError = (error: NodeJS.ErrnoException): void => {
      server.close();
      if (error.code === 'EADDRINUSE') resolve(null);
      else reject(new OwnershipError(`cannot bind the workspace socket ${printable(address)} (${error.message}).`));
    };
    server.once('error', onError);
    server.listen(address, () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}

function connect(address: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(address);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

function printable(address: string): string {
  return address.startsWith('\0') ? `@${address.slice(1)}` : address;
}

export interface AcquireOptions {
  /** The workspace root this process serves: a follower refuses an owner of another root. */
  workspace: string;
  /** How long to keep trying while an owner is starting or stopping (default 60 s). */
  patienceMs?: number;
}

/**
 * Becomes the owner of the state directory, or connects to the process that is. An owner that is just starting or
 * stopping refuses connections for a moment; that race is retried with a short backoff until `patienceMs` passes.
 */
export async function acquireOrFollow(stateDir: string, options: AcquireOptions): Promise<Ownership> {
  const address = ownerAddress(stateDir);
  const key = workspaceKey(stateDir);
  const deadline = Date.now() + (options.patienceMs ?? 60_000);
  let delayMs = 10;
  let lastProblem = '';
  for (;;) {
    const server = await tryListen(address);
    if (server) return { role: 'owner', listener: new OwnerListener(server, address, key) };
    let socket: net.Socket | null = null;
    try {
      socket = await connect(address);
      const owner = await followerHandshake(socket, key, options.workspace);
      // Every error is followed by 'close', which the pipe watches; unheard, an error would end the process.
      socket.on('error', () => undefined);
      return { role: 'follower', socket, owner };
    } catch (error) {
      socket?.destroy();
      if (error instanceof OwnershipError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      // A socket file left by a crash (never on Linux, whose abstract names die with their owner).
      if (code === 'ECONNREFUSED' && !address.startsWith('\0') && !address.startsWith('\\\\')) {
        try {
          unlinkSync(address);
        } catch {
          // Another process removed it first.
        }
      }
      lastProblem = (error as Error).message;
    }
    if (Date.now() >= deadline) {
      throw new OwnershipError(
        `another process holds this workspace (socket ${printable(address)}) but did not let this one join within ${options.patienceMs ?? 60_000} ms (${lastProblem}). Check for a stuck mcp-server-jupyter process on this workspace.`,
      );
    }
    // The owner is starting or stopping: it releases the address or completes its handshake within moments.
    await sleep(delayMs);
    delayMs = Math.min(delayMs * 2, 250);
  }
}
