// /events clients for the chaos test: open, close, cut off and stall them; keep every message to check what they were told.
import WebSocket from 'ws';
import type { Random } from './chaos-random.js';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'interrupted', 'timed_out', 'lost']);

export interface RecordedEvent {
  type: string;
  seq: number;
  execution_id?: string;
  state?: string;
  [key: string]: unknown;
}

/** One connection and everything it received, in order. */
export interface StreamRecord {
  name: string;
  generation: number;
  notebook: string | null;
  events: RecordedEvent[];
  /** How it ended: by us (`closed`, `terminated`), by the server going away (`dropped`), or still open. */
  ending: 'open' | 'closed' | 'terminated' | 'dropped';
}

interface LiveStream {
  record: StreamRecord;
  ws: WebSocket;
  paused: boolean;
}

/** What an event (or a hello snapshot) says about executions: each id with the state it implies. */
function observations(event: RecordedEvent): Array<{ id: string; state: string; terminal: boolean; what: string }> {
  const found: Array<{ id: string; state: string; terminal: boolean; what: string }> = [];
  const id = typeof event.execution_id === 'string' ? event.execution_id : null;
  switch (event.type) {
    case 'execution.queued':
      if (id) found.push({ id, state: 'pending', terminal: false, what: 'execution.queued' });
      break;
    case 'execution.started':
      if (id) found.push({ id, state: 'running', terminal: false, what: 'execution.started' });
      break;
    case 'execution.state':
    case 'execution.finished':
      if (id && typeof event.state === 'string') found.push({ id, state: event.state, terminal: TERMINAL.has(event.state), what: `${event.type} ${event.state}` });
      break;
    case 'hello': {
      const notebooks = (event['notebooks'] as Array<{ running: { execution_id: string; state: string } | null; queued: Array<{ execution_id: string }> }> | undefined) ?? [];
      for (const notebook of notebooks) {
        if (notebook.running) found.push({ id: notebook.running.execution_id, state: notebook.running.state, terminal: TERMINAL.has(notebook.running.state), what: 'hello running' });
        for (const queued of notebook.queued) found.push({ id: queued.execution_id, state: 'pending', terminal: false, what: 'hello queued' });
      }
      for (const recent of (event['recent'] as Array<{ execution_id: string; state: string }> | undefined) ?? []) {
        found.push({ id: recent.execution_id, state: recent.state, terminal: TERMINAL.has(recent.state), what: 'hello recent' });
      }
      break;
    }
    default:
      break;
  }
  return found;
}

export interface EventAnalysis {
  /** The terminal state each execution was reported in (the first one seen). */
  terminal: Map<string, string>;
  /** Broken promises, each a sentence saying what was seen where. */
  violations: string[];
  streams: number;
  events: number;
  gaps: number;
}

export class EventRecorder {
  private readonly open = new Set<LiveStream>();
  readonly records: StreamRecord[] = [];
  private count = 0;

  constructor(private readonly random: Random) {}

  /** Open (or opening) clients with this notebook filter (null: all notebooks). */
  openWith(notebook: string | null): number {
    return [...this.open].filter((stream) => stream.record.notebook === notebook).length;
  }

  /** Opens a client on the server of `generation`: all notebooks, or one with `notebook`. */
  connect(url: string, token: string, generation: number, notebook: string | null): void {
    this.count += 1;
    const record: StreamRecord = { name: `events#${this.count}`, generation, notebook, events: [], ending: 'open' };
    this.records.push(record);
    const query = `token=${encodeURIComponent(token)}${notebook ? `&notebook=${encodeURIComponent(notebook)}` : ''}`;
    const ws = new WebSocket(`${url.replace('http://', 'ws://')}/events?${query}`);
    const stream: LiveStream = { record, ws, paused: false };
    this.open.add(stream);
    ws.on('message', (data: Buffer) => record.events.push(JSON.parse(data.toString()) as RecordedEvent));
    // Refused, reset or cut off: the server is gone (or going); the chaos loop opens new ones on the next server.
    ws.on('error', () => undefined);
    ws.on('close', () => {
      this.open.delete(stream);
      if (record.ending === 'open') record.ending = 'dropped';
    });
  }

