// One live local kernel: readiness, status, heartbeat and death detection, interrupt, restart, shutdown, detach.

import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { KernelSessionBase, toKernelInfo } from './session-base.js';
import type { ConnectionInfo, JupyterMessage, KernelSession, StoredKernel } from './types.js';
import { ZmqChannel } from './zmq-channel.js';

const HEARTBEAT_INTERVAL_MS = 1_000;
const HEARTBEAT_TIMEOUT_MS = 900;
const UNRESPONSIVE_AFTER_MS = 3_000;
const SHUTDOWN_GRACE_MS = 5_000;
const KILL_WAIT_MS = 3_000;
/** How often we look for a process we did not spawn (no 'exit' event) while waiting for it to end. */
const EXIT_PROBE_MS = 100;
export const START_TIMEOUT_MS = 60_000;

/** A kernel process as we know it. */
export interface KernelProcess {
  pid: number;
  /** Field 22 of /proc/<pid>/stat, to tell the kernel from a later process reusing its pid; null without /proc. */
  startTime: string | null;
  /** Present when this Node process spawned it: its 'exit' event is the exact, immediate death signal. */
  child?: ChildProcess;
}

export interface LocalSessionOptions {
  id: string;
  kernelName: string;
  connection: ConnectionInfo;
  connectionFile: string;
  logFile: string;
  interruptMode: 'signal' | 'message';
  process: KernelProcess;
  instance: number;
  /** Starts the kernel process again on the same connection file (restart). */
  relaunch: () => Promise<KernelProcess>;
  /** Whatever else the provider needs in `toStored().details` to restart this kernel after a server restart. */
  storedDetails: Record<string, unknown>;
  /**
   * The client session id to use (default: a new one). Re-attaching with the previous server's id gives our
   * sockets its ZeroMQ routing identity, so replies to requests it sent (an execute_reply) reach us.
   */
  clientSession?: string;
}

interface TrackedProcess extends KernelProcess {
  exited: boolean;
  exitReason: string | undefined;
  exit: Promise<void>;
  markExited: (reason: string) => void;
}

interface Readiness {
  sawIopub: boolean;
  sawInfo: boolean;
  stdinConnected: boolean;
  resolve: () => void;
  reject: (error: Error) => void;
}

export class LocalKernelSession extends KernelSessionBase implements KernelSession {
  readonly location = 'local';
  /** iopub is PUB/SUB: what the kernel published while nobody was subscribed is gone. */
  readonly replaysMissedMessages = false;
  /** Our client session id (header.session and the routing id of our sockets). */
  readonly clientSession: string;
  readonly connectionFile: string;
  readonly logFile: string;

  private readonly options: LocalSessionOptions;
  private readonly channel: ZmqChannel;
  private proc: TrackedProcess;
  /** stdin handshakes seen before the current process was launched (see ZmqChannel.whenConnected). */
  private stdinHandshakesBefore = 0;
  private readiness: Readiness | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private lastPong = 0;
  /** Set while we stop the process on purpose (restart, shutdown): its exit is not a death. */
  private expectingExit = false;
  private shuttingDown: Promise<void> | undefined;

  constructor(options: LocalSessionOptions) {
    super(options.id, options.kernelName, options.instance);
    this.clientSession = options.clientSession ?? randomUUID();
    this.options = options;
    this.connectionFile = options.connectionFile;
    this.logFile = options.logFile;
    this.proc = this.track(options.process);
    this.channel = new ZmqChannel({
      connection: options.connection,
      session: this.clientSession,
      onMessage: (message) => this.dispatch(message),
    });
  }

  protected get headerSession(): string {
    return this.clientSession;
  }

