/**
 * What the nats adapter remembers about each entity, and the queue that
 * runs one entity's operations one after another.
 *
 * The journal's optimistic concurrency needs the stream sequence of the
 * entity's last message (`Nats-Expected-Last-Subject-Sequence`), which the
 * server assigns only when it acknowledges that message. So operations of
 * one entity run in call order, each after the previous one settled, while
 * operations of different entities run concurrently. The engine keeps one
 * write per entity in flight anyway; the queue makes pipelined callers
 * (and `snapshots.save` between writes) safe too.
 *
 * Everything here is a hint that saves a round trip, never the truth: the
 * server checks the expected sequence of every journal message and snapshot
 * put, and a mismatch makes the adapter read the entity again. Another node
 * writing the entity (after a shard moved) therefore costs one extra read,
 * not a wrong write. After any failure whose outcome is unknown (a timeout,
 * a lost connection), the entity's knowledge is dropped.
 */
import type { EntityKey } from '../../src/persistence/types.js';
import type { EncodedEntity } from './keys.js';

/** What is known about one entity. `undefined` means "ask the server". */
export interface EntityState {
  readonly key: EntityKey;
  readonly entity: EncodedEntity;
  /** Seq of the last journal entry, 0 for an empty journal. */
  lastSeq: number | undefined;
  /** Stream sequence of the message holding `lastSeq` (0: no message). */
  lastStreamSeq: number;
  /** First seq of that message. */
  lastFirstSeq: number;
  /** Seq of the stored snapshot, -1 when there is none. */
  snapshotSeq: number | undefined;
  /** Stream sequence (KV revision) of the snapshot entry, 0 when none. */
  snapshotRevision: number;
  /** The timer-index entry as stored: a deadline, or `null` for none. */
  wakeAt: number | null | undefined;
  /**
   * Where reading may start: every journal entry after `seq` sits at
   * stream sequence `from` or later. Set from a loaded snapshot, so
   * recovery reads only the journal tail.
   */
  readHint: { seq: number; from: number } | undefined;
  /** Operations waiting behind the running one. */
  readonly queue: (() => Promise<void>)[];
  running: boolean;
}

/**
 * Entity states by encoded key, least recently used first. Bounded by
 * `entitiesMax` for idle entries; entries with operations queued or
 * running always stay.
 */
export class EntityCache {
  private readonly states = new Map<string, EntityState>();

  constructor(private readonly entitiesMax: number) {}

  get size(): number {
    return this.states.size;
  }

  /** The state of `entity`, created empty when unknown, marked recently used. */
  get(entity: EncodedEntity): EntityState {
    let state = this.states.get(entity.tokens);
    if (state !== undefined) {
      this.states.delete(entity.tokens);
      this.states.set(entity.tokens, state);
      return state;
    }
    if (this.states.size >= this.entitiesMax) this.evict();
    state = {
      key: { type: entity.key.type, id: entity.key.id },
      entity,
      lastSeq: undefined,
      lastStreamSeq: 0,
      lastFirstSeq: 0,
      snapshotSeq: undefined,
      snapshotRevision: 0,
      wakeAt: undefined,
      readHint: undefined,
      queue: [],
      running: false,
    };
    this.states.set(entity.tokens, state);
    return state;
  }

  /** True when no operation of the entity is queued or running. */
  static idle(state: EntityState): boolean {
    return !state.running && state.queue.length === 0;
  }

  /**
   * Runs `op` after the entity's earlier operations have settled. The
   * first operation of an idle entity starts synchronously, so its request
   * leaves in the caller's tick.
   */
  run<T>(state: EntityState, op: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      state.queue.push(() => op().then(resolve, reject));
      if (!state.running) void this.drain(state);
    });
  }

  /** Drops what is known about the entity, if nothing of it is running. */
  forget(tokens: string): void {
    const state = this.states.get(tokens);
    if (state !== undefined && EntityCache.idle(state)) {
      this.states.delete(tokens);
    }
  }

  clear(): void {
    this.states.clear();
  }

  private async drain(state: EntityState): Promise<void> {
    state.running = true;
    try {
      for (
        let op = state.queue.shift();
        op !== undefined;
        op = state.queue.shift()
      ) {
        // Each op settles its own promise and never rejects here.
        await op();
      }
    } finally {
      state.running = false;
    }
  }

  /** Drops idle entries, least recently used first, down to 90% of the bound. */
  private evict(): void {
    const target = Math.floor(this.entitiesMax * 0.9);
    for (const [tokens, state] of this.states) {
      if (this.states.size <= target) return;
      if (EntityCache.idle(state)) this.states.delete(tokens);
    }
  }
}

/** Forgets everything learned about the entity's stored records. */
export function invalidate(state: EntityState): void {
  state.lastSeq = undefined;
  state.lastStreamSeq = 0;
  state.lastFirstSeq = 0;
  state.snapshotSeq = undefined;
  state.snapshotRevision = 0;
  state.wakeAt = undefined;
  state.readHint = undefined;
}
