// Progress of a headless run on stderr: a live bar on a terminal, one line per cell otherwise.

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class RunProgress {
  private done = 0;
  private current = '';
  private readonly startedAt = Date.now();

  constructor(private readonly out: ProgressStream, private readonly total: number) {}

  started(label: string): void {
    this.current = label;
    if (this.out.isTTY) this.redraw();
  }

  finished(label: string, state: string, durationMs: number | null): void {
    this.done += 1;
    const took = durationMs === null ? '' : ` in ${(durationMs / 1000).toFixed(2)}s`;
    if (this.out.isTTY) {
      if (state !== 'succeeded') this.out.write(`\r\x1b[K${label}: ${state}${took}\n`);
      this.redraw();
    } else {
      this.out.write(`[${this.done}/${this.total}] ${label}: ${state}${took}\n`);
    }
  }

  end(): void {
    if (this.out.isTTY) this.out.write('\r\x1b[K');
  }

  elapsedMs(): number {
    return Date.now() - this.startedAt;
  }

  private redraw(): void {
    const width = 24;
    const filled = this.total === 0 ? width : Math.round((this.done / this.total) * width);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
    const line = `[${bar}] ${this.done}/${this.total} cells  ${this.current}`;
    const columns = this.out.columns ?? 80;
    this.out.write(`\r\x1b[K${line.slice(0, Math.max(10, columns - 1))}`);
  }
}