  /** One chaos move on a random open client: a clean close, an abrupt cut, or a stall of a few seconds. */
  disturb(): string | null {
    const streams = [...this.open].filter((stream) => stream.ws.readyState === WebSocket.OPEN && !stream.paused);
    if (streams.length === 0) return null;
    const stream = this.random.pick(streams);
    const move = this.random.weighted({ close: 2, terminate: 2, stall: 1 });
    if (move === 'close') {
      stream.record.ending = 'closed';
      stream.ws.close(1000, 'chaos: going away');
    } else if (move === 'terminate') {
      stream.record.ending = 'terminated';
      stream.ws.terminate();
    } else {
      // Reads nothing for a while: the server's send queue for it fills while the others go on.
      stream.paused = true;
      stream.ws.pause();
      setTimeout(() => {
        stream.paused = false;
        stream.ws.resume();
      }, this.random.int(500, 3_000)).unref();
    }
    return `${move} ${stream.record.name}`;
  }

  /** Closes every client (before the final server stops) and waits until each has closed. */
  async closeAll(): Promise<void> {
    await Promise.all(
      [...this.open].map(
        (stream) =>
          new Promise<void>((resolve) => {
            if (stream.paused) stream.ws.resume();
            if (stream.ws.readyState === WebSocket.CLOSED) return resolve();
            stream.ws.once('close', () => resolve());
            stream.record.ending = 'closed';
            stream.ws.terminate();
          }),
      ),
    );
  }

  /**
   * Checks what the clients were told: `seq` goes up by one on each connection; no execution is reported in two
   * different terminal states; none is reported unfinished after it was reported finished, later on the same
   * connection or on a connection to a later server.
   */
  analyze(): EventAnalysis {
    const violations: string[] = [];
    const terminal = new Map<string, { state: string; where: string; generation: number }>();
    const firstTerminalGeneration = new Map<string, number>();
    let events = 0;
    let gaps = 0;
    for (const record of this.records) {
      record.events.forEach((event, index) => {
        if (event.seq !== index + 1 && violations.length < 50) {
          violations.push(`${record.name} (server ${record.generation}): message ${index + 1} (${event.type}) has seq ${event.seq}`);
        }
      });
      events += record.events.length;
      const endedHere = new Map<string, string>();
      for (const event of record.events) {
        if (event.type === 'gap') gaps += 1;
        for (const seen of observations(event)) {
          const where = `${record.name} (server ${record.generation}, seq ${event.seq}, ${seen.what})`;
          if (seen.terminal) {
            const before = terminal.get(seen.id);
            if (before && before.state !== seen.state) {
              violations.push(`execution ${seen.id} was reported ${before.state} at ${before.where} and ${seen.state} at ${where}`);
            }
            if (!before) terminal.set(seen.id, { state: seen.state, where, generation: record.generation });
            if (!endedHere.has(seen.id)) endedHere.set(seen.id, where);
            firstTerminalGeneration.set(seen.id, Math.min(firstTerminalGeneration.get(seen.id) ?? Infinity, record.generation));
          } else if (endedHere.has(seen.id)) {
            violations.push(`execution ${seen.id} was reported finished at ${endedHere.get(seen.id)!} and then ${seen.state} at ${where}`);
          }
        }
      }
    }
    // Across servers: once a server reported an execution finished, no later server may show it unfinished.
    for (const record of this.records) {
      for (const event of record.events) {
        for (const seen of observations(event)) {
          const endedIn = firstTerminalGeneration.get(seen.id);
          if (!seen.terminal && endedIn !== undefined && record.generation > endedIn) {
            violations.push(
              `execution ${seen.id} was reported finished (${terminal.get(seen.id)?.where ?? '?'}) and later, by server ${record.generation}, ${seen.state} (${record.name}, seq ${event.seq}, ${seen.what})`,
            );
          }
        }
      }
    }
    return { terminal: new Map([...terminal].map(([id, entry]) => [id, entry.state])), violations, streams: this.records.length, events, gaps };
  }
}
