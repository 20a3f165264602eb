// New kernels from the configured provider; kernels journaled by the other kind (before a switch between local and
// remote kernels) are still re-attached, so a switch does not throw away work in flight or leak a live process.
import type { KernelProvider, KernelSession, KernelSpec, StartOptions, StoredKernel } from './types.js';

export class SwitchingProvider implements KernelProvider {
  readonly kind: KernelProvider['kind'];

  /** `previous`: providers that can re-attach what an earlier configuration started (never used to start). */
  constructor(
    private readonly primary: KernelProvider,
    private readonly previous: readonly KernelProvider[],
  ) {
    this.kind = primary.kind;
  }

  listSpecs(): Promise<KernelSpec[]> {
    return this.primary.listSpecs();
  }

  start(options: StartOptions): Promise<KernelSession> {
    return this.primary.start(options);
  }

  async reapUnrecorded(recordedIds: ReadonlySet<string>): Promise<number> {
    let reaped = 0;
    for (const provider of [this.primary, ...this.previous]) reaped += (await provider.reapUnrecorded?.(recordedIds)) ?? 0;
    return reaped;
  }

  /** A kernel keeps running where it was started until it is shut down; then its notebook's next kernel starts here. */
  attach(stored: StoredKernel): Promise<KernelSession | null> {
    if (stored.provider === this.primary.kind) return this.primary.attach(stored);
    const other = this.previous.find((provider) => provider.kind === stored.provider);
    return other ? other.attach(stored) : Promise.resolve(null);
  }
}
