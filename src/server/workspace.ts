// One workspace served by this process: config, journal, engine and notebooks, shared by every MCP session.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import { Engine } from '../engine/engine.js';
import type { EngineStats } from '../engine/scheduler.js';
import { LocalKernelProvider } from '../kernel/local-provider.js';
import type { KernelProvider } from '../kernel/types.js';
import type { Logger } from '../log.js';
import { AssetStore } from '../notebook/assets.js';
import { NotebookStore } from '../notebook/notebooks.js';
import { openDatabase, type Db } from '../store/db.js';
import type { ExecutionState } from '../store/executions.js';
import { EventBus, forwardEngineEvents } from './events.js';
import { NotebookWatch } from './notebook-watch.js';
import { NotebookOutputWriter } from './output-writer.js';
import { VERSION } from './version.js';

export interface KernelStatusEntry {
  notebookPath: string;
  kernelId: string | null;
  kernelName: string | null;
  location: string | null;
  status: string;
  instance: number | null;
  queueLength: number;
  running: string | null;
  // The fields below are optional only so that hand-built snapshots (tests, older callers) stay valid.
  /** Why the kernel is not restarted automatically (too many deaths), or null. */
  restartBlocked?: string | null;
  /** The running execution kept running past the interrupt grace period. */
  interruptIgnored?: boolean;
}

export interface ServerStatus {
  version: string;
  uptimeS: number;
  workspace: string;
  stateDir: string;
  kernels: KernelStatusEntry[];
  queueDepth: number;
  executionsByState: Record<ExecutionState, number>;
  databaseBytes: number;
  eventClients: number;
  // Optional for the same reason as in KernelStatusEntry.
  /** Live events dropped from the queues of clients that fell behind, since the start. */
  eventsDropped?: number;
  queueLimit?: number;
  /** Counters since the start: kernel deaths and restarts, breaker trips, ignored interrupts, refusals, journal errors. */
  engine?: EngineStats;
  /** The process that owns this workspace (it answers every client's calls) and the other processes piping to it. */
  ownerPid?: number;
  followerPids?: number[];
}

export class Workspace {
  readonly startedAt = Date.now();
  readonly engine: Engine;
  readonly notebooks: NotebookStore;
  readonly assets: AssetStore;
  /** The live event bus (engine events, notebook changes) and the watcher that notices notebook changes. */
  readonly events = new EventBus();
  readonly notebookWatch: NotebookWatch;
  private readonly outputWriter: NotebookOutputWriter;
  /** Set by the HTTP layer: how many live event connections there are. */
  eventClientCount: () => number = () => 0;
  /** Set by the owner endpoint: the other server processes whose clients this process serves. */
  followerPids: () => number[] = () => [];
  /** The cheapest question the database can answer: /health asks it to prove the journal is reachable. */
  private readonly probe: { get(): unknown };

  private constructor(readonly config: Config, readonly db: Db, provider: KernelProvider, readonly log: Logger) {
    this.probe = db.prepare('SELECT 1');
    this.engine = new Engine({
      db,
      provider,
      workspaceRoot: config.workspace,
      outputBudgetChars: config.outputBudgetChars,
      limits: { restartLimit: config.restartLimit, restartWindowMs: config.restartWindowS * 1000, interruptGraceMs: config.interruptGraceS * 1000 },
      queueLimit: config.queueLimit,
      log,
    });
    this.assets = new AssetStore({ workspaceRoot: config.workspace, db, defaultTtlS: config.assetTtlS });
    // Every save of a notebook renews the leases of the assets it owns, and is announced to live watchers.
    this.notebooks = new NotebookStore({
      workspaceRoot: config.workspace,
      stateDir: config.stateDir,
      onSaved: (path) => {
        this.assets.renewForNotebook(path);
        this.notebookWatch.saved(path);
      },
    });
    forwardEngineEvents(this.engine, this.events);
    this.notebookWatch = new NotebookWatch({ workspaceRoot: config.workspace, bus: this.events, log, engineEvents: this.engine.events });
    this.outputWriter = new NotebookOutputWriter(this.engine, this.notebooks, this.assets, log);
  }

  static open(config: Config, log: Logger, provider?: KernelProvider): Workspace {
    const db = openDatabase(join(config.stateDir, 'state.db'));
    const kernels = provider ?? new LocalKernelProvider({ runtimeDir: join(config.stateDir, 'kernels'), workspace: config.workspace });
    return new Workspace(config, db, kernels, log);
  }

  /** Resolves when every output write that was started has landed in its notebook. */
  settled(): Promise<void> {
    return this.outputWriter.idle();
  }

  /** Why an execution's outputs are not in its notebook file, if they could not be written there. */
  notebookWriteFailure(executionId: string): string | undefined {
    return this.outputWriter.failureFor(executionId);
  }

  /**
   * What /health reports. Probes may come every second, so no journal scan (status() counts every execution by
   * state); throws when the database cannot be queried.
   */
  health(): { version: string; uptimeS: number; liveKernels: number } {
    this.probe.get();
    return {
      version: VERSION,
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      liveKernels: this.engine.kernels().filter((kernel) => kernel.session !== null).length,
    };
  }

  status(): ServerStatus {
    const kernels: KernelStatusEntry[] = this.engine.kernels().map((kernel) => ({
      notebookPath: kernel.notebookPath,
      kernelId: kernel.session?.id ?? null,
      kernelName: kernel.session?.kernelName ?? null,
      location: kernel.session?.location ?? null,
      status: kernel.session?.status ?? (kernel.breaker ? 'dead' : 'not started'),
      instance: kernel.session?.instance ?? null,
      queueLength: kernel.queueLength,
      running: kernel.running?.id ?? null,
      restartBlocked: kernel.refusal(),
      interruptIgnored: kernel.ignoredInterrupt !== null,
    }));
    let databaseBytes = 0;
    for (const suffix of ['', '-wal']) {
      try {
        databaseBytes += statSync(join(this.config.stateDir, `state.db${suffix}`)).size;
      } catch {
        // The WAL file may not exist yet.
      }
    }
    return {
      version: VERSION,
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      workspace: this.config.workspace,
      stateDir: this.config.stateDir,
      kernels,
      queueDepth: kernels.reduce((sum, kernel) => sum + kernel.queueLength, 0),
      executionsByState: this.engine.countsByState(),
      databaseBytes,
      eventClients: this.eventClientCount(),
      eventsDropped: this.events.stats().dropped,
      queueLimit: this.engine.queueLimit,
      engine: { ...this.engine.stats },
      ownerPid: process.pid,
      followerPids: this.followerPids(),
    };
  }

  /**
   * Stops serving. By default kernels keep running so a restarted server can re-attach to them; `shutdownIdleKernels`
   * stops those with no queued or running work (a normal exit), `shutdownKernels` stops all.
   */
  async close(options: { shutdownKernels?: boolean; shutdownIdleKernels?: boolean } = {}): Promise<void> {
    this.notebookWatch.close();
    await this.engine.close({ kernels: options.shutdownKernels ? 'shutdown' : options.shutdownIdleKernels ? 'shutdown-idle' : 'keep' });
    await this.outputWriter.idle();
    this.db.close();
  }
}
