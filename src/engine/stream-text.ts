// One stream output's text as Jupyter front ends show it (`\r` and `\b` applied), kept within a character budget.

/**
 * Applies backspaces then carriage returns to one line without '\n', the way JupyterLab does for stream text:
 * `\b` deletes the character before it, `\r` returns to the start and later text overwrites character by
 * character. A trailing `\r` is kept, so the next chunk overwrites this line.
 */
export function resolveLine(raw: string): string {
  let text = raw;
  if (text.includes('\b')) {
    const kept: string[] = [];
    for (const char of text) {
      if (char === '\b' && kept.length > 0) kept.pop();
      else kept.push(char);
    }
    text = kept.join('');
  }
  if (!text.includes('\r')) return text;
  const pending = text.endsWith('\r');
  let line = '';
  for (const segment of text.split('\r')) line = segment + line.slice(segment.length);
  return pending ? `${line}\r` : line;
}

/** The marker written where text was dropped to stay within the budget. */
export function droppedMarker(droppedChars: number): string {
  return `\n[... ${droppedChars} characters dropped to stay within the output budget ...]\n`;
}

/**
 * Finished lines never change again (neither `\r` nor `\b` crosses a newline), so only the current line is
 * re-resolved per chunk: a progress bar printed a million times costs a million small steps, not a quadratic rescan.
 * Past the budget the first half is kept as the head and the last half rolls as the tail.
 */
export class StreamText {
  private head = '';
  private tail = '';
  private line = '';
  private truncated = false;
  dropped = 0;

  constructor(private readonly budget: number) {}

  append(chunk: string): void {
    let text = this.line + chunk;
    const lastNewline = text.lastIndexOf('\n');
    if (lastNewline >= 0) {
      const lines = text.slice(0, lastNewline).split('\n');
      let finished = '';
      for (const line of lines) finished += `${resolveLine(line.replace(/\r+$/, ''))}\n`;
      this.commit(finished);
      text = text.slice(lastNewline + 1);
    }
    this.line = resolveLine(text);
  }

  get length(): number {
    return this.head.length + this.tail.length + this.line.length;
  }

  text(): string {
    const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
    if (!this.truncated) return this.head + line;
    return this.head + droppedMarker(this.dropped) + this.tail + line;
  }

  private commit(finished: string): void {
    if (!this.truncated) {
      if (this.head.length + finished.length <= this.budget) {
        this.head += finished;
        return;
      }
      // Switch to head + rolling tail: the head keeps the first half, cut at a line end when there is one.
      this.truncated = true;
      const all = this.head + finished;
      const half = Math.floor(this.budget / 2);
      const cut = all.lastIndexOf('\n', half - 1);
      const headEnd = cut > half / 2 ? cut + 1 : half;
      this.head = all.slice(0, headEnd);
      this.tail = all.slice(headEnd);
    } else {
      this.tail += finished;
    }
    const tailBudget = this.budget - this.head.length;
    // Trim in bulk (a quarter over the budget) so the rolling tail costs amortized O(1) per character.
    if (this.tail.length > tailBudget * 1.25) this.trimTail(tailBudget);
  }

  /** Bounds the tail to `tailBudget` characters, preferring to start it at a line start. */
  private trimTail(tailBudget: number): void {
    let from = this.tail.length - tailBudget;
    const nextLine = this.tail.indexOf('\n', from);
    if (nextLine >= 0 && nextLine - from < 200) from = nextLine + 1;
    this.dropped += from;
    this.tail = this.tail.slice(from);
  }

  /** Called before the text is read for storage, so what is stored is within the budget. */
  settle(): void {
    const tailBudget = this.budget - this.head.length;
    if (this.truncated && this.tail.length > tailBudget) this.trimTail(tailBudget);
  }
}
