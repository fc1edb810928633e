/**
 * A deterministic simulation of coordinator processes over one memory KV:
 * simulated time, a clock per process that runs at its own rate (bounded
 * drift), a network with latency that can partition one process from the
 * store, and processes that can be paused (SIGSTOP: nothing of theirs runs,
 * replies and watch events wait) or crashed (nothing ever runs again).
 *
 * Its invariant checker asks, for every shard, how many processes that are
 * not crashed own it with a valid lease by their own clock (`owns()`), after
 * every simulated step and inside every `onAcquired`: more than one is a
 * violation of the protocol's safety property.
 */
import { ClusterError } from '../../src/errors.js';
import type { FenceToken } from '../../src/persistence/types.js';
import {
  createSimulatedClock,
  type Clock,
  type SimulatedClock,
} from '../../src/system/clock.js';
import {
  createCoordinator,
  type Coordinator,
  type CoordinatorOptions,
  type LostReason,
} from '../../src/sharding/coordinator.js';
import type {
  ClusterKv,
  KvConditionalOptions,
  KvEntry,
  KvWatch,
  KvWatchEvent,
  KvWatchOptions,
} from '../../src/sharding/kv.js';
import { allocate } from '../../src/sharding/allocation.js';
import { createMemoryKv, type MemoryKv } from '../../src/sharding/memory-kv.js';
import { WatchQueue } from '../../src/sharding/watch-queue.js';

/** Runs `fn` now, or when the process resumes if it is paused; never if it crashed. */
class Gate {
  paused = false;
  crashed = false;
  private waiting: (() => void)[] = [];

  run(fn: () => void): void {
    if (this.crashed) return;
    if (this.paused) this.waiting.push(fn);
    else fn();
  }

  /** A promise that settles when the process may run (never once crashed). */
  pass(): Promise<void> {
    return new Promise((resolve) => this.run(resolve));
  }

  resume(): void {
    this.paused = false;
    const waiting = this.waiting;
    this.waiting = [];
    for (const fn of waiting) this.run(fn);
  }
}

/** A process clock: rate-scaled simulated time, timers gated by the process. */
class ProcessClock implements Clock {
  private readonly origin: number;
  private readonly handles = new Map<number, unknown>();
  private nextHandle = 1;

  constructor(
    private readonly base: SimulatedClock,
    readonly rate: number,
    private readonly gate: Gate,
  ) {
    this.origin = base.now();
  }

  now(): number {
    return 1_000_000 + (this.base.now() - this.origin) * this.rate;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const handle = this.nextHandle++;
    this.handles.set(
      handle,
      this.base.setTimeout(
        () => {
          this.handles.delete(handle);
          this.gate.run(fn);
        },
        Math.max(0, ms) / this.rate,
      ),
    );
    return handle;
  }

  clearTimeout(handle: unknown): void {
    const inner = this.handles.get(handle as number);
    if (inner !== undefined) this.base.clearTimeout(inner);
    this.handles.delete(handle as number);
  }
}

/** The network between one process and the store. */
class Link {
  partitioned = false;
  constructor(
    readonly base: SimulatedClock,
    readonly latencyMs: number,
  ) {}

  delay(): Promise<void> {
    return new Promise((resolve) =>
      this.base.setTimeout(resolve, this.latencyMs),
    );
  }
}

const unreachable = (): ClusterError =>
  new ClusterError('CLUSTER_UNAVAILABLE', 'simulated partition', {
    retryable: true,
  });

/**
 * A process's client of the shared memory KV through its link: requests
 * travel `latencyMs` each way; a partition drops requests (not applied) and
 * replies (applied, but the caller sees a failure, as with a lost reply);
 * results wait while the process is paused.
 */
class SimKv implements ClusterKv {
  private readonly watches = new Set<SimWatch>();

  constructor(
    private readonly inner: ClusterKv,
    private readonly link: Link,
    private readonly gate: Gate,
    private readonly hidden: (key: string) => boolean,
  ) {}

