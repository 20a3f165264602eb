// One execution's outputs as Jupyter keeps them (merged streams, clear_output, display updates), within a budget.
import { StreamText } from './stream-text.js';

/** An nbformat 4 output (stream, display_data, execute_result, error) with strings kept whole, not split in lines. */
export type NbOutput = { output_type: string } & Record<string, unknown>;

interface Slot {
  output: NbOutput;
  /** Present for stream outputs: the live text, materialized into `output.text` on read. */
  stream?: StreamText;
  displayId?: string;
  size: number;
}

export interface OutputChanges {
  upserts: Array<[index: number, output: NbOutput]>;
  count: number;
}

function approximateSize(output: NbOutput): number {
  return JSON.stringify(output).length;
}

export class OutputModel {
  private slots: Slot[] = [];
  private clearOnNextOutput = false;
  private dirty = new Set<number>();
  private countChanged = false;
  private total = 0;
  /** Whole outputs dropped from the middle to stay within the budget. */
  droppedOutputs = 0;
  private droppedOutputChars = 0;
  /** Where the "outputs dropped" marker stands once the budget was exceeded. */
  private markerAt: number | null = null;

  constructor(private readonly budgetChars: number) {}

  /** Applies one output-bearing iopub message (`update_display_data` goes through `updateDisplay`). */
  apply(msgType: string, content: Record<string, unknown>, executionCount: number | null): void {
    switch (msgType) {
      case 'stream':
        this.addStream(content.name === 'stderr' ? 'stderr' : 'stdout', String(content.text ?? ''));
        return;
      case 'display_data':
        this.add(
          { output_type: 'display_data', data: content.data ?? {}, metadata: content.metadata ?? {} },
          displayIdOf(content),
        );
        return;
      case 'execute_result':
        this.add(
          { output_type: 'execute_result', data: content.data ?? {}, metadata: content.metadata ?? {}, execution_count: executionCount },
          displayIdOf(content),
        );
        return;
      case 'error':
        this.add({
          output_type: 'error',
          ename: String(content.ename ?? ''),
          evalue: String(content.evalue ?? ''),
          traceback: Array.isArray(content.traceback) ? content.traceback.map(String) : [],
        });
        return;
      case 'clear_output':
        if (content.wait === true) this.clearOnNextOutput = true;
        else this.clear();
        return;
    }
  }

  /** `update_display_data`: replaces data and metadata of every output of this execution showing that display. */
  updateDisplay(displayId: string, content: Record<string, unknown>): boolean {
    let changed = false;
    this.slots.forEach((slot, index) => {
      if (slot.displayId !== displayId) return;
      slot.output = { ...slot.output, data: content.data ?? {}, metadata: content.metadata ?? {} };
      this.resize(slot);
      this.dirty.add(index);
      changed = true;
    });
    return changed;
  }

  /**
   * Loads outputs journaled by an earlier server process (crash recovery), as the starting state: they are
   * already stored, so they are not reported as changes. A trailing stream keeps merging with new text.
   */
  restore(outputs: readonly NbOutput[]): void {
    this.slots = outputs.map((output) => {
      if (output.output_type === 'stream') {
        const stream = new StreamText(Math.max(1024, Math.floor(this.budgetChars / 2)));
        stream.append(String(output.text ?? ''));
        return { output: { ...output, text: '' }, stream, size: 0 };
      }
      return { output, size: 0 };
    });
    this.total = 0;
    for (const slot of this.slots) this.resize(slot);
    this.dirty.clear();
    this.countChanged = false;
  }

  hasDisplay(displayId: string): boolean {
    return this.slots.some((slot) => slot.displayId === displayId);
  }

  get length(): number {
    return this.slots.length;
  }

  get droppedChars(): number {
    return this.droppedOutputChars + this.slots.reduce((sum, slot) => sum + (slot.stream?.dropped ?? 0), 0);
  }

  outputs(): NbOutput[] {
    return this.slots.map((slot) => this.materialize(slot));
  }

  output(index: number): NbOutput | undefined {
    const slot = this.slots[index];
    return slot ? this.materialize(slot) : undefined;
  }

  hasChanges(): boolean {
    return this.dirty.size > 0 || this.countChanged;
  }

