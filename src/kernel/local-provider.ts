// Starts local kernel processes (detached, connection file kept on disk) and re-attaches to them after a restart.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { chmod, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import path from 'node:path';
import { discoverKernelspecs, findKernelspec } from './kernelspecs.js';
import { LocalKernelSession, START_TIMEOUT_MS, appendLog, isProcessAlive, logTail, processStartTime, signalGroup, type KernelProcess } from './session.js';
import type { ConnectionInfo, KernelProvider, KernelSpec, StartOptions, StoredKernel } from './types.js';

export interface LocalKernelProviderOptions {
  /** Where connection files and kernel logs go. */
  runtimeDir: string;
  /** The workspace root (its `.venv` is a Python candidate for the python3 fallback). */
  workspace: string;
}

/** A stored kernel that fails to answer kernel_info within this time is treated as gone. */
const ATTACH_TIMEOUT_MS = 4_000;
const PORT_CLASH_RETRIES = 3;
const LOOPBACK = '127.0.0.1';
/** Logs of kernels that died are kept this long for their error messages, then removed at the next start. */
const DEAD_KERNEL_LOG_DAYS = 7;

/** Everything needed to launch (and relaunch) one kernel process. */
interface LaunchPlan {
  argv: string[];
  cwd: string;
  /** The kernelspec's own env, applied over ours. */
  env: Record<string, string>;
  connection: ConnectionInfo;
  connectionFile: string;
  logFile: string;
}

/** What `toStored().details` holds for a local kernel (validated when read back from the journal). */
interface LocalDetails {
  connection: ConnectionInfo;
  connectionFile: string;
  logFile: string;
  pid: number;
  startTime: string | null;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  interruptMode: 'signal' | 'message';
  instance: number;
  /** The previous server's client session id, reused so in-flight replies reach the re-attached sockets. */
  clientSession?: string;
}

export class LocalKernelProvider implements KernelProvider {
  readonly kind = 'local' as const;

  private logsPruned = false;

  constructor(private readonly options: LocalKernelProviderOptions) {}

  listSpecs(): Promise<KernelSpec[]> {
    return discoverKernelspecs({ workspace: this.options.workspace });
  }

  async start(options: StartOptions): Promise<LocalKernelSession> {
    const spec = await findKernelspec(options.kernelName, { workspace: this.options.workspace });
    const cwd = path.resolve(options.cwd);
    const cwdStat = await stat(cwd).catch(() => undefined);
    if (!cwdStat?.isDirectory()) throw new Error(`Cannot start kernel "${spec.name}": its working directory ${cwd} does not exist.`);
    await mkdir(this.options.runtimeDir, { recursive: true, mode: 0o700 });
    if (!this.logsPruned) {
      this.logsPruned = true;
      await this.pruneOldLogs();
    }
    const connectionFile = path.join(this.options.runtimeDir, `kernel-${options.id}.json`);
    const logFile = path.join(this.options.runtimeDir, `kernel-${options.id}.log`);

    for (let attempt = 1; ; attempt += 1) {
      const connection = await newConnectionInfo(spec.name);
      const plan: LaunchPlan = {
        argv: spec.argv.map((arg) => arg.replaceAll('{connection_file}', connectionFile).replaceAll('{resource_dir}', spec.resource_dir)),
        cwd,
        env: spec.env,
        connection,
        connectionFile,
        logFile,
      };
      const kernelProcess = await launch(plan).catch(async (error: unknown) => {
        await Promise.all([rm(connectionFile, { force: true }), rm(logFile, { force: true })]);
        throw new Error(
          `Cannot start kernel "${spec.name}": running ${plan.argv[0]} failed (${(error as Error).message}). ` +
            `The kernelspec in ${spec.resource_dir} (found via ${spec.source}) names that program; install it or fix kernel.json.`,
        );
      });
      const session = this.session(options.id, spec.name, spec.interrupt_mode, plan, kernelProcess, 0);
      try {
        await session.waitReady(START_TIMEOUT_MS, 'shell');
        return session;
      } catch (error) {
        // Ports are chosen free but released before the kernel binds them; another process may take one meanwhile.
        const portClash = /address already in use/i.test(logTail(logFile, 50));
        await session.shutdown({ keepLog: true }).catch(() => undefined);
        if (portClash && attempt < PORT_CLASH_RETRIES) continue;
        throw error;
      }
    }
  }

