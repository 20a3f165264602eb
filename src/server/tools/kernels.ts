// Kernel tools: list_kernelspecs, list_kernels, start / interrupt / restart / shutdown a notebook's kernel.
import { z } from 'zod';
import { kernelspecOf } from '../../notebook/nbformat.js';
import { interruptIgnoredText } from '../execution-result.js';
import type { Workspace } from '../workspace.js';
import { defineTool, kernelNameSchema, notebookPathSchema, result, ToolInputError, toolSpec, type ToolRegistrar } from './common.js';

function kernelSummary(workspace: Workspace, notebookPath: string): Record<string, unknown> {
  const kernel = workspace.engine.existingKernel(notebookPath);
  const session = kernel?.session;
  return {
    notebook_path: notebookPath,
    kernel_id: session?.id ?? null,
    kernel_name: session?.kernelName ?? null,
    location: session?.location ?? null,
    status: session?.status ?? (kernel?.breaker ? 'dead' : 'not started'),
    instance: session?.instance ?? null,
    language: session?.info?.languageName ?? null,
    queue_length: kernel?.queueLength ?? 0,
    running_execution_id: kernel?.running?.id ?? null,
    restart_blocked: kernel?.refusal() ?? null,
  };
}

const LIST_KERNELSPECS_SPEC = toolSpec('list_kernelspecs', {
  title: 'List kernelspecs',
  description: 'Installed kernelspecs: name, display name, language, and where each was found.',
  input: {},
  output: { kernelspecs: z.array(z.object({ name: z.string() }).passthrough()) },
  annotations: { readOnlyHint: true },
});

const LIST_KERNELS_SPEC = toolSpec('list_kernels', {
  title: 'List kernels',
  description: 'Live kernels: notebook, kernelspec, where it runs (local / remote URL), state, queue length.',
  input: {},
  output: { kernels: z.array(z.object({ notebook_path: z.string() }).passthrough()) },
  annotations: { readOnlyHint: true },
});

const START_KERNEL_SPEC = toolSpec('start_kernel', {
  title: 'Start a kernel',
  description: "Starts the notebook's kernel (one is also started on first execution). kernel_name picks another kernelspec and records it in the notebook.",
  input: {
    notebook_path: notebookPathSchema,
    kernel_name: kernelNameSchema.optional().describe('A kernelspec name; list_kernelspecs shows them'),
  },
  output: { notebook_path: z.string(), status: z.string() },
});

const INTERRUPT_KERNEL_SPEC = toolSpec('interrupt_kernel', {
  title: 'Interrupt a kernel',
  description:
    "Interrupts what the notebook's kernel is running (the running execution ends `interrupted`; queued ones go on). Waits until it stopped, or says so if the code ignores the interrupt for the grace period (MCP_JUPYTER_INTERRUPT_GRACE_S).",
  input: { notebook_path: notebookPathSchema },
  output: { notebook_path: z.string() },
});

const RESTART_KERNEL_SPEC = toolSpec('restart_kernel', {
  title: 'Restart a kernel',
  description: "Restarts the notebook's kernel: all variables are gone (state reset); pending executions end cancelled.",
  input: { notebook_path: notebookPathSchema },
  output: { notebook_path: z.string(), status: z.string() },
});

const SHUTDOWN_KERNEL_SPEC = toolSpec('shutdown_kernel', {
  title: 'Shut down a kernel',
  description: "Shuts down the notebook's kernel (its assets are kept).",
  input: { notebook_path: notebookPathSchema },
  output: { notebook_path: z.string() },
  annotations: { destructiveHint: true },
});

