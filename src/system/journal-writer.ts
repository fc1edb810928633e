import type { EntityKey, JournalEntry, StoredSnapshot } from '../persistence/types.js';
import type { EntityRuntime } from './runtime.js';
import type { Send } from './send.js';
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
  /**
   * Everything up to `seq` is durable, and so is the snapshot that went
   * with it when `withSnapshot` (published messages wait for this).
   */
  writeDurable(seq: number, withSnapshot: boolean): void;
}

const noEntries: readonly JournalEntry[] = [];

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
  /**
   * Applied entries not yet handed to the store. Created with the first
   * entry: an idle entity holds no array, and a write of one entry (the
   * common case) gets an array of exactly one.
   */
  private pending: JournalEntry[] | undefined = undefined;
  /** States per pending entry, kept only while someone subscribes. */
  private pendingStates: (EntityState | undefined)[] | undefined = undefined;
  /**
   * Callers waiting for durability, in seq order, linked through Send.next.
   * The list lives in the writer's own fields: a queue object would be one
   * more allocation per entity and one more cache miss per send.
   */
  private waitHead: Send | undefined = undefined;
  private waitTail: Send | undefined = undefined;
  private waitCount = 0;
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
    this.pending = undefined;
    this.pendingStates = undefined;
    this.snapshotWanted = false;
    this.wakeDirty = false;
    this.paused = false;
  }

  /** Callers waiting for durability (counted against mailboxDepthMax). */
  get waiting(): number {
    return this.waitCount;
  }

  get hasPending(): boolean {
    return this.pending !== undefined;
  }

  /** Nothing applied-but-unwritten, being written or waiting. */
  get quiet(): boolean {
    return this.waitCount === 0 && this.pending === undefined && !this.writing && !this.flushQueued;
  }

  append(entry: JournalEntry, state: EntityState | undefined): void {
    let count: number;
    if (this.pending === undefined) {
      this.pending = [entry];
      count = 1;
    } else {
      count = this.pending.push(entry);
    }
    if (state) {
      const states = (this.pendingStates ??= []);
      states.length = count - 1;
      states.push(state);
    }
  }

  /** Answers `send.state` once everything up to `send.seq` is durable. */
  wait(send: Send): void {
    if (this.durableSeq >= send.seq) send.resolve(send.state!);
    else {
      send.next = undefined;
      if (this.waitTail === undefined) this.waitHead = send;
      else this.waitTail.next = send;
      this.waitTail = send;
      this.waitCount++;
    }
  }

  schedule(): void {
    if (this.flushQueued || this.writing) return;
    if (!this.hasWork()) {
      this.settle();
      return;
    }
    this.flushQueued = true;
    this.rt.flushes.add(this);
  }

  /** @internal Called by the FlushQueue in its microtask. */
  runQueuedFlush(): void {
    this.flushQueued = false;
    this.flush();
  }

  private hasWork(): boolean {
    return this.pending !== undefined || this.snapshotWanted || this.wakeDirty;
  }

  private flush(): void {
    if (this.writing || this.paused) return;
    if (!this.hasWork()) {
      this.settle();
      return;
    }
    const entries = this.pending ?? noEntries;
    const states = this.pendingStates;
    this.pending = undefined;
    this.pendingStates = undefined;
    // Every applied entry is in `entries`, so the live actor is exactly at
    // lastSeq and a snapshot taken now belongs with this write.
    const lastSeq = this.source.seq;
    const wantSnapshot =
      this.snapshotWanted || lastSeq - this.snapshotSeq >= this.rt.options.snapshotEvery || (entries.length === 0 && this.wakeDirty);
    // The deadline first: computing it records whether the timer index is
    // due for published messages, which the snapshot records in turn.
    const wakeAt = this.wakeDirty ? this.source.wakeAtForWrite() : undefined;
    const snapshot = wantSnapshot ? this.source.snapshotForWrite() : undefined;
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
        this.source.writeDurable(lastSeq, snapshot !== undefined);
        if (states) for (const s of states) if (s) this.rt.emit(this.k, s);
        this.flush();
      },
      (error: unknown) => {
        this.writing = undefined;
        this.rt.log.error({ type: this.key.type, id: this.key.id, seq: lastSeq, err: error }, 'journal write failed; restarting entity from its durable state');
        // Everything applied after the durable seq is lost with the live
        // actor: answer those callers with the store error and restart.
        const err = error instanceof Error ? error : new Error(String(error));
        this.failWaiters(err);
        this.pending = undefined;
        this.pendingStates = undefined;
        this.source.writeFailed(err);
      },
    );
  }

  /**
   * Waits for the write in flight, then writes what is pending now (used
   * while paused); `wakeAt`, when given, updates the timer index with it.
   */
  async drainPending(wakeAt?: number): Promise<void> {
    while (this.writing) await this.writing.catch(() => undefined);
    const entries = this.pending;
    if (entries === undefined) return;
    this.pending = undefined;
    this.pendingStates = undefined;
    const lastSeq = entries[entries.length - 1]!.seq;
    await this.rt.store.write(
      wakeAt === undefined ? { key: this.key, expectedSeq: this.durableSeq, entries } : { key: this.key, expectedSeq: this.durableSeq, entries, wakeAt },
    );
    this.durableSeq = lastSeq;
    this.settleWaiters();
    this.source.writeDurable(lastSeq, false);
  }

  /** Writes a snapshot alone (passivation); `wakeAt` updates the timer index. */
  async writeSnapshot(snapshot: StoredSnapshot, wakeAt: number | null): Promise<void> {
    await this.rt.store.write({ key: this.key, expectedSeq: this.durableSeq, entries: [], snapshot, wakeAt });
    this.snapshotSeq = snapshot.seq;
    this.snapshotWanted = false;
    this.wakeDirty = false;
    this.source.writeDurable(snapshot.seq, true);
  }

  /** Answers every waiter: durable ones with their state, the rest with `err`. */
  failWaiters(err: Error): void {
    let w = this.waitHead;
    this.waitHead = undefined;
    this.waitTail = undefined;
    this.waitCount = 0;
    while (w !== undefined) {
      const next = w.next;
      w.next = undefined;
      if (w.seq <= this.durableSeq) w.resolve(w.state!);
      else w.reject(err);
      w = next;
    }
  }

  /** Drops what was applied but not written (the live actor is gone). */
  discardPending(): void {
    this.pending = undefined;
    this.pendingStates = undefined;
  }

  private settle(): void {
    this.settleWaiters();
    this.source.writerSettled();
  }

  private settleWaiters(): void {
    const durable = this.durableSeq;
    for (let w = this.waitHead; w !== undefined && w.seq <= durable; w = this.waitHead) {
      this.waitHead = w.next;
      if (this.waitHead === undefined) this.waitTail = undefined;
      this.waitCount--;
      w.next = undefined;
      w.resolve(w.state!);
    }
  }
}

/**
 * Writers with work to write, flushed together in one microtask: the sends
 * of one tick to many entities cost one queued microtask instead of one per
 * entity. Each writer still issues its own store write, and the adapter
 * group-commits them as before.
 */
export class FlushQueue {
  private dirty: JournalWriter[] = [];
  /** The previous batch's array, emptied and reused. */
  private spare: JournalWriter[] = [];
  private queued = false;
  private readonly run = (): void => this.flushAll();

  add(writer: JournalWriter): void {
    this.dirty.push(writer);
    if (this.queued) return;
    this.queued = true;
    queueMicrotask(this.run);
  }

  private flushAll(): void {
    this.queued = false;
    // Writers scheduled while this batch runs go into the next batch.
    const batch = this.dirty;
    this.dirty = this.spare;
    let failure: { error: unknown } | undefined;
    for (let i = 0; i < batch.length; i++) {
      try {
        batch[i]!.runQueuedFlush();
      } catch (error) {
        // A store that throws instead of rejecting breaks its contract (the
        // memory store asserts on caller bugs). Flush the other writers,
        // then let it surface as it would have from a microtask of its own.
        failure ??= { error };
      }
    }
    batch.length = 0;
    this.spare = batch;
    if (failure) throw failure.error;
  }
}