  async attach(stored: StoredKernel): Promise<LocalKernelSession | null> {
    if (stored.provider !== 'local') return null;
    const details = parseDetails(stored.details);
    if (!details || !isProcessAlive(details.pid, details.startTime)) return null;
    const plan: LaunchPlan = {
      argv: details.argv,
      cwd: details.cwd,
      env: details.env,
      connection: details.connection,
      connectionFile: details.connectionFile,
      logFile: details.logFile,
    };
    const kernelProcess: KernelProcess = { pid: details.pid, startTime: details.startTime };
    const session = this.session(stored.id, stored.kernelName, details.interruptMode, plan, kernelProcess, details.instance, details.clientSession);
    try {
      // On control: it answers even while a cell is running on shell.
      await session.waitReady(ATTACH_TIMEOUT_MS, 'control');
      return session;
    } catch {
      await session.detach();
      return null;
    }
  }

  /**
   * A connection file is written before its kernel is launched and removed when it is shut down, so one that no
   * journal row names and that predates this process is the trace of a kernel a dead server never recorded. The
   * processes started on it are killed (it never ran user code: that waits for the record) and the file goes.
   */
  async reapUnrecorded(recordedIds: ReadonlySet<string>): Promise<number> {
    const dir = this.options.runtimeDir;
    const bornAt = performance.timeOrigin;
    const orphans: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const id = /^kernel-(.+)\.json$/.exec(name)?.[1];
      if (id === undefined || recordedIds.has(id)) continue;
      const info = await stat(path.join(dir, name)).catch(() => undefined);
      // Newer files are kernels this process is starting right now.
      if (info && info.mtimeMs < bornAt) orphans.push(path.join(dir, name));
    }
    if (orphans.length === 0) return 0;
    let killed = 0;
    for (const pid of processesNaming(orphans)) if (signalGroup(pid, 'SIGKILL')) killed += 1;
    await Promise.all(orphans.map((file) => rm(file, { force: true })));
    return killed;
  }

  /**
   * A dead kernel's log stays while someone may still read the error that points at it; one that is old and has no
   * connection file beside it (no live kernel: a shut-down kernel removes both) goes.
   */
  private async pruneOldLogs(): Promise<void> {
    const dir = this.options.runtimeDir;
    const names = await readdir(dir).catch(() => [] as string[]);
    const cutoff = Date.now() - DEAD_KERNEL_LOG_DAYS * 86_400_000;
    for (const name of names) {
      const match = /^kernel-(.+)\.log$/.exec(name);
      if (!match || names.includes(`kernel-${match[1]}.json`)) continue;
      const info = await stat(path.join(dir, name)).catch(() => undefined);
      if (info && info.mtimeMs < cutoff) await rm(path.join(dir, name), { force: true }).catch(() => undefined);
    }
  }

  private session(
    id: string,
    kernelName: string,
    interruptMode: 'signal' | 'message',
    plan: LaunchPlan,
    kernelProcess: KernelProcess,
    instance: number,
    clientSession?: string,
  ): LocalKernelSession {
    return new LocalKernelSession({
      id,
      kernelName,
      connection: plan.connection,
      connectionFile: plan.connectionFile,
      logFile: plan.logFile,
      interruptMode,
      process: kernelProcess,
      instance,
      relaunch: () => launch(plan),
      storedDetails: { argv: plan.argv, cwd: plan.cwd, env: plan.env },
      ...(clientSession ? { clientSession } : {}),
    });
  }
}