  private async call<T>(op: () => Promise<T>): Promise<T> {
    await this.link.delay();
    if (this.link.partitioned) {
      await this.gate.pass();
      throw unreachable();
    }
    let result: { ok: true; value: T } | { ok: false; err: unknown };
    try {
      result = { ok: true, value: await op() };
    } catch (err) {
      result = { ok: false, err };
    }
    await this.link.delay();
    const lost = this.link.partitioned;
    await this.gate.pass();
    if (lost) throw unreachable();
    if (!result.ok) throw result.err;
    return result.value;
  }

  get(key: string): Promise<KvEntry | undefined> {
    return this.call(() => this.inner.get(key));
  }
  create(key: string, value: Uint8Array): Promise<number> {
    return this.call(() => this.inner.create(key, value));
  }
  update(
    key: string,
    value: Uint8Array,
    expectedRevision: number,
  ): Promise<number> {
    return this.call(() => this.inner.update(key, value, expectedRevision));
  }
  put(key: string, value: Uint8Array): Promise<number> {
    return this.call(() => this.inner.put(key, value));
  }
  delete(key: string, options?: KvConditionalOptions): Promise<void> {
    return this.call(() => this.inner.delete(key, options));
  }
  purge(key: string, options?: KvConditionalOptions): Promise<void> {
    return this.call(() => this.inner.purge(key, options));
  }
  keys(prefix?: string): Promise<string[]> {
    return this.call(() => this.inner.keys(prefix));
  }
  list(prefix?: string): Promise<KvEntry[]> {
    return this.call(() => this.inner.list(prefix));
  }

  async watch(prefix = '', options?: KvWatchOptions): Promise<KvWatch> {
    const inner = await this.call(() => this.inner.watch(prefix, options));
    const watch = new SimWatch(inner, this.link, this.gate, this.hidden);
    this.watches.add(watch);
    return watch.queue;
  }

  /** The link was cut: every watch reports `interrupted`. */
  partitioned(): void {
    for (const watch of this.watches) watch.interrupt();
  }

  /** The link is back: watches deliver what they missed, then `ready`. */
  healed(): void {
    for (const watch of this.watches) watch.resume();
  }

  async close(): Promise<void> {
    await Promise.all([...this.watches].map((w) => w.queue.stop()));
  }
}

/** A watch through a link: in order, `latencyMs` late, held while partitioned or paused. */
class SimWatch {
  readonly queue: WatchQueue;
  private held: KvWatchEvent[] = [];
  private chain: Promise<void> = Promise.resolve();
  private cut = false;

  constructor(
    private readonly inner: KvWatch,
    private readonly link: Link,
    private readonly gate: Gate,
    private readonly hidden: (key: string) => boolean,
  ) {
    this.queue = new WatchQueue(1_000_000, () => inner.stop());
    void this.pump();
  }

  private async pump(): Promise<void> {
    for await (const event of this.inner) {
      if (
        (event.kind === 'put' || event.kind === 'delete') &&
        this.hidden(event.key)
      )
        continue;
      if (this.cut) this.held.push(event);
      else this.forward(event);
    }
  }

  private forward(event: KvWatchEvent): void {
    // Each event leaves the store now and arrives latencyMs later; chaining
    // keeps the order.
    const arrival = this.link.delay();
    this.chain = this.chain.then(async () => {
      await arrival;
      await this.gate.pass();
      this.queue.push(event);
    });
  }

  interrupt(): void {
    if (this.cut) return;
    this.cut = true;
    this.forward({ kind: 'interrupted' });
  }