  /** What changed since the last call: the journal writes exactly these rows. */
  takeChanges(): OutputChanges {
    const upserts: Array<[number, NbOutput]> = [];
    for (const index of [...this.dirty].sort((a, b) => a - b)) {
      const slot = this.slots[index];
      if (slot) upserts.push([index, this.materialize(slot)]);
    }
    this.dirty.clear();
    this.countChanged = false;
    return { upserts, count: this.slots.length };
  }

  private materialize(slot: Slot): NbOutput {
    if (!slot.stream) return slot.output;
    slot.stream.settle();
    return { ...slot.output, text: slot.stream.text() };
  }

  private addStream(name: 'stdout' | 'stderr', text: string): void {
    this.takePendingClear();
    const last = this.slots[this.slots.length - 1];
    if (last?.stream && last.output.name === name) {
      last.stream.append(text);
      this.resize(last);
      this.dirty.add(this.slots.length - 1);
      this.enforceBudget();
      return;
    }
    const stream = new StreamText(Math.max(1024, Math.floor(this.budgetChars / 2)));
    stream.append(text);
    this.push({ output: { output_type: 'stream', name, text: '' }, stream, size: 0 });
  }

  private add(output: NbOutput, displayId?: string): void {
    this.takePendingClear();
    this.push(displayId === undefined ? { output, size: 0 } : { output, displayId, size: 0 });
  }

  private push(slot: Slot): void {
    this.slots.push(slot);
    this.resize(slot);
    this.dirty.add(this.slots.length - 1);
    this.countChanged = true;
    this.enforceBudget();
  }

  private takePendingClear(): void {
    if (!this.clearOnNextOutput) return;
    this.clearOnNextOutput = false;
    this.clear();
  }

  private clear(): void {
    if (this.slots.length === 0) return;
    this.slots = [];
    this.total = 0;
    this.markerAt = null;
    this.dirty.clear();
    this.countChanged = true;
  }

  private resize(slot: Slot): void {
    const size = slot.stream ? slot.stream.length + 64 : approximateSize(slot.output);
    this.total += size - slot.size;
    slot.size = size;
  }

  /**
   * Over the budget, whole outputs are dropped from the middle (the first ones and the newest ones are what a
   * reader needs) and one marker output, placed where they were, says how many went.
   */
  private enforceBudget(): void {
    if (this.total <= this.budgetChars || this.slots.length < 3) return;
    if (this.markerAt === null) {
      let keepHead = 0;
      let headSize = 0;
      while (keepHead < this.slots.length - 2 && headSize + (this.slots[keepHead]?.size ?? 0) <= this.budgetChars / 2) {
        headSize += this.slots[keepHead]?.size ?? 0;
        keepHead += 1;
      }
      this.markerAt = Math.max(1, keepHead);
      const marker: Slot = { output: { output_type: 'stream', name: 'stderr', text: '' }, size: 0 };
      this.slots.splice(this.markerAt, 0, marker);
    }
    const markerAt = this.markerAt;
    let removeCount = 0;
    let freed = 0;
    while (this.total - freed > this.budgetChars && markerAt + 1 + removeCount < this.slots.length - 1) {
      freed += this.slots[markerAt + 1 + removeCount]?.size ?? 0;
      removeCount += 1;
    }
    this.slots.splice(markerAt + 1, removeCount);
    this.total -= freed;
    this.droppedOutputChars += freed;
    this.droppedOutputs += removeCount;
    const marker = this.slots[markerAt];
    if (marker) {
      marker.output = {
        output_type: 'stream',
        name: 'stderr',
        text: `[... ${this.droppedOutputs} outputs dropped to stay within the output budget ...]\n`,
      };
      this.resize(marker);
    }
    for (let index = markerAt; index < this.slots.length; index += 1) this.dirty.add(index);
    this.countChanged = true;
  }
}

function displayIdOf(content: Record<string, unknown>): string | undefined {
  const transient = content.transient;
  if (transient && typeof transient === 'object' && 'display_id' in transient) {
    const id = (transient as { display_id?: unknown }).display_id;
    if (typeof id === 'string' && id.length > 0) return id;
  }
  return undefined;
}
