// Runs async work one at a time per key (a notebook, an asset folder), in call order, without blocking other keys.

export class KeyedSerial {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `work` after every earlier call with the same key has settled; its outcome is the caller's. */
  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const run = previous.then(work);
    // Failures belong to their caller; the chain itself only waits.
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return run;
  }

  /** True while work for `key` is queued or running. */
  busy(key: string): boolean {
    return this.tails.has(key);
  }
}
