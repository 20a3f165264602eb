// `serve`: the MCP server over stdio (default) or Streamable HTTP, on one shared workspace.
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { packageRoot } from '../kernel/kernelspecs.js';
import { createLogger } from '../log.js';
import { createEventSocket } from '../server/event-socket.js';
import { startHttpServer } from '../server/http.js';
import { generateToken } from '../server/http-guard.js';
import { createMcpServer } from '../server/mcp.js';
import { Workspace } from '../server/workspace.js';

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
  if (config.jupyterUrl) {
    // Said plainly rather than silently running kernels locally when the user asked for remote ones.
    process.stderr.write('mcp-server-jupyter: remote kernels (--jupyter-url) are not available in this version yet; kernels run locally. Remove --jupyter-url to continue.\n');
    return 2;
  }
  const log = createLogger(config.logLevel);
  const workspace = Workspace.open(config, log);
  log('info', 'workspace open', { workspace: config.workspace, stateDir: config.stateDir });
  // Serving starts right away; each notebook's new work waits behind its own recovery.
  const recovery = workspace.engine.recover({ resumeOnNewKernel: config.resumeOnNewKernel });
  recovery.done.then(
    () => log('info', 'recovery finished', { notebooks: recovery.notebooks, running: recovery.running, pending: recovery.pending }),
    (error: Error) => log('error', 'recovery failed', { error: error.message }),
  );

  let stopping: Promise<void> | null = null;
  const stop = (why: string): Promise<void> => {
    // Assigned before any of it runs: closing the transport fires its close handler, which calls stop() again.
    stopping ??= Promise.resolve().then(async () => {
      log('info', 'stopping', { why });
      await closeServers();
      // Idle kernels are shut down; kernels with queued or running work keep running for the next start to resume.
      await workspace.close({ shutdownIdleKernels: true });
    });
    return stopping;
  };
  let closeServers: () => Promise<void> = async () => undefined;

  if (config.http) {
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
      `mcp-server-jupyter listening on ${http.url}/mcp\n  token: ${shownToken}\n  monitor: ${http.url}/?token=${config.token ? '<your token>' : token}\n  workspace: ${config.workspace}\n`,
    );
  } else {
    const server = createMcpServer(workspace);
    const transport = new StdioServerTransport();
    transport.onclose = () => void stop('stdin closed').then(() => process.exit(0));
    process.stdin.on('end', () => void stop('stdin closed').then(() => process.exit(0)));
    await server.connect(transport);
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
