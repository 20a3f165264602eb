// What every kernel session shares wherever its kernel runs: listeners, status from iopub, send guards, requests
// matched to replies, death reporting. Subclasses bring the transport, readiness and process or server handling.
import { createMessage } from './protocol.js';
import type { JupyterMessage, KernelInfo, KernelStatus, Unsubscribe } from './types.js';

interface PendingRequest {
  channel: 'shell' | 'control';
  resolve: (reply: JupyterMessage) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** Our own control requests remembered at most (ipykernel publishes busy/idle for each; see `trackStatus`). */
const MAX_CONTROL_REQUESTS = 1_000;

export abstract class KernelSessionBase {
  readonly id: string;
  readonly kernelName: string;
  /** `local` or the remote server's URL. */
  abstract readonly location: string;

  protected currentStatus: KernelStatus = 'starting';
  /** What the kernel last said on iopub about its shell: the status shown once it is ready. */
  protected executionState: 'idle' | 'busy' = 'idle';
  protected kernelInfo: KernelInfo | undefined;
  protected instanceNumber: number;
  protected deathReason: string | undefined;
  protected ended: 'shutdown' | 'detached' | undefined;
  protected restarting: Promise<void> | undefined;

  private deathReported = false;
  private readonly pending = new Map<string, PendingRequest>();
  /** Our control requests: the kernel publishes busy/idle for them too, which says nothing about the shell. */
  private readonly controlRequestIds = new Set<string>();
  private readonly messageListeners = new Set<(message: JupyterMessage) => void>();
  private readonly statusListeners = new Set<(status: KernelStatus) => void>();
  private readonly deathListeners = new Set<(reason: string) => void>();

  protected constructor(id: string, kernelName: string, instance: number) {
    this.id = id;
    this.kernelName = kernelName;
    this.instanceNumber = instance;
  }

  /** `header.session` of our messages. */
  protected abstract get headerSession(): string;
  /** Puts a message on the wire, with no state checks. */
  protected abstract sendOnChannel(message: JupyterMessage): Promise<void>;

  get status(): KernelStatus {
    return this.currentStatus;
  }

  get info(): KernelInfo | undefined {
    return this.kernelInfo;
  }

  get instance(): number {
    return this.instanceNumber;
  }

  createMessage(
    channel: 'shell' | 'control' | 'stdin',
    msgType: string,
    content: Record<string, unknown>,
    parent?: JupyterMessage['header'],
  ): JupyterMessage {
    return createMessage(channel, msgType, content, parent ? { session: this.headerSession, parent } : { session: this.headerSession });
  }

  async send(message: JupyterMessage): Promise<void> {
    const what = `cannot send ${message.header.msg_type}`;
    if (this.ended === 'shutdown') throw new Error(`Kernel ${this.id} is shut down: ${what}. Start a new kernel.`);
    if (this.ended === 'detached') throw new Error(`Kernel ${this.id} is detached from this session: ${what}. Attach again first.`);
    // A request meant for the old kernel must not run in the next one (ZeroMQ would hold it for the next process
    // on the same ports; a gateway would deliver it after the restart).
    if (this.currentStatus === 'dead') throw new Error(`Kernel ${this.id} is dead (${this.deathReason ?? 'unknown cause'}): ${what}. Restart it first.`);
    if (this.currentStatus === 'restarting') throw new Error(`Kernel ${this.id} is restarting: ${what} until restart() has finished.`);
    await this.transmit(message);
  }