  /**
   * Delivers what the watch missed as a resumed JetStream consumer on a
   * history-1 bucket does: only the latest write of each key, in revision
   * order. Intermediate revisions are skipped, so for a moment the view can
   * show one key newer than another (the hazard `confirmDead` guards).
   */
  resume(): void {
    if (!this.cut) return;
    this.cut = false;
    const latest = new Map<string, KvWatchEvent>();
    for (const event of this.held) {
      if (event.kind === 'put' || event.kind === 'delete') {
        latest.delete(event.key);
        latest.set(event.key, event);
      }
    }
    this.held = [];
    const missed = [...latest.values()].sort(
      (a, b) =>
        (a as { revision: number }).revision -
        (b as { revision: number }).revision,
    );
    for (const event of missed) this.forward(event);
    this.forward({ kind: 'ready' });
  }
}

export interface SimEvent {
  readonly at: number;
  readonly node: string;
  readonly kind: 'acquired' | 'release-start' | 'release-end' | 'lost';
  readonly shard: number;
  readonly reason?: LostReason;
  readonly token?: number;
}

export interface SimProcess {
  readonly id: string;
  readonly incarnation: number;
  readonly coordinator: Coordinator;
  readonly clock: ProcessClock;
  readonly gate: Gate;
  readonly link: Link;
  readonly kv: SimKv;
  readonly joined: Promise<void>;
  /** A graceful stop was asked for. */
  leaving: boolean;
  stopped: boolean;
}

export interface SimOptions {
  readonly shardCount: number;
  readonly leaseTtlMs?: number;
  readonly latencyMs?: number;
  /** Simulated time a handoff's onRelease takes, in process-clock ms. */
  readonly drainMs?: number;
  readonly coordinator?: Partial<CoordinatorOptions>;
}

export class Simulation {
  readonly base: SimulatedClock = createSimulatedClock(0);
  readonly store: MemoryKv = createMemoryKv();
  readonly processes: SimProcess[] = [];
  readonly events: SimEvent[] = [];
  readonly violations: string[] = [];
  private incarnations = 0;

  constructor(readonly options: SimOptions) {}

  get now(): number {
    return this.base.now();
  }

  /**
   * Starts a process; `rate` is its clock rate relative to simulated time.
   * `hidden` keys never reach its watch (a view that lags on those keys
   * forever), while its reads and writes see the store as it is.
   */
  start(
    id: string,
    rate = 1,
    extra: Partial<CoordinatorOptions> = {},
    hidden: (key: string) => boolean = () => false,
  ): SimProcess {
    const gate = new Gate();
    const clock = new ProcessClock(this.base, rate, gate);
    const link = new Link(this.base, this.options.latencyMs ?? 2);
    const kv = new SimKv(this.store.connect(), link, gate, hidden);
    const incarnation = ++this.incarnations;
    const record = (
      kind: SimEvent['kind'],
      shard: number,
      more: Partial<SimEvent> = {},
    ): void => {
      this.events.push({ at: this.base.now(), node: id, kind, shard, ...more });
    };
    const drainMs = this.options.drainMs ?? 10;
    const coordinator = createCoordinator({
      kv,
      nodeId: id,
      shardCount: this.options.shardCount,
      leaseTtlMs: this.options.leaseTtlMs ?? 1_000,
      clock,
      incarnation: `inc${incarnation}`,
      ...this.options.coordinator,
      ...extra,
      onAcquired: (shard: number, token: FenceToken) => {
        record('acquired', shard, { token: token.token });
        this.checkShard(shard, `${id} acquired shard ${shard}`);
      },
      onRelease: async (shard: number) => {
        record('release-start', shard);
        await new Promise<void>((resolve) =>
          clock.setTimeout(resolve, drainMs),
        );
        record('release-end', shard);
      },
      onLost: (shard: number, reason: LostReason) =>
        record('lost', shard, { reason }),
    });
    const joined = coordinator.start();
    joined.catch(() => undefined);
    const process: SimProcess = {
      id,
      incarnation,
      coordinator,
      clock,
      gate,
      link,
      kv,
      joined,
      leaving: false,
      stopped: false,
    };
    this.processes.push(process);
    return process;
  }

  /** The running (not crashed, not stopped) process with this node id. */
  get(id: string): SimProcess {
    const found = this.processes.find(
      (p) => p.id === id && !p.gate.crashed && !p.stopped,
    );
    if (found === undefined) throw new Error(`no running process ${id}`);
    return found;
  }

