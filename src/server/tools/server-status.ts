// server_status: version, uptime, kernels, queue depths, executions by state, database size, event clients.
import { z } from 'zod';
import { defineTool, result, type ToolRegistrar } from './common.js';

export const registerServerTools: ToolRegistrar = (server, workspace) => {
  defineTool(server, 'server_status', {
    title: 'Server status',
    description: 'Version, uptime, kernels, queue depths, executions by state, database size and connected event clients.',
    input: {},
    output: { version: z.string(), uptime_s: z.number() },
    annotations: { readOnlyHint: true },
    handler: async () => {
      const status = workspace.status();
      const states = Object.entries(status.executionsByState)
        .filter(([, count]) => count > 0)
        .map(([state, count]) => `${state} ${count}`)
        .join(', ');
      const kernels = status.kernels.map((kernel) => `  ${kernel.notebookPath}: ${kernel.kernelName ?? '-'} ${kernel.status}, ${kernel.queueLength} queued`);
      const text = [
        `mcp-server-jupyter ${status.version}, up ${status.uptimeS}s, workspace ${status.workspace}`,
        `executions: ${states || 'none yet'}; queued now: ${status.queueDepth}`,
        `kernels: ${status.kernels.length}${kernels.length ? `\n${kernels.join('\n')}` : ''}`,
        `journal: ${(status.databaseBytes / 1024).toFixed(0)} KiB in ${status.stateDir}; event clients: ${status.eventClients}`,
      ].join('\n');
      return result({
        text,
        structured: {
          version: status.version,
          uptime_s: status.uptimeS,
          workspace: status.workspace,
          state_dir: status.stateDir,
          kernels: status.kernels,
          queue_depth: status.queueDepth,
          executions_by_state: status.executionsByState,
          database_bytes: status.databaseBytes,
          event_clients: status.eventClients,
        },
      });
    },
  });
};
