// server_status: version, uptime, kernels, queue depths, executions by state, database size, event clients.
import { z } from 'zod';
import { defineTool, result, toolCallStats, toolSpec, type ToolRegistrar } from './common.js';

const SERVER_STATUS_SPEC = toolSpec('server_status', {
  title: 'Server status',
  description: 'Version, uptime, kernels, queue depths, executions by state, database size and connected event clients.',
  input: {},
  output: { version: z.string(), uptime_s: z.number() },
  annotations: { readOnlyHint: true },
});

export const registerServerTools: ToolRegistrar = (server, workspace) => {
  defineTool(server, SERVER_STATUS_SPEC, async () => {
    const status = workspace.status();
    const states = Object.entries(status.executionsByState)
      .filter(([, count]) => count > 0)
      .map(([state, count]) => `${state} ${count}`)
      .join(', ');
    const kernels = status.kernels.map(
      (kernel) =>
        `  ${kernel.notebookPath}: ${kernel.kernelName ?? '-'} ${kernel.status}, ${kernel.queueLength} queued` +
        (kernel.interruptIgnored ? ', ignoring an interrupt' : '') +
        (kernel.restartBlocked ? `; not restarted automatically: ${kernel.restartBlocked}` : ''),
    );
    const engine = status.engine;
    const calls = toolCallStats();
    const callLines = Object.entries(calls)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([tool, stats]) => `${tool} ${stats.calls}${stats.errors ? ` (${stats.errors} errors)` : ''}, mean ${((stats.totalSeconds / stats.calls) * 1000).toFixed(0)} ms`);
    const text = [
      `mcp-server-jupyter ${status.version}, up ${status.uptimeS}s, workspace ${status.workspace}`,
      `owned by process ${status.ownerPid ?? process.pid}; other server processes piping their clients to it: ${status.followerPids?.length ? status.followerPids.join(', ') : 'none'}`,
      `executions: ${states || 'none yet'}; queued now: ${status.queueDepth}`,
      `kernels: ${status.kernels.length}${kernels.length ? `\n${kernels.join('\n')}` : ''}`,
      `journal: ${(status.databaseBytes / 1024).toFixed(0)} KiB in ${status.stateDir}; event clients: ${status.eventClients}, events dropped: ${status.eventsDropped ?? 0}`,
      ...(engine
        ? [
            `kernel deaths: ${engine.kernelDeaths}; restarts: ${engine.restartsAfterDeath} after a death, ${engine.requestedRestarts} requested; breaker trips: ${engine.breakerTrips}; interrupts ignored: ${engine.interruptsIgnored}`,
            `queue limit: ${status.queueLimit ?? '-'} per kernel (refused: ${engine.queueFullRefusals}); journal write errors: ${engine.journalWriteErrors}`,
          ]
        : []),
      `tool calls: ${callLines.length ? callLines.join('; ') : 'none yet'}`,
    ].join('\n');
    return result({
      text,
      structured: {
        version: status.version,
        uptime_s: status.uptimeS,
        workspace: status.workspace,
        owner_pid: status.ownerPid ?? process.pid,
        follower_pids: status.followerPids ?? [],
        state_dir: status.stateDir,
        kernels: status.kernels,
        queue_depth: status.queueDepth,
        executions_by_state: status.executionsByState,
        database_bytes: status.databaseBytes,
        event_clients: status.eventClients,
        events_dropped: status.eventsDropped ?? 0,
        queue_limit: status.queueLimit ?? null,
        counters: engine
          ? {
              kernel_deaths: engine.kernelDeaths,
              kernel_restarts_after_death: engine.restartsAfterDeath,
              kernel_restarts_requested: engine.requestedRestarts,
              breaker_trips: engine.breakerTrips,
              interrupts_ignored: engine.interruptsIgnored,
              queue_full_refusals: engine.queueFullRefusals,
              journal_write_errors: engine.journalWriteErrors,
            }
          : null,
        tool_calls: Object.fromEntries(
          Object.entries(calls).map(([tool, stats]) => [
            tool,
            { calls: stats.calls, errors: stats.errors, mean_ms: Math.round((stats.totalSeconds / stats.calls) * 1000), max_ms: Math.round(stats.maxSeconds * 1000) },
          ]),
        ),
      },
    });
  });
};