export const registerKernelTools: ToolRegistrar = (server, workspace) => {
  const engine = workspace.engine;
  const store = workspace.notebooks;

  defineTool(server, LIST_KERNELSPECS_SPEC, async () => {
    const specs = await engine.provider.listSpecs();
    const kernelspecs = specs.map((spec) => ({ name: spec.name, display_name: spec.display_name, language: spec.language, source: spec.source }));
    const lines = kernelspecs.map((spec) => `${spec.name}  ${spec.display_name} (${spec.language}) — ${spec.source}`);
    return result({
      text: lines.length ? lines.join('\n') : 'no kernelspecs found; run `mcp-server-jupyter doctor` for how to install a Python kernel',
      structured: { kernelspecs },
    });
  });

  defineTool(server, LIST_KERNELS_SPEC, async () => {
    const kernels = engine
      .kernels()
      .filter((kernel) => kernel.session !== null || kernel.breaker !== null)
      .map((kernel) => kernelSummary(workspace, kernel.notebookPath));
    const lines = kernels.map((kernel) =>
      kernel.restart_blocked
        ? `${String(kernel.notebook_path)}  dead, not restarted automatically: ${String(kernel.restart_blocked)}`
        : `${String(kernel.notebook_path)}  ${String(kernel.kernel_name)} ${String(kernel.status)} at ${String(kernel.location)}, ${String(kernel.queue_length)} queued`,
    );
    return result({ text: lines.length ? lines.join('\n') : 'no kernels running', structured: { kernels } });
  });

  defineTool(server, START_KERNEL_SPEC, async (args) => {
    const read = await store.read(args.notebook_path);
    const current = engine.existingKernel(read.path)?.session;
    const wanted = args.kernel_name ?? kernelspecOf(read.notebook)?.name ?? 'python3';
    if (current && current.status !== 'dead') {
      if (args.kernel_name && args.kernel_name !== current.kernelName) {
        throw new ToolInputError(`${read.path} already has a running ${current.kernelName} kernel; shutdown_kernel first to switch to ${args.kernel_name}`);
      }
      return result({ text: `${read.path} already has a running ${current.kernelName} kernel (${current.status})`, structured: kernelSummary(workspace, read.path) });
    }
    const specs = await engine.provider.listSpecs();
    const spec = specs.find((candidate) => candidate.name === wanted);
    if (!spec) throw new ToolInputError(`no kernelspec named '${wanted}'. Available: ${specs.map((candidate) => candidate.name).join(', ') || 'none'}`);
    if (args.kernel_name && kernelspecOf(read.notebook)?.name !== spec.name) {
      await store.update(read.path, (notebook) => {
        notebook.metadata['kernelspec'] = { display_name: spec.display_name, language: spec.language, name: spec.name };
      });
    }
    const session = await engine.startKernel(read.path, spec.name);
    const info = session.info;
    return result({
      text: `started ${spec.name} for ${read.path}${info ? ` — ${info.implementation}, ${info.languageName} ${info.languageVersion}` : ''}`,
      structured: kernelSummary(workspace, read.path),
    });
  });

  defineTool(server, INTERRUPT_KERNEL_SPEC, async (args) => {
    const { relative } = await store.resolve(args.notebook_path);
    const { sent, executionId, outcome } = await engine.interruptAndWatch(relative);
    if (!sent) throw new ToolInputError(`${relative} has no running kernel to interrupt`);
    const structured = { notebook_path: relative, interrupted_execution_id: executionId, outcome };
    if (!executionId) return result({ text: 'interrupt sent (nothing was running)', structured });
    const snapshot = engine.get(executionId);
    const text =
      outcome === 'ignored' && snapshot.interruptIgnored
        ? `execution ${executionId} is still running: ${interruptIgnoredText(snapshot.interruptIgnored)}`
        : `interrupt sent; execution ${executionId} ended ${snapshot.state}`;
    return result({ text, structured: { ...structured, status: snapshot.state, interrupt_ignored: outcome === 'ignored' } });
  });

  defineTool(server, RESTART_KERNEL_SPEC, async (args) => {
    const { relative } = await store.resolve(args.notebook_path);
    const pending = engine.existingKernel(relative)?.pending().map((execution) => execution.id) ?? [];
    const blocked = engine.existingKernel(relative)?.breaker ?? null;
    if (!(await engine.restartKernel(relative))) throw new ToolInputError(`${relative} has no running kernel; start_kernel or execute a cell to start one`);
    const breakerNote = blocked ? `; it had died ${blocked.deaths.length} times, and automatic restarts are enabled again` : '';
    return result({
      text: `restarted the kernel of ${relative}: kernel state was reset (every variable is gone; re-run the cells you need)${pending.length ? `; ${pending.length} pending execution(s) cancelled` : ''}${breakerNote}`,
      structured: { ...kernelSummary(workspace, relative), state_reset: true, cancelled_execution_ids: pending, breaker_reset: blocked !== null },
    });
  });

  defineTool(server, SHUTDOWN_KERNEL_SPEC, async (args) => {
    const { relative } = await store.resolve(args.notebook_path);
    if (!(await engine.shutdownKernel(relative))) throw new ToolInputError(`${relative} has no running kernel`);
    return result({ text: `shut down the kernel of ${relative} (assets kept)`, structured: { notebook_path: relative, status: 'shutdown' } });
  });
};