  protected sendOnChannel(message: JupyterMessage): Promise<void> {
    return this.channel.send(message);
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Messages dropped because their signature was wrong (someone without the key, or a corrupted frame). */
  get badSignatures(): number {
    return this.channel.badSignatures;
  }

  /**
   * Resolves once a kernel_info_reply has arrived, at least one iopub message has been seen (subscriptions join
   * late: before that, output would be lost) and our stdin socket is connected (else an early input_request is
   * dropped by the kernel). Probes go on shell at start and on control when attaching (control answers even
   * while a cell runs), resent on a short backoff because the first ones may reach nobody.
   */
  async waitReady(timeoutMs: number, via: 'shell' | 'control' = 'shell'): Promise<void> {
    this.assertUsable('wait for');
    if (this.proc.exited) throw new Error(this.startFailure(`the kernel process ${this.proc.exitReason ?? 'exited'}`));
    if (this.currentStatus !== 'restarting') this.setStatus('starting');
    let probeTimer: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        const readiness: Readiness = { sawIopub: false, sawInfo: false, stdinConnected: false, resolve, reject };
        this.readiness = readiness;
        void this.channel.whenConnected('stdin', this.stdinHandshakesBefore).then(() => {
          readiness.stdinConnected = true;
          this.checkReady();
        });
        deadline = setTimeout(
          () => reject(new Error(this.startFailure(`it did not answer kernel_info_request within ${Math.round(timeoutMs / 1000)} s`))),
          timeoutMs,
        );
        let delay = 50;
        const probe = (): void => {
          this.transmit(this.createMessage(via, 'kernel_info_request', {})).catch(() => undefined);
          probeTimer = setTimeout(probe, delay);
          delay = Math.min(delay * 2, 1_000);
        };
        probe();
      });
    } finally {
      clearTimeout(probeTimer);
      clearTimeout(deadline);
      this.readiness = undefined;
    }
    // The reply comes between the probe's busy and idle; the kernel is idle as soon as that idle lands.
    this.executionState = 'idle';
    this.setStatus('idle');
    this.startHeartbeat();
  }

  async interrupt(): Promise<void> {
    this.assertUsable('interrupt');
    if (this.options.interruptMode === 'message') {
      await this.request('control', 'interrupt_request', {}, 10_000);
      return;
    }
    const { pid, startTime } = this.proc;
    if (this.proc.exited || !isProcessAlive(pid, startTime)) throw new Error(`Cannot interrupt kernel ${this.id}: its process (pid ${pid}) is gone.`);
    // The whole process group, as jupyter_client does, so subprocesses started by the cell stop too.
    if (!signalGroup(pid, 'SIGINT')) throw new Error(`Cannot interrupt kernel ${this.id}: sending SIGINT to pid ${pid} failed.`);
  }

  /**
   * The kernel log is removed too, unless the kernel died or `keepLog` is set: then error messages point at it.
   */
  shutdown(options: { keepLog?: boolean } = {}): Promise<void> {
    this.shuttingDown ??= this.doShutdown(options.keepLog === true || this.deathReason !== undefined);
    return this.shuttingDown;
  }

  /** A dead local kernel has nothing left worth keeping: its leftover process group and files go. */
  release(): Promise<void> {
    return this.shutdown();
  }

  async detach(): Promise<void> {
    if (this.ended) return;
    this.ended = 'detached';
    this.stopHeartbeat();
    this.readiness?.reject(new Error(`Kernel ${this.id} was detached while starting.`));
    this.rejectAllPending(`Kernel ${this.id} was detached (it keeps running).`);
    this.channel.close();
    const child = this.proc.child;
    if (child) {
      child.removeAllListeners('exit');
      child.unref();
    }
  }

  toStored(): StoredKernel {
    return {
      id: this.id,
      provider: 'local',
      kernelName: this.kernelName,
      details: {
        ...this.options.storedDetails,
        connection: this.options.connection,
        connectionFile: this.connectionFile,
        logFile: this.logFile,
        pid: this.proc.pid,
        startTime: this.proc.startTime,
        interruptMode: this.options.interruptMode,
        clientSession: this.clientSession,
        instance: this.instanceNumber,
      },
    };
  }

  protected async doRestart(): Promise<void> {
    this.stopHeartbeat();
    this.setStatus('restarting');
    this.expectingExit = true;
    try {
      await this.stopProcess(true);
      this.rejectAllPending(`Kernel ${this.id} restarted before replying.`);
      this.assertUsable('restart');
      this.instanceNumber += 1;
      this.stdinHandshakesBefore = this.channel.handshakeCount('stdin');
      this.proc = this.track(await this.options.relaunch());
      // A shutdown that came in meanwhile waits for us, then stops this new process.
      this.assertUsable('restart');
      this.executionState = 'idle';
      this.revive();
      this.expectingExit = false;
      // The sockets stay connected to the same ports; ZeroMQ reconnects to the new process by itself.
      await this.waitReady(START_TIMEOUT_MS, 'shell');
    } catch (error) {
      this.expectingExit = false;
      if (!this.ended) this.die(`restart failed: ${(error as Error).message}`);
      throw error;
    }
  }

  private async doShutdown(keepLog: boolean): Promise<void> {
    if (this.ended === 'detached') throw new Error(`Kernel ${this.id} is detached from this session; attach again to shut it down.`);
    this.ended = 'shutdown';
    this.stopHeartbeat();
    this.expectingExit = true;
    this.readiness?.reject(new Error(`Kernel ${this.id} was shut down while starting.`));
    await this.restarting?.catch(() => undefined);
    this.expectingExit = true;
    try {
      await this.stopProcess(false);
    } finally {
      this.rejectAllPending(`Kernel ${this.id} was shut down.`);
      this.channel.close();
      await rm(this.connectionFile, { force: true });
      if (!keepLog) await rm(this.logFile, { force: true });
      this.setStatus('dead');
    }
  }

  /** Asks the kernel to exit, then kills its process group after a grace period. */
  private async stopProcess(restart: boolean): Promise<void> {
    const proc = this.proc;
    if (proc.exited || !isProcessAlive(proc.pid, proc.startTime)) {
      proc.markExited('is gone');
      return;
    }
    this.transmit(this.createMessage('control', 'shutdown_request', { restart })).catch(() => undefined);
    if (await this.waitForExit(proc, SHUTDOWN_GRACE_MS)) return;
    signalGroup(proc.pid, 'SIGKILL');
    if (!(await this.waitForExit(proc, KILL_WAIT_MS))) {
      throw new Error(`Kernel ${this.id} (pid ${proc.pid}) did not exit even after SIGKILL.`);
    }
  }

  private waitForExit(proc: TrackedProcess, timeoutMs: number): Promise<boolean> {
    if (proc.exited) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      // Without a ChildProcess there is no exit event, only a liveness probe.
      const probe = proc.child
        ? undefined
        : setInterval(() => {
            if (!isProcessAlive(proc.pid, proc.startTime)) proc.markExited('is gone');
          }, EXIT_PROBE_MS);
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (exited: boolean): void => {
        clearInterval(probe);
        clearTimeout(timer);
        resolve(exited);
      };
      void proc.exit.then(() => finish(true));
    });
  }

  private track(kernelProcess: KernelProcess): TrackedProcess {
    let markExited!: (reason: string) => void;
    const tracked: TrackedProcess = {
      ...kernelProcess,
      exited: false,
      exitReason: undefined,
      exit: new Promise<void>((resolve) => {
        markExited = (reason) => {
          if (tracked.exited) return;
          tracked.exited = true;
          tracked.exitReason = reason;
          resolve();
        };
      }),
      markExited: (reason) => markExited(reason),
    };
    kernelProcess.child?.once('exit', (code, signal) => {
      const reason = signal ? `killed by ${signal}` : `exited with code ${code ?? 'unknown'}`;
      tracked.markExited(reason);
      this.onProcessExit(tracked);
    });
    return tracked;
  }

  private onProcessExit(proc: TrackedProcess): void {
    if (proc !== this.proc || this.expectingExit) return;
    const reason = `kernel process ${proc.exitReason ?? 'exited'}`;
    this.readiness?.reject(new Error(this.startFailure(`the ${reason}`)));
    this.die(reason);
  }

  private die(reason: string): void {
    this.stopHeartbeat();
    this.markDead(reason, `${reason} (kernel log: ${this.logFile})`);
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    this.lastPong = Date.now();
    this.heartbeatTimer = setInterval(() => void this.beat(), HEARTBEAT_INTERVAL_MS);
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private async beat(): Promise<void> {
    const ok = await this.channel.ping(HEARTBEAT_TIMEOUT_MS);
    if (this.heartbeatTimer === undefined) return;
    if (ok) {
      this.lastPong = Date.now();
      if (this.currentStatus === 'unresponsive') this.setStatus(this.executionState);
      return;
    }
    const proc = this.proc;
    // A child we spawned reports its own exit (with the code); only a process we attached to needs looking at.
    if (!proc.child && !isProcessAlive(proc.pid, proc.startTime)) {
      proc.markExited('is gone');
      this.die(`kernel process (pid ${proc.pid}) is gone: its heartbeat stopped and the process no longer exists`);
      return;
    }
    if (Date.now() - this.lastPong >= UNRESPONSIVE_AFTER_MS && (this.currentStatus === 'idle' || this.currentStatus === 'busy')) {
      this.setStatus('unresponsive');
    }
  }

  private dispatch(message: JupyterMessage): void {
    if (message.channel === 'iopub') {
      if (this.readiness) this.readiness.sawIopub = true;
      if (message.header.msg_type === 'status') this.trackStatus(message.content['execution_state'], message.parent_header.msg_id);
    } else if (message.header.msg_type === 'kernel_info_reply') {
      this.kernelInfo = toKernelInfo(message.content);
      if (this.readiness) this.readiness.sawInfo = true;
    }
    this.checkReady();
    this.matchReply(message);
    this.emitMessage(message);
  }

  private checkReady(): void {
    const readiness = this.readiness;
    if (readiness?.sawInfo && readiness.sawIopub && readiness.stdinConnected) readiness.resolve();
  }

  private startFailure(what: string): string {
    const tail = logTail(this.logFile);
    return (
      `Kernel "${this.kernelName}" (${this.id}) failed to start: ${what}.` +
      (tail ? ` Last lines of its log (${this.logFile}):\n${tail}` : ` Its log (${this.logFile}) is empty.`)
    );
  }
}