  running(): SimProcess[] {
    return this.processes.filter((p) => !p.gate.crashed && !p.stopped);
  }

  crash(process: SimProcess): void {
    process.gate.crashed = true;
    process.link.partitioned = true;
  }

  pause(process: SimProcess): void {
    process.gate.paused = true;
  }

  resume(process: SimProcess): void {
    process.gate.resume();
  }

  partition(process: SimProcess): void {
    process.link.partitioned = true;
    process.kv.partitioned();
  }

  heal(process: SimProcess): void {
    process.link.partitioned = false;
    process.kv.healed();
  }

  /** Graceful stop, running in simulated time; resolves when done. */
  leave(process: SimProcess): Promise<void> {
    process.leaving = true;
    return process.coordinator.stop().then(() => {
      process.stopped = true;
    });
  }

  /** Advances simulated time in steps, letting every process run between steps. */
  async run(ms: number, stepMs = 10): Promise<void> {
    const end = this.base.now() + ms;
    while (this.base.now() < end) {
      this.base.advance(Math.min(stepMs, end - this.base.now()));
      await settle();
      this.checkAll('after a step');
    }
  }

  /** Runs until `done()` holds, failing after `limitMs` of simulated time. */
  async runUntil(
    done: () => boolean,
    limitMs: number,
    stepMs = 10,
  ): Promise<number> {
    const start = this.base.now();
    while (!done()) {
      if (this.base.now() - start > limitMs) {
        throw new Error(
          `condition not reached within ${limitMs} ms of simulated time`,
        );
      }
      await this.run(stepMs, stepMs);
    }
    return this.base.now() - start;
  }

  /** Owners of `shard` right now: non-crashed processes that own it with a valid lease. */
  owners(shard: number): SimProcess[] {
    return this.processes.filter(
      (p) => !p.gate.crashed && p.coordinator.owns(shard),
    );
  }

  private checkShard(shard: number, when: string): void {
    const owners = this.owners(shard);
    if (owners.length > 1) {
      this.violations.push(
        `t=${this.base.now()} ${when}: shard ${shard} owned by ${owners.map((p) => `${p.id}#${p.incarnation}`).join(' and ')}`,
      );
    }
  }

  checkAll(when: string): void {
    for (let shard = 0; shard < this.options.shardCount; shard++)
      this.checkShard(shard, when);
  }

  /**
   * True when every shard is owned by exactly one running process, and
   * that process is the allocation target over the running processes.
   */
  converged(): boolean {
    const ids = this.running().map((p) => p.id);
    if (ids.length === 0) return false;
    const targets = allocate(this.options.shardCount, ids);
    for (let shard = 0; shard < this.options.shardCount; shard++) {
      const owners = this.running().filter((p) => p.coordinator.owns(shard));
      if (owners.length !== 1 || owners[0]?.id !== targets[shard]) return false;
    }
    return true;
  }

  /** Owner id per shard among running processes (undefined where none). */
  ownership(): (string | undefined)[] {
    return Array.from(
      { length: this.options.shardCount },
      (_, shard) => this.running().find((p) => p.coordinator.owns(shard))?.id,
    );
  }

  /**
   * Ends every process. Crashed and paused ones are not waited for: their
   * in-flight requests never complete, as with a process that is gone.
   */
  async stopAll(): Promise<void> {
    const live = this.processes.filter(
      (p) => !p.gate.crashed && !p.gate.paused,
    );
    for (const p of this.processes) p.gate.crashed = true;
    for (const p of this.processes)
      void p.coordinator.stop({ graceful: false }).catch(() => undefined);
    await settle();
    await Promise.all(
      live.map((p) =>
        p.coordinator.stop({ graceful: false }).catch(() => undefined),
      ),
    );
  }
}

/** Lets every pending promise chain and immediate run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 8; i++)
    await new Promise((resolve) => setImmediate(resolve));
}
