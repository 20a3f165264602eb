// Test fixture: a real `jupyter server` on a loopback port with a token, and a TCP proxy whose connections a test can cut.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';

export const JUPYTER = join(REPO_ROOT, '.venv', 'bin', 'jupyter');

export interface JupyterServerFixture {
  /** `http(s)://127.0.0.1:PORT/` (with `baseUrl`'s prefix when one was given). */
  url: string;
  port: number;
  token: string;
  /** The server's root_dir (a temp dir removed by stop()). */
  rootDir: string;
  process: ChildProcess;
  /** Everything the server logged so far. */
  log(): string;
  /** Stops the server, kills any kernel it left behind, removes its temp dirs. */
  stop(): Promise<void>;
}

export interface JupyterServerOptions {
  token?: string;
  /** A path prefix like `/user/alice/`, as JupyterHub gives each user's server. */
  baseUrl?: string;
  /** Serve https/wss with this certificate and key (PEM files). */
  tls?: { certFile: string; keyFile: string };
  /** Extra `--Class.trait=value` arguments. */
  args?: string[];
  /** Python for its `jupyter_server_config.py` (e.g. a kernel WebSocket connection class). */
  configPy?: string;
}

export async function startJupyterServer(options: JupyterServerOptions = {}): Promise<JupyterServerFixture> {
  const token = options.token ?? 'test-jupyter-token-0123456789';
  const home = mkdtempSync(join(tmpdir(), 'mcpj-jupyter-server-'));
  const rootDir = join(home, 'root');
  const runtimeDir = join(home, 'runtime');
  const configDir = join(home, 'config');
  const args = [
    'server',
    `--IdentityProvider.token=${token}`,
    '--ServerApp.ip=127.0.0.1',
    '--ServerApp.port=0',
    '--ServerApp.port_retries=0',
    '--no-browser',
    '--allow-root',
    `--ServerApp.root_dir=${rootDir}`,
    ...(options.baseUrl ? [`--ServerApp.base_url=${options.baseUrl}`] : []),
    ...(options.tls ? [`--ServerApp.certfile=${options.tls.certFile}`, `--ServerApp.keyfile=${options.tls.keyFile}`] : []),
    ...(options.args ?? []),
  ];
  for (const dir of [rootDir, runtimeDir, configDir]) mkdirSync(dir, { recursive: true });
  if (options.configPy) writeFileSync(join(configDir, 'jupyter_server_config.py'), options.configPy);
  // Its own runtime and config dirs: nothing from the user's Jupyter setup, and its kernels are findable by path.
  const child = spawn(JUPYTER, args, {
    cwd: rootDir,
    env: { ...process.env, JUPYTER_RUNTIME_DIR: runtimeDir, JUPYTER_CONFIG_DIR: configDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);

  const cleanUp = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      // SIGTERM: the server shuts its kernels down before it exits.
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    killProcessesMentioning(runtimeDir);
    rmSync(home, { recursive: true, force: true });
  };

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`jupyter server did not print its URL within 30 s:\n${output}`)), 30_000);
      const look = (): void => {
        const match = /https?:\/\/127\.0\.0\.1:(\d+)\//.exec(output);
        if (match?.[1]) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      };
      child.stdout.on('data', look);
      child.stderr.on('data', look);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`jupyter server exited with ${String(code)} before it listened:\n${output}`));
      });
    });
  } catch (error) {
    await cleanUp();
    throw error;
  }
  const prefix = options.baseUrl ? `/${options.baseUrl.replace(/^\/+|\/+$/g, '')}/` : '/';
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}${prefix}`,
    port,
    token,
    rootDir,
    process: child,
    log: () => output,
    stop: cleanUp,
  };
}

/** SIGKILLs every process whose command line mentions `fragment` (kernels find their connection file there). */
export function killProcessesMentioning(fragment: string): number {
  let killed = 0;
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (!cmdline.includes(fragment)) continue;
      process.kill(Number(pid), 'SIGKILL');
      killed += 1;
    } catch {
      // It ended while we looked.
    }
  }
  return killed;
}

export interface TcpProxy {
  port: number;
  /** Connections currently open through the proxy. */
  readonly open: number;
  /** Destroys every open connection on both sides, as a network failure would; new connections still work. */
  cut(): void;
  close(): Promise<void>;
}

/** A loopback TCP proxy to `targetPort`. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('the proxy has no TCP address');
  const cut = (): void => {
    for (const [client, upstream] of [...pairs]) {
      client.destroy();
      upstream.destroy();
    }
    pairs.clear();
  };
  return {
    port: address.port,
    get open() {
      return pairs.size;
    },
    cut,
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