/** The last lines of a kernel log, for error messages. */
export function logTail(file: string, maxLines = 20): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.trimEnd().split('\n').slice(-maxLines).join('\n').slice(-4_000);
  } catch {
    return '';
  }
}

/** Appends a line to the kernel log (marks starts and restarts between the kernel's own output). */
export async function appendLog(file: string, line: string): Promise<void> {
  const handle = await open(file, 'a', 0o600);
  try {
    await handle.write(`[mcp-server-jupyter ${new Date().toISOString()}] ${line}\n`);
  } finally {
    await handle.close();
  }
}

const HAS_PROC = existsSync('/proc/self/stat');

function readStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses; fields after the last ')' start at field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    const startTime = fields[19];
    return state !== undefined && startTime !== undefined ? { state, startTime } : undefined;
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or null where there is no /proc. */
export function processStartTime(pid: number): string | null {
  return readStat(pid)?.startTime ?? null;
}

/** Whether `pid` is still the process that had `startTime` (zombies count as gone: nobody may reap them). */
export function isProcessAlive(pid: number, startTime: string | null): boolean {
  if (HAS_PROC) {
    const stat = readStat(pid);
    if (!stat) return false;
    if (stat.state === 'Z' || stat.state === 'X') return false;
    return startTime === null || stat.startTime === startTime;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Signals the process group led by `pid`, falling back to the pid alone; false if neither exists. */
export function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}
