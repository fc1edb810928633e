import type { EntityKey, JournalEntry, StoredSnapshot } from '../persistence/types.js';
import type { EntityRuntime } from './runtime.js';
import type { EntityState } from './types.js';

/** What the writer needs from its entity host. */
export interface WriterSource {
  /** Seq of the last event applied to the live actor. */
  readonly seq: number;
  /** A snapshot of the live actor at `seq`, or undefined when there is no actor. */
  snapshotForWrite(): StoredSnapshot | undefined;
  /** Earliest pending timer deadline (null: none). */
  wakeAtForWrite(): number | null;
  /** A write failed: the live actor is ahead of the store and must restart. */
  writeFailed(error: Error): void;
  /** Called whenever the writer may have become quiet. */
  writerSettled(): void;
}

interface Waiter {
  seq: number;
  state: EntityState;
  resolve: (s: EntityState) => void;
  reject: (e: Error) => void;
}

/**
 * The durability pipeline of one entity: entries applied to the live actor
 * wait here until the store has them, and so do the callers they answer.
 *
 * At most one write per entity is in flight; entries applied meanwhile
 * gather into the next one, so a busy entity writes in batches and many
 * entities' writes issued in the same tick share one store commit (the
 * adapter groups them). A caller is answered only once every entry up to
 * its own is durable.
 */
export class JournalWriter {
  /** Last seq known durable in the store. */
  durableSeq = 0;
  /** Seq of the last stored snapshot. */
  snapshotSeq = 0;
  /** A snapshot must go with the next write (a child changed, or forced). */
  snapshotWanted = false;
  /** The timer index must be updated with the next write. */
  wakeDirty = false;
  /** While paused (the entity is restarting) nothing new is written. */
  paused = false;
  private pending: JournalEntry[] = [];
  /** States per pending entry, kept only while someone subscribes. */
  private pendingStates: EntityState[] = [];
  private waiters: Waiter[] = [];
  private writing: Promise<void> | undefined;
  private flushQueued = false;

  constructor(
    private readonly key: EntityKey,
    private readonly k: string,
    private readonly rt: EntityRuntime,
    private readonly source: WriterSource,
  ) {}

  /** Starts over from a recovered state. */
  reset(durableSeq: number, snapshotSeq: number): void {
    this.durableSeq = durableSeq;
    this.snapshotSeq = snapshotSeq;
    this.pending = [];
    this.pendingStates = [];
    this.snapshotWanted = false;
    this.wakeDirty = false;
    this.paused = false;
  }

  /** Callers waiting for durability (counted against mailboxDepthMax). */
  get waiting(): number {
    return this.waiters.length;
  }

  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  /** Nothing applied-but-unwritten, being written or waiting. */
  get quiet(): boolean {
    return this.waiters.length === 0 && this.pending.length === 0 && !this.writing && !this.flushQueued;
  }

  append(entry: JournalEntry, state: EntityState | undefined): void {
    this.pending.push(entry);
    if (state) {
      this.pendingStates.length = this.pending.length - 1;
      this.pendingStates.push(state);
    }
  }

  /** Answers `state` once everything up to `seq` is durable. */
  wait(seq: number, state: EntityState, resolve: (s: EntityState) => void, reject: (e: Error) => void): void {
    if (this.durableSeq >= seq) resolve(state);
    else this.waiters.push({ seq, state, resolve, reject });
  }

  schedule(): void {
    if (this.flushQueued || this.writing) return;
    if (!this.hasWork()) {
      this.settle();
      return;
    }
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  private hasWork(): boolean {
    return this.pending.length > 0 || this.snapshotWanted || this.wakeDirty;
  }

  private flush(): void {
    if (this.writing || this.paused) return;
    if (!this.hasWork()) {
      this.settle();
      return;
    }
    const entries = this.pending;
    const states = this.pendingStates;
    this.pending = [];
    this.pendingStates = [];
    // Every applied entry is in `entries`, so the live actor is exactly at
    // lastSeq and a snapshot taken now belongs with this write.
    const lastSeq = this.source.seq;
    const wantSnapshot =
      this.snapshotWanted || lastSeq - this.snapshotSeq >= this.rt.options.snapshotEvery || (entries.length === 0 && this.wakeDirty);
    const snapshot = wantSnapshot ? this.source.snapshotForWrite() : undefined;
    const wakeAt = this.wakeDirty ? this.source.wakeAtForWrite() : undefined;
    this.snapshotWanted = false;
    this.wakeDirty = false;
    const expectedSeq = this.durableSeq;
    this.rt.stats.storeWrites++;
    const write = this.rt.store.write(
      snapshot ? { key: this.key, expectedSeq, entries, snapshot, wakeAt } : { key: this.key, expectedSeq, entries, wakeAt },
    );
    this.writing = write.then(
      () => {
        this.writing = undefined;
        this.durableSeq = lastSeq;
        if (snapshot) this.snapshotSeq = snapshot.seq;
        this.settleWaiters();
        for (const s of states) if (s) this.rt.emit(this.k, s);
        this.flush();
      },
      (error: unknown) => {
        this.writing = undefined;
        this.rt.log.error({ type: this.key.type, id: this.key.id, seq: lastSeq, err: error }, 'journal write failed; restarting entity from its durable state');
        // Everything applied after the durable seq is lost with the live
        // actor: answer those callers with the store error and restart.
        const err = error instanceof Error ? error : new Error(String(error));
        this.failWaiters(err);
        this.pending = [];
        this.pendingStates = [];
        this.source.writeFailed(err);
      },
    );
  }

  /** Waits for the write in flight, then writes what is pending now (used while paused). */
  async drainPending(): Promise<void> {
    while (this.writing) await this.writing.catch(() => undefined);
    if (this.pending.length === 0) return;
    const entries = this.pending;
    this.pending = [];
    this.pendingStates = [];
    const lastSeq = entries[entries.length - 1]!.seq;
    await this.rt.store.write({ key: this.key, expectedSeq: this.durableSeq, entries });
    this.durableSeq = lastSeq;
    this.settleWaiters();
  }

  /** Writes a snapshot alone (passivation); `wakeAt` updates the timer index. */
  async writeSnapshot(snapshot: StoredSnapshot, wakeAt: number | null): Promise<void> {
    await this.rt.store.write({ key: this.key, expectedSeq: this.durableSeq, entries: [], snapshot, wakeAt });
    this.snapshotSeq = snapshot.seq;
    this.snapshotWanted = false;
    this.wakeDirty = false;
  }

  /** Answers every waiter: durable ones with their state, the rest with `err`. */
  failWaiters(err: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      if (w.seq <= this.durableSeq) w.resolve(w.state);
      else w.reject(err);
    }
  }

  /** Drops what was applied but not written (the live actor is gone). */
  discardPending(): void {
    this.pending = [];
    this.pendingStates = [];
  }

  private settle(): void {
    this.settleWaiters();
    this.source.writerSettled();
  }

  private settleWaiters(): void {
    if (this.waiters.length === 0) return;
    const durable = this.durableSeq;
    let i = 0;
    while (i < this.waiters.length && this.waiters[i]!.seq <= durable) i++;
    if (i === 0) return;
    const done = i === this.waiters.length ? this.waiters : this.waiters.slice(0, i);
    this.waiters = i === this.waiters.length ? [] : this.waiters.slice(i);
    for (const w of done) w.resolve(w.state);
  }
}
