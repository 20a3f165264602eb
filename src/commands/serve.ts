// `serve`: the MCP server over stdio (default) or Streamable HTTP, on one shared workspace.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { packageRoot } from '../kernel/kernelspecs.js';
import { createLogger } from '../log.js';
import { createEventSocket } from '../server/event-socket.js';
import { startHttpServer } from '../server/http.js';
import { generateToken } from '../server/http-guard.js';
import { FollowerPipe } from '../server/follower-pipe.js';
import { createMcpServer } from '../server/mcp.js';
import { ClientTransport, WorkspaceOwner } from '../server/owner-endpoint.js';
import { acquireOrFollow, type OwnerListener } from '../server/ownership.js';
import { Workspace } from '../server/workspace.js';
import { LocalKernelProvider } from '../kernel/local-provider.js';
import { RemoteKernelProvider, parseHeader } from '../kernel/remote-provider.js';
import { SwitchingProvider } from '../kernel/switching-provider.js';
import type { KernelProvider } from '../kernel/types.js';
import type { Logger } from '../log.js';
import { connectServer } from '../server/connect.js';

export async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      workspace: { type: 'string' },
      http: { type: 'string' },
      token: { type: 'string' },
      'state-dir': { type: 'string' },
      'jupyter-url': { type: 'string' },
      'jupyter-token': { type: 'string' },
      'jupyter-header': { type: 'string', multiple: true },
      'jupyter-ca': { type: 'string' },
      'allowed-host': { type: 'string', multiple: true },
      'allowed-origin': { type: 'string', multiple: true },
      'resume-on-new-kernel': { type: 'boolean' },
    },
  });
  const config = loadConfig({
    workspace: values.workspace,
    stateDir: values['state-dir'],
    http: values.http,
    token: values.token,
    jupyterUrl: values['jupyter-url'],
    jupyterToken: values['jupyter-token'],
    resumeOnNewKernel: values['resume-on-new-kernel'],
  });
  const log = createLogger(config.logLevel);
  let provider: KernelProvider | undefined;
  if (config.jupyterUrl) {
    const remote = await connectRemote(config.jupyterUrl, config.jupyterToken, values['jupyter-header'] ?? [], values['jupyter-ca'], config.workspace, log);
    if (!remote) return 2;
    // Local kernels left running by an earlier run without --jupyter-url are re-attached and finish their work.
    provider = new SwitchingProvider(remote, [new LocalKernelProvider({ runtimeDir: join(config.stateDir, 'kernels'), workspace: config.workspace })]);
  } else if (values['jupyter-header'] || values['jupyter-ca']) {
    process.stderr.write('mcp-server-jupyter: --jupyter-header and --jupyter-ca apply to a remote server: add --jupyter-url URL.\n');
    return 2;
  }
  let owner: WorkspaceOwner | null = null;
  // Opens the workspace as its owner: at start, or when this process takes over from an owner that stopped.
  const own = (listener: OwnerListener): Workspace => {
    const workspace = Workspace.open(config, log, provider);
    log('info', 'workspace open', { workspace: config.workspace, stateDir: config.stateDir });
    // Serving starts right away; each notebook's new work waits behind its own recovery.
    const recovery = workspace.engine.recover({ resumeOnNewKernel: config.resumeOnNewKernel });
    recovery.done.then(
      () => log('info', 'recovery finished', { notebooks: recovery.notebooks, running: recovery.running, pending: recovery.pending }),
      (error: Error) => log('error', 'recovery failed', { error: error.message }),
    );
    owner = new WorkspaceOwner(workspace, listener, { createServer: createMcpServer, log });
    // Its own client and every other process's client gone (never so for an HTTP owner, whose clients come and go).
    void owner.unused.then((why) => stop(why)).then(() => process.exit(0));
    return workspace;
  };

  let stopping: Promise<void> | null = null;
  const stop = (why: string): Promise<void> => {
    // Assigned before any of it runs: closing the transport fires its close handler, which calls stop() again.
    stopping ??= Promise.resolve().then(async () => {
      log('info', 'stopping', { why });
      await closeServers();
      // Idle kernels are shut down (unless other processes are connected: one of them takes over and re-attaches them);
      // kernels with queued or running work keep running for the next start to resume.
      await owner?.close();
    });
    return stopping;
  };
  let closeServers: () => Promise<void> = async () => undefined;

  // One process owns the workspace (journal, kernels, notebooks); any other one started on it pipes its client there.
  const ownership = await acquireOrFollow(config.stateDir, { workspace: config.workspace });
  if (ownership.role === 'follower') {
    if (config.http) {
      ownership.socket.destroy();
      process.stderr.write(
        `mcp-server-jupyter: process ${ownership.owner.pid} already serves the workspace ${config.workspace}; an HTTP server must own its workspace. Stop that process first (its stdio clients are taken over by the others), or start this one without --http to join it.\n`,
      );
      return 2;
    }
    const pipe = new FollowerPipe({
      input: process.stdin,
      output: process.stdout,
      upstream: { socket: ownership.socket, owner: ownership.owner },
      log,
      reconnect: async () => {
        const next = await acquireOrFollow(config.stateDir, { workspace: config.workspace });
        if (next.role === 'follower') return { socket: next.socket, owner: next.owner };
        own(next.listener);
        // This process's client keeps coming through the pipe, now over the socket to itself.
        const self = await acquireOrFollow(config.stateDir, { workspace: config.workspace });
        if (self.role !== 'follower') throw new Error('this process owns the workspace socket but could not connect to it');
        return { socket: self.socket, owner: self.owner };
      },
    });
    closeServers = async () => pipe.close();
    void pipe.done.then((how) => {
      if (how === 'failed') void stop('could not take the workspace over').then(() => process.exit(1));
      else if (owner) owner.clientLeft();
      else if (stopping === null) process.exit(0);
    });
  }
  const workspace = ownership.role === 'owner' ? own(ownership.listener) : null;

  if (workspace && config.http) {
    const token = config.token ?? generateToken();
    const root = packageRoot();
    const events = createEventSocket({ workspace, log });
    const http = await startHttpServer({
      workspace,
      createServer: () => createMcpServer(workspace),
      host: config.http.host,
      port: config.http.port,
      token,
      log,
      sessionIdleMs: config.sessionIdleS * 1000,
      ...(values['allowed-host'] ? { allowedHosts: values['allowed-host'] } : {}),
      ...(values['allowed-origin'] ? { allowedOrigins: values['allowed-origin'] } : {}),
      ...(root ? { staticDir: join(root, 'web') } : {}),
      onUpgrade: events.handleUpgrade,
    });
    closeServers = async () => {
      await events.close();
      await http.close();
    };
    const shownToken = config.token ? '(the token you gave)' : token;
    process.stderr.write(
      `mcp-server-jupyter listening on ${http.url}/mcp\n  token: ${shownToken}\n  monitor: ${http.url}/?token=${config.token ? '<your token>' : token}\n  workspace: ${config.workspace}\n  secrets in tool results: ${config.redact ? 'redacted (MCP_JUPYTER_REDACT=off to show them)' : 'shown (MCP_JUPYTER_REDACT=on to redact them)'}\n`,
    );
  } else if (workspace) {
    const server = createMcpServer(workspace);
    const transport = new ClientTransport(process.stdin, process.stdout);
    // The owner outlives its own client while other processes' clients still use the workspace (see WorkspaceOwner);
    // the calls its client left waiting go on as theirs do.
    let clientGone = false;
    const clientLeft = (): void => {
      // Closing the server closes the transport, which calls this again.
      if (clientGone) return;
      clientGone = true;
      transport.peerGone(() => void server.close());
      owner?.clientLeft();
    };
    transport.onclose = clientLeft;
    process.stdin.on('end', clientLeft);
    await connectServer(server, transport);
    closeServers = () => server.close();
    log('info', 'serving MCP over stdio');
  }

  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => void stop(signal).then(resolve));
    }
  });
  return 0;
}

/**
 * The remote kernel provider, checked before anything is recovered onto it: a wrong token, URL or CA is said at
 * once (exit 2) instead of at the first cell. Prints which server is used.
 */
async function connectRemote(
  url: string,
  token: string | null,
  rawHeaders: string[],
  caFile: string | undefined,
  workspace: string,
  log: Logger,
): Promise<RemoteKernelProvider | null> {
  try {
    const headers = Object.fromEntries(rawHeaders.map(parseHeader));
    const remote = new RemoteKernelProvider({ url, token, headers, ...(caFile ? { caFile } : {}), workspaceRoot: workspace, log });
    const found = await remote.check();
    process.stderr.write(
      `mcp-server-jupyter: kernels run on the Jupyter server at ${remote.url}` +
        `${found.version ? ` (Jupyter Server ${found.version})` : ''}; kernelspecs: ${found.kernelspecs.join(', ') || 'none'}\n`,
    );
    return remote;
  } catch (error) {
    process.stderr.write(`mcp-server-jupyter: ${(error as Error).message}\n`);
    return null;
  }
}
