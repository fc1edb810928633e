/**
 * In-memory knowledge of each entity's last seq and snapshot seq, so the
 * seq check of a write costs a map lookup instead of a range read.
 *
 * The cache is exact only while no write of the entity is in flight: values
 * change after a commit succeeds, never before. An entry with `inFlight > 0`
 * is not trusted; the group commit then reads the truth inside its write
 * transaction. This relies on this store being the only writer of the LMDB
 * environment, which the engine's shard ownership guarantees; a second
 * process writing the same files would make the cache stale.
 */
import type { EntityKey } from '../../src/persistence/types.js';

/** What is known about one entity. `undefined` means "read it". */
export interface EntityState {
  /** Seq of the last durable journal entry (0 for none). */
  lastSeq: number | undefined;
  /** Seq of the stored snapshot, -1 when there is none. */
  snapshotSeq: number | undefined;
  /** Operations applied in transactions that have not settled yet. */
  inFlight: number;
}

/**
 * Entity states by type then id: nested maps avoid building a string key per
 * write. Bounded by `entitiesMax`; past it, the oldest settled entries are
 * dropped and read again when needed.
 */
export class EntityCache {
  private readonly byType = new Map<string, Map<string, EntityState>>();
  private size = 0;

  constructor(private readonly entitiesMax: number) {}

  get(key: EntityKey): EntityState | undefined {
    return this.byType.get(key.type)?.get(key.id);
  }

  getOrCreate(key: EntityKey): EntityState {
    let ids = this.byType.get(key.type);
    if (ids === undefined) {
      ids = new Map();
      this.byType.set(key.type, ids);
    }
    let state = ids.get(key.id);
    if (state === undefined) {
      state = { lastSeq: undefined, snapshotSeq: undefined, inFlight: 0 };
      ids.set(key.id, state);
      this.size++;
      if (this.size > this.entitiesMax) this.evict();
    }
    return state;
  }

  /**
   * Drops settled entries, oldest first, down to 90% of the bound. Entries
   * with writes in flight stay: their settlement must find them.
   */
  private evict(): void {
    const target = Math.floor(this.entitiesMax * 0.9);
    for (const [type, ids] of this.byType) {
      for (const [id, state] of ids) {
        if (this.size <= target) return;
        if (state.inFlight === 0) {
          ids.delete(id);
          this.size--;
        }
      }
      if (ids.size === 0) this.byType.delete(type);
    }
  }
}
