// The contract between the kernel layer and everything above it: messages, specs, sessions, providers.

export type ChannelName = 'shell' | 'iopub' | 'stdin' | 'control';

export interface MessageHeader {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
  [extra: string]: unknown;
}

/** One Jupyter message, as received or about to be sent. */
export interface JupyterMessage {
  header: MessageHeader;
  /** Empty object when the message has no parent. */
  parent_header: Partial<MessageHeader>;
  metadata: Record<string, unknown>;
  content: Record<string, unknown>;
  buffers: Buffer[];
  channel: ChannelName;
}

/** What a kernel reports about itself, plus our own judgement of its liveness. */
export type KernelStatus =
  | 'starting'
  | 'idle'
  | 'busy'
  | 'unresponsive' // heartbeat missed, process (if we can see it) still alive
  | 'restarting'
  | 'dead';

export interface KernelSpec {
  /** The kernelspec directory name, e.g. `python3`. */
  name: string;
  display_name: string;
  language: string;
  argv: string[];
  env: Record<string, string>;
  interrupt_mode: 'signal' | 'message';
  /** The directory holding kernel.json (`{resource_dir}` in argv is replaced by it). */
  resource_dir: string;
  /** Human-readable: where it was found (e.g. "JUPYTER_PATH", "user data dir", "python: /x/.venv/bin/python"). */
  source: string;
  metadata: Record<string, unknown>;
}

/** The contents of a Jupyter connection file. */
export interface ConnectionInfo {
  transport: 'tcp' | 'ipc';
  ip: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  key: string;
  signature_scheme: string;
  kernel_name?: string;
}

/** Everything needed to find a kernel again after this process dies (stored in the journal's `kernels` table). */
export interface StoredKernel {
  id: string;
  provider: 'local' | 'remote';
  kernelName: string;
  /** Local: the connection info, pid and process start time; remote: server URL, remote kernel id, ws session id. */
  details: Record<string, unknown>;
}

export interface KernelInfo {
  protocolVersion: string;
  implementation: string;
  languageName: string;
  languageVersion: string;
  banner: string;
}

export type Unsubscribe = () => void;

/**
 * One live kernel, local or remote. The engine builds messages with `createMessage`, records their ids in the
 * journal, and only then calls `send` — so the journal always knows a request before the kernel does.
 */
export interface KernelSession {
  /** Our own id for this kernel, stable across re-attach (not the remote server's id). */
  readonly id: string;
  readonly kernelName: string;
  /** `local` or the remote server's URL. */
  readonly location: string;
  readonly status: KernelStatus;
  readonly info: KernelInfo | undefined;
  /** Bumped on every restart; executions record the instance they ran in. */
  readonly instance: number;
  /**
   * Whether what the kernel says while no server of ours is connected is kept and replayed on re-attach: Jupyter
   * Server buffers per WebSocket session; a local kernel's iopub publishes to nobody and it is gone.
   */
  readonly replaysMissedMessages: boolean;

  createMessage(channel: 'shell' | 'control' | 'stdin', msgType: string, content: Record<string, unknown>, parent?: JupyterMessage['header']): JupyterMessage;
  send(message: JupyterMessage): Promise<void>;
  /** Sends a request and resolves with the reply matched by parent msg_id (used for out-of-band requests). */
  request(channel: 'shell' | 'control', msgType: string, content: Record<string, unknown>, timeoutMs: number): Promise<JupyterMessage>;

  /** Every message from every channel except heartbeat, in arrival order per channel. */
  onMessage(listener: (message: JupyterMessage) => void): Unsubscribe;
  onStatus(listener: (status: KernelStatus) => void): Unsubscribe;
  /** Fires once per death: the process exited, or the heartbeat stopped and the process is gone. */
  onDeath(listener: (reason: string) => void): Unsubscribe;

  interrupt(): Promise<void>;
  /** Restarts in place: same id, `instance` + 1, status goes through `restarting` to `idle`. */
  restart(): Promise<void>;
  /** `shutdown_request`, then a kill after a grace period; removes the connection file. */
  shutdown(): Promise<void>;
  /** Closes our sockets but leaves the kernel running (used when the server stops but kernels should survive). */
  detach(): Promise<void>;
  /**
   * After a death: frees what we hold for the kernel (sockets, timers, connection file, leftover processes)
   * without harming a kernel that runs on. A remote kernel that its server (or a person) restarted is not deleted:
   * it is offered to the provider's next start instead.
   */
  release(): Promise<void>;
  toStored(): StoredKernel;
}

export interface StartOptions {
  kernelName: string;
  /** Working directory of the kernel: the notebook's folder. */
  cwd: string;
  /** Our id for the new kernel (generated by the caller so it can be journaled first). */
  id: string;
}

/** Where kernels come from: local processes over ZeroMQ, or a Jupyter Server / Gateway. */
export interface KernelProvider {
  readonly kind: 'local' | 'remote';
  listSpecs(): Promise<KernelSpec[]>;
  start(options: StartOptions): Promise<KernelSession>;
  /** Re-attaches to a kernel found in the journal; resolves null if it is gone (or is not the same kernel). */
  attach(stored: StoredKernel): Promise<KernelSession | null>;
  /**
   * Stops kernels an earlier server process launched but never journaled (it died while they started), or whose
   * rows were superseded; `recordedIds` are the kernels the journal still counts as live. Resolves how many.
   */
  reapUnrecorded?(recordedIds: ReadonlySet<string>): Promise<number>;
}