  request(channel: 'shell' | 'control', msgType: string, content: Record<string, unknown>, timeoutMs: number): Promise<JupyterMessage> {
    const message = this.createMessage(channel, msgType, content);
    const msgId = message.header.msg_id;
    return new Promise<JupyterMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(msgId);
        reject(
          new Error(
            `Kernel ${this.id} (${this.kernelName}${this.location === 'local' ? '' : ` on ${this.location}`}) did not answer ${msgType} within ${timeoutMs} ms (status: ${this.currentStatus}). ` +
              'It may be busy or hung: interrupt or restart it.',
          ),
        );
      }, timeoutMs);
      this.pending.set(msgId, { channel, resolve, reject, timer });
      this.send(message).catch((error: unknown) => this.settlePending(msgId, error instanceof Error ? error : new Error(String(error))));
    });
  }

  onMessage(listener: (message: JupyterMessage) => void): Unsubscribe {
    this.messageListeners.add(listener);
    return () => this.messageListeners.delete(listener);
  }

  onStatus(listener: (status: KernelStatus) => void): Unsubscribe {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  onDeath(listener: (reason: string) => void): Unsubscribe {
    this.deathListeners.add(listener);
    return () => this.deathListeners.delete(listener);
  }

  restart(): Promise<void> {
    this.assertUsable('restart');
    this.restarting ??= this.doRestart().finally(() => {
      this.restarting = undefined;
    });
    return this.restarting;
  }

  protected abstract doRestart(): Promise<void>;

  /** Sends without the state checks of `send` (our own probes go out while starting and restarting). */
  protected transmit(message: JupyterMessage): Promise<void> {
    if (message.channel === 'control') {
      this.controlRequestIds.add(message.header.msg_id);
      if (this.controlRequestIds.size > MAX_CONTROL_REQUESTS) this.controlRequestIds.delete(this.controlRequestIds.values().next().value as string);
    }
    return this.sendOnChannel(message);
  }

  /** Resolves the `request()` waiting for this reply, if any. */
  protected matchReply(message: JupyterMessage): void {
    const parentId = message.parent_header.msg_id;
    if (parentId === undefined || message.channel === 'iopub') return;
    const waiter = this.pending.get(parentId);
    if (!waiter || waiter.channel !== message.channel) return;
    clearTimeout(waiter.timer);
    this.pending.delete(parentId);
    waiter.resolve(message);
  }

  protected emitMessage(message: JupyterMessage): void {
    for (const listener of [...this.messageListeners]) {
      try {
        listener(message);
      } catch (error) {
        console.error(`mcp-server-jupyter: a kernel message listener threw: ${(error as Error).stack ?? String(error)}`);
      }
    }
  }

  /** An iopub `busy`/`idle`: the shell's state, unless it is about one of our control requests. */
  protected trackStatus(state: unknown, parentId: string | undefined): void {
    if (parentId !== undefined && this.controlRequestIds.has(parentId)) {
      if (state === 'idle') this.controlRequestIds.delete(parentId);
      return;
    }
    if (state !== 'idle' && state !== 'busy') return;
    this.executionState = state;
    if (this.currentStatus === 'idle' || this.currentStatus === 'busy') this.setStatus(state);
  }

  protected setStatus(status: KernelStatus): void {
    if (status === this.currentStatus) return;
    this.currentStatus = status;
    for (const listener of [...this.statusListeners]) {
      try {
        listener(status);
      } catch (error) {
        console.error(`mcp-server-jupyter: an onStatus listener threw: ${(error as Error).stack ?? String(error)}`);
      }
    }
  }

  /** Marks the kernel dead and tells the death listeners, once (`reported` is what they are told). */
  protected markDead(reason: string, reported = reason): void {
    this.deathReason ??= reason;
    this.rejectAllPending(`Kernel ${this.id} died: ${reason}.`);
    this.setStatus('dead');
    if (this.deathReported) return;
    this.deathReported = true;
    for (const listener of [...this.deathListeners]) {
      try {
        listener(reported);
      } catch (error) {
        console.error(`mcp-server-jupyter: an onDeath listener threw: ${(error as Error).stack ?? String(error)}`);
      }
    }
  }

  /** A restart brings a dead kernel back: its next death is news again. */
  protected revive(): void {
    this.deathReported = false;
    this.deathReason = undefined;
  }

  protected settlePending(msgId: string, error: Error): void {
    const waiter = this.pending.get(msgId);
    if (!waiter) return;
    clearTimeout(waiter.timer);
    this.pending.delete(msgId);
    waiter.reject(error);
  }

  protected rejectAllPending(reason: string): void {
    for (const msgId of [...this.pending.keys()]) this.settlePending(msgId, new Error(reason));
  }

  protected assertUsable(action: string): void {
    if (this.ended === 'shutdown') throw new Error(`Cannot ${action} kernel ${this.id}: it was shut down. Start a new kernel.`);
    if (this.ended === 'detached') throw new Error(`Cannot ${action} kernel ${this.id}: this session is detached. Attach again first.`);
  }
}

export function toKernelInfo(content: Record<string, unknown>): KernelInfo {
  const language = (typeof content['language_info'] === 'object' && content['language_info'] !== null ? content['language_info'] : {}) as Record<string, unknown>;
  const text = (value: unknown): string => (typeof value === 'string' ? value : '');
  return {
    protocolVersion: text(content['protocol_version']),
    implementation: text(content['implementation']),
    languageName: text(language['name']),
    languageVersion: text(language['version']),
    banner: text(content['banner']),
  };
}