async function newConnectionInfo(kernelName: string): Promise<ConnectionInfo> {
  const [shell, iopub, stdin, control, hb] = await freePorts(5);
  if (shell === undefined || iopub === undefined || stdin === undefined || control === undefined || hb === undefined) {
    throw new Error('Could not reserve five free TCP ports on 127.0.0.1 for the kernel.');
  }
  return {
    transport: 'tcp',
    ip: LOOPBACK,
    shell_port: shell,
    iopub_port: iopub,
    stdin_port: stdin,
    control_port: control,
    hb_port: hb,
    key: randomBytes(32).toString('hex'),
    signature_scheme: 'hmac-sha256',
    kernel_name: kernelName,
  };
}

/** Distinct free ports: all are held open at once so the OS cannot hand out the same one twice. */
export async function freePorts(count: number, host = LOOPBACK): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, host, () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return ports;
}

/** Writes the connection file (0600: it holds the signing key) and spawns the kernel in its own process group. */
async function launch(plan: LaunchPlan): Promise<KernelProcess> {
  await writeFile(plan.connectionFile, JSON.stringify(plan.connection, null, 2), { mode: 0o600 });
  await chmod(plan.connectionFile, 0o600);
  await appendLog(plan.logFile, `launching: ${plan.argv.join(' ')} (cwd: ${plan.cwd})`);

  const env: NodeJS.ProcessEnv = { ...process.env, ...plan.env };
  // With JPY_PARENT_PID set, ipykernel exits when that process dies; our kernels must outlive a server crash.
  delete env['JPY_PARENT_PID'];
  const [command, ...args] = plan.argv;
  if (command === undefined) throw new Error('the kernelspec argv is empty');

  // The log is a file, not a pipe: a pipe would break (and could kill the kernel with SIGPIPE) when we die.
  const logFd = openSync(plan.logFile, 'a', 0o600);
  try {
    const child = spawn(command, args, { cwd: plan.cwd, env, detached: true, stdio: ['ignore', logFd, logFd] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    // Later 'error' events (e.g. a failed kill) must not crash the server; exit is what we act on.
    child.on('error', () => undefined);
    const pid = child.pid;
    if (pid === undefined) throw new Error('the process has no pid');
    return { pid, startTime: processStartTime(pid), child };
  } finally {
    closeSync(logFd);
  }
}

function parseDetails(details: Record<string, unknown>): LocalDetails | undefined {
  const { connection, connectionFile, logFile, pid, startTime, argv, cwd, env, interruptMode, instance, clientSession } = details;
  if (!isConnectionInfo(connection)) return undefined;
  if (typeof connectionFile !== 'string' || typeof logFile !== 'string' || typeof cwd !== 'string') return undefined;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return undefined;
  if (startTime !== null && typeof startTime !== 'string') return undefined;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string')) return undefined;
  if (typeof env !== 'object' || env === null || !Object.values(env).every((v) => typeof v === 'string')) return undefined;
  if (interruptMode !== 'signal' && interruptMode !== 'message') return undefined;
  if (typeof instance !== 'number' || !Number.isInteger(instance)) return undefined;
  return {
    connection,
    connectionFile,
    logFile,
    pid,
    startTime,
    argv: argv as string[],
    cwd,
    env: env as Record<string, string>,
    interruptMode,
    instance,
    ...(typeof clientSession === 'string' && clientSession.length > 0 ? { clientSession } : {}),
  };
}

function isConnectionInfo(value: unknown): value is ConnectionInfo {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  const ports = ['shell_port', 'iopub_port', 'stdin_port', 'control_port', 'hb_port'];
  return (
    (v['transport'] === 'tcp' || v['transport'] === 'ipc') &&
    typeof v['ip'] === 'string' &&
    typeof v['key'] === 'string' &&
    typeof v['signature_scheme'] === 'string' &&
    ports.every((port) => typeof v[port] === 'number')
  );
}

/** Processes whose command line has one of `files` as an argument (Linux: /proc; elsewhere nothing is found). */
function processesNaming(files: readonly string[]): number[] {
  const wanted = new Set(files);
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv.some((arg) => [...wanted].some((file) => arg.includes(file)))) pids.push(Number(entry));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}
