// One kernel on a Jupyter Server or Gateway: readiness, status from iopub, death as the server reports it, restart, detach.
import { KernelSessionBase, toKernelInfo } from './session-base.js';
import type { JupyterMessage, KernelSession, KernelStatus, StoredKernel, Unsubscribe } from './types.js';
import { ChannelClosedError, WsChannel, type ChannelEvent, type WsChannelOptions, type WsProtocol } from './ws-channel.js';

export const REMOTE_START_TIMEOUT_MS = 120_000;
/** Messages kept for the first onMessage listener (a replay can arrive before the engine subscribes). */
const MAX_HELD = 100_000;

export interface RemoteKernelModel {
  id: string;
  name: string;
  executionState: string | null;
}

/** What a session needs from the server's REST API (implemented by the provider). */
export interface RemoteKernelApi {
  /** The server's base URL as shown to users (no token). */
  readonly url: string;
  /** The kernel's model, or null when the server answers 404 (it no longer has the kernel). */
  kernel(remoteId: string): Promise<RemoteKernelModel | null>;
  /** false when the server no longer has the kernel. */
  interrupt(remoteId: string): Promise<boolean>;
  restart(remoteId: string): Promise<void>;
  /** Deletes the kernel; a kernel that is already gone is not an error. */
  shutdown(remoteId: string): Promise<void>;
  channelOptions(remoteId: string, wsSession: string): Omit<WsChannelOptions, 'onMessage' | 'onEvent'>;
  /** A kernel whose state we lost but that runs on (restarted): the next start of this kernelspec may take it. */
  offerForReuse(kernelName: string, remoteId: string): void;
  /** The server turned out to speak this kernel WebSocket protocol. */
  rememberProtocol(protocol: WsProtocol): void;
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
}

export interface RemoteSessionOptions {
  /** Our id (stable across re-attach). */
  id: string;
  kernelName: string;
  /** The server's id for the kernel. */
  remoteId: string;
  /** The WebSocket `session_id` (and our `header.session`): reused on re-attach so the server replays what it buffered. */
  wsSession: string;
  instance: number;
  /** Where the kernel works, relative to the server's root (kept in the journal for reuse after a restart). */
  kernelPath?: string | undefined;
  api: RemoteKernelApi;
  /** How often the server is asked whether the kernel still exists (a liveness probe, not a wait for work). */
  livenessIntervalMs: number;
}

export class RemoteKernelSession extends KernelSessionBase implements KernelSession {
  readonly location: string;
  readonly remoteId: string;
  readonly wsSession: string;
  /** Jupyter Server keeps what the kernel says for our WebSocket session id while we are away, and replays it. */
  readonly replaysMissedMessages = true;

  private readonly api: RemoteKernelApi;
  private readonly options: RemoteSessionOptions;
  private readonly channel: WsChannel;
  private readiness: { resolve: () => void; reject: (error: Error) => void } | undefined;
  /**
   * Our kernel_info probes, and which of their answers arrived. Ready takes the reply *and* an iopub message for
   * the same probe: after a restart the server's iopub subscription to the new process can lag the shell, and a
   * request sent before it is live loses its outputs (the server only "nudges" iopub when a WebSocket opens).
   */
  private readonly readinessProbes = new Set<string>();
  private readinessVia: 'shell' | 'control' = 'shell';
  private readonly readinessSeen = new Map<string, { reply: boolean; iopub: boolean }>();
  private livenessTimer: NodeJS.Timeout | undefined;
  private shuttingDown: Promise<void> | undefined;
  /** Until the first onMessage listener: what arrived (a replay after re-attach comes before anyone listens). */
  private held: JupyterMessage[] | null = [];
  private heldDropped = 0;
  private flushScheduled = false;

  constructor(options: RemoteSessionOptions) {
    super(options.id, options.kernelName, options.instance);
    this.options = options;
    this.api = options.api;
    this.location = options.api.url;
    this.remoteId = options.remoteId;
    this.wsSession = options.wsSession;
    this.channel = new WsChannel({
      ...options.api.channelOptions(options.remoteId, options.wsSession),
      onMessage: (message) => this.dispatch(message),
      onEvent: (event) => this.onChannelEvent(event),
    });
  }

  /** Which WebSocket protocol the server picked. */
  get wireProtocol(): 'v1' | 'legacy' {
    return this.channel.protocol;
  }

  /** How many times the kernel WebSocket was re-established after a drop. */
  get reconnects(): number {
    return this.channel.reconnects;
  }

  protected get headerSession(): string {
    return this.wsSession;
  }

  protected sendOnChannel(message: JupyterMessage): Promise<void> {
    return this.channel.send(message);
  }

  override onMessage(listener: (message: JupyterMessage) => void): Unsubscribe {
    const unsubscribe = super.onMessage(listener);
    const held = this.held;
    if (held && !this.flushScheduled) {
      this.flushScheduled = true;
      // Handed over after the caller's synchronous set-up (registering the running execution's msg_id), in order,
      // before anything that arrives later.
      queueMicrotask(() => {
        this.held = null;
        if (this.heldDropped > 0) {
          this.api.log('warn', 'kernel messages that arrived before anyone listened were dropped', { kernelId: this.id, dropped: this.heldDropped });
        }
        for (const message of held) this.emitMessage(message);
      });
    }
    return unsubscribe;
  }

  /**
   * Opens the kernel WebSocket and resolves once the kernel has answered kernel_info_request. Probes go on shell at
   * start and on control when attaching (control answers even while a cell runs), and are repeated with a
   * backoff: a gateway may still be wiring the kernel up when the first one arrives.
   */
  async waitReady(timeoutMs: number, via: 'shell' | 'control' = 'shell'): Promise<void> {
    this.assertUsable('wait for');
    if (this.currentStatus !== 'restarting') this.setStatus('starting');
    let probeTimer: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        this.readiness = { resolve, reject };
        this.readinessVia = via;
        deadline = setTimeout(
          () => reject(new Error(`kernel ${this.remoteId} on ${this.location} did not answer kernel_info_request within ${Math.round(timeoutMs / 1000)} s`)),
          timeoutMs,
        );
        this.channel.connect().then(() => {
          let delay = 250;
          const probe = (): void => {
            const request = this.createMessage(via, 'kernel_info_request', {});
            this.readinessProbes.add(request.header.msg_id);
            this.transmit(request).catch(() => undefined);
            probeTimer = setTimeout(probe, delay);
            delay = Math.min(delay * 2, 5_000);
          };
          if (this.readiness) probe();
        }, reject);
      });
    } finally {
      clearTimeout(probeTimer);
      clearTimeout(deadline);
      this.readiness = undefined;
      this.readinessProbes.clear();
      this.readinessSeen.clear();
    }
    this.executionState = 'idle';
    this.setStatus('idle');
    this.startLiveness();
  }

  async interrupt(): Promise<void> {
    this.assertUsable('interrupt');
    const known = await this.api.interrupt(this.remoteId);
    if (!known) {
      const reason = this.goneReason();
      this.die(reason);
      throw new Error(`Cannot interrupt kernel ${this.id}: ${reason}.`);
    }
  }

  shutdown(): Promise<void> {
    this.shuttingDown ??= this.doShutdown();
    return this.shuttingDown;
  }

  /**
   * After a death. The kernel is deleted only if its server says it is dead. One the server runs again (it
   * restarted it after a crash, or a person restarted it) belongs to whoever restarted it as much as to us:
   * deleting it could kill someone's kernel and leaving it would leak one, so the provider reuses it next.
   */
  async release(): Promise<void> {
    if (this.ended) return;
    await this.detach();
    let model: RemoteKernelModel | null;
    try {
      model = await this.api.kernel(this.remoteId);
    } catch (error) {
      this.api.log('warn', 'could not ask the server about a dead kernel; leaving it as it is', { kernelId: this.id, remoteId: this.remoteId, error: (error as Error).message });
      return;
    }
    if (!model) return;
    if (model.executionState === 'dead') {
      await this.api.shutdown(this.remoteId);
      return;
    }
    this.api.offerForReuse(this.kernelName, this.remoteId);
  }

  async detach(): Promise<void> {
    if (this.ended) return;
    this.ended = 'detached';
    this.stopLiveness();
    this.readiness?.reject(new Error(`Kernel ${this.id} was detached while starting.`));
    this.rejectAllPending(`Kernel ${this.id} was detached (it keeps running on ${this.location}).`);
    // The server now buffers the kernel's messages for our session id, for whoever re-attaches with it.
    await this.channel.close();
  }

  toStored(): StoredKernel {
    return {
      id: this.id,
      provider: 'remote',
      kernelName: this.kernelName,
      details: {
        url: this.location,
        kernelId: this.remoteId,
        wsSession: this.wsSession,
        instance: this.instanceNumber,
        ...(this.options.kernelPath !== undefined ? { path: this.options.kernelPath } : {}),
      },
    };
  }

  protected async doRestart(): Promise<void> {
    this.stopLiveness();
    this.setStatus('restarting');
    try {
      // The server answers once the new kernel process is up; the WebSocket stays, its streams reach the new process.
      await this.api.restart(this.remoteId);
      this.assertUsable('restart');
      this.rejectAllPending(`Kernel ${this.id} restarted before replying.`);
      this.channel.resetTracking();
      this.instanceNumber += 1;
      this.executionState = 'idle';
      this.revive();
      await this.waitReady(REMOTE_START_TIMEOUT_MS, 'shell');
    } catch (error) {
      if (!this.ended) this.die(`restart failed: ${(error as Error).message}`);
      throw error;
    }
  }

  private async doShutdown(): Promise<void> {
    if (this.ended === 'detached') throw new Error(`Kernel ${this.id} is detached from this session; attach again to shut it down.`);
    this.ended = 'shutdown';
    this.stopLiveness();
    this.readiness?.reject(new Error(`Kernel ${this.id} was shut down while starting.`));
    await this.restarting?.catch(() => undefined);
    try {
      await this.api.shutdown(this.remoteId);
    } finally {
      this.rejectAllPending(`Kernel ${this.id} was shut down.`);
      await this.channel.close();
      this.setStatus('dead');
    }
  }

  // Liveness ----------------------------------------------------------------------------------------------

  private startLiveness(): void {
    this.stopLiveness();
    this.livenessTimer = setInterval(() => void this.probeLiveness(), this.options.livenessIntervalMs);
    this.livenessTimer.unref();
  }

  private stopLiveness(): void {
    clearInterval(this.livenessTimer);
    this.livenessTimer = undefined;
  }

  private async probeLiveness(): Promise<void> {
    let model: RemoteKernelModel | null;
    try {
      model = await this.api.kernel(this.remoteId);
    } catch {
      // Unreachable for now: the WebSocket's reconnect decides when to give up.
      return;
    }
    if (this.livenessTimer === undefined || this.restarting) return;
    if (!model) this.die(this.goneReason());
    else if (model.executionState === 'dead') this.die(`the Jupyter server at ${this.location} reports kernel ${this.remoteId} as dead`);
    else if (this.channel.waitingOnShell && this.currentStatus !== 'dead') {
      // A restart made elsewhere (JupyterLab's button, the REST API) leaves the server's model alive, and after it
      // the server's iopub link to the new process can lag, so the cell we wait for may never be heard of again.
      // A control request answers even while a cell runs; an answer from another process is the news
      // ('kernel-changed'). Only while a request of ours is unanswered (iopub's busy/idle cannot tell: the old
      // process says idle after the restart's shutdown_request): an idle kernel has nothing to lose, and
      // JupyterLab would see it blink.
      this.request('control', 'kernel_info_request', {}, this.options.livenessIntervalMs).catch(() => undefined);
    }
  }

  private goneReason(): string {
    return `the Jupyter server at ${this.location} no longer has kernel ${this.remoteId} (HTTP 404): it was shut down, culled, or the server restarted`;
  }

  private onChannelEvent(event: ChannelEvent): void {
    switch (event.type) {
      case 'disconnected':
        this.api.log('warn', 'kernel WebSocket dropped; reconnecting with the same session id', { kernelId: this.id, remoteId: this.remoteId, reason: event.reason });
        if (this.currentStatus === 'idle' || this.currentStatus === 'busy') this.setStatus('unresponsive');
        return;
      case 'retrying':
        this.api.log('warn', 'kernel WebSocket reconnect failed; retrying', { kernelId: this.id, attempt: event.attempt, of: event.of, delayMs: event.delayMs, error: event.error });
        return;
      case 'reconnected':
        this.api.log('info', 'kernel WebSocket reconnected', { kernelId: this.id, attempts: event.attempts, downtimeMs: event.downtimeMs });
        if (this.currentStatus === 'unresponsive') this.setStatus(this.executionState);
        return;
      case 'protocol':
        this.api.rememberProtocol(event.protocol);
        this.api.log('info', 'the Jupyter server speaks another kernel WebSocket protocol; switched', { kernelId: this.id, protocol: event.protocol });
        return;
      case 'gap':
        this.api.log('warn', 'kernel messages are missing after a reconnect (noted in the output)', { kernelId: this.id, missing: event.missing });
        return;
      case 'kernel-changed':
        // Our own restart changes the process too; any other change means the kernel state we had is gone.
        if (!this.restarting && this.currentStatus !== 'starting' && this.currentStatus !== 'restarting') {
          this.die(`kernel ${this.remoteId} on ${this.location} was replaced by a new process (the server restarted it after it died, or someone else restarted it): kernel state was lost`);
        }
        return;
      case 'malformed':
        this.api.log('warn', 'dropped an undecodable kernel WebSocket frame', { kernelId: this.id, detail: event.detail });
        return;
      case 'closed': {
        const error = event.error;
        this.readiness?.reject(error);
        if (this.ended) return;
        this.die(error.kind === 'gone' ? this.goneReason() : `lost the kernel WebSocket: ${error.message}`);
        return;
      }
    }
  }

  // Messages ----------------------------------------------------------------------------------------------

  private dispatch(message: JupyterMessage): void {
    const parentId = message.parent_header.msg_id;
    if (message.channel === 'iopub' && message.header.msg_type === 'status') this.onKernelStatus(message, parentId);
    else if (message.header.msg_type === 'kernel_info_reply' && message.channel !== 'iopub') this.kernelInfo = toKernelInfo(message.content);
    if (parentId !== undefined && this.readinessProbes.has(parentId)) this.noteProbeAnswer(parentId, message.channel === 'iopub');
    this.matchReply(message);

    if (this.held) {
      this.held.push(message);
      if (this.held.length > MAX_HELD) {
        this.held.shift();
        this.heldDropped += 1;
      }
      return;
    }
    this.emitMessage(message);
  }

  private noteProbeAnswer(probeId: string, onIopub: boolean): void {
    const seen = this.readinessSeen.get(probeId) ?? { reply: false, iopub: false };
    if (onIopub) seen.iopub = true;
    else seen.reply = true;
    this.readinessSeen.set(probeId, seen);
    // A control probe (attach, while a cell may run) needs only its reply: a kernel need not publish status for
    // control requests, and a freshly opened WebSocket is nudged by the server until iopub flows.
    if (seen.reply && (seen.iopub || this.readinessVia === 'control')) this.readiness?.resolve();
  }

  private onKernelStatus(message: JupyterMessage, parentId: string | undefined): void {
    const state = message.content['execution_state'];
    // The server itself says these (its own session id is ours): an automatic restart after the kernel died, or a
    // restart that failed. Either way the kernel state we had is gone.
    if (state === 'dead') {
      this.die(`the Jupyter server at ${this.location} reports kernel ${this.remoteId} as dead (it died and could not be restarted)`);
      return;
    }
    if (state === 'restarting') {
      if (!this.restarting && this.currentStatus !== 'restarting') {
        this.die(`kernel ${this.remoteId} died and the Jupyter server at ${this.location} restarted it: kernel state was lost`);
      }
      return;
    }
    this.trackStatus(state, parentId);
  }

  private die(reason: string): void {
    if (this.ended) return;
    this.stopLiveness();
    this.markDead(reason);
  }
}

export function isKernelGone(error: unknown): boolean {
  return error instanceof ChannelClosedError && error.kind === 'gone';
}
