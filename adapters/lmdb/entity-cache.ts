/**
 * In-memory knowledge of each entity: where its chain of log records starts
 * and its last seq, so a write checks its expected seq with a map lookup
 * and links its log record without a read.
 *
 * Two views are kept. The applied view (`lastSeq`, `head`) moves when a
 * batch is formed, in commit order, and is what the next write builds on;
 * it runs ahead of the disk by the batches in flight.
 * The committed view (`committedLastSeq`, `committedHead`) moves when a
 * transaction has committed, and is what reads use: a read transaction
 * cannot see a record that is not committed yet.
 *
 * An entity is *dirty* while it has log records or a wake-up change that the
 * heads and wake-ups databases do not reflect yet; a checkpoint writes them
 * and makes it clean. Dirty entities and entities with writes in flight stay
 * in the cache whatever its bound: they are the only place that knowledge
 * lives until the checkpoint (after a crash, the log scan rebuilds it).
 * Clean entities may be dropped at any time and are read again from the
 * heads database. All of this relies on this store being the only writer of
 * the environment, which the engine's shard ownership guarantees.
 */
import type { EntityKey } from '../../src/persistence/types.js';

/** What is known about one entity. `undefined` means "read it". */
export interface EntityState {
  readonly key: EntityKey;
  /** Seq of the last journal entry written (0 for none), applied view. */
  lastSeq: number | undefined;
  /** Log position of the newest record (0 for none), applied view. */
  head: number | undefined;
  /** The same two, committed view. */
  committedLastSeq: number | undefined;
  committedHead: number | undefined;
  /** Seq of the stored snapshot, -1 when there is none. */
  snapshotSeq: number | undefined;
  /** Position of a damaged record in the entity's chain, if one was found. */
  damaged: number | undefined;
  /** Wake-up change not yet checkpointed: `null` removes, `undefined` none. */
  wake: number | null | undefined;
  /** Has changes the heads or wake-ups databases do not hold yet. */
  dirty: boolean;
  /** Bumped by every applied change, so a checkpoint can tell it is stale. */
  version: number;
  /** Operations in batches that have not settled yet. */
  inFlight: number;
  /** The engine let go of the entity: drop it as soon as it is clean. */
  forgotten: boolean;
}

/**
 * Entity states by type then id: nested maps avoid building a string key per
 * write. Bounded by `entitiesMax` for clean, settled entries; past it, the
 * oldest of those are dropped and read again when needed.
 */
export class EntityCache {
  private readonly byType = new Map<string, Map<string, EntityState>>();
  private size = 0;
  /** Dirty entities, for the next checkpoint. */
  readonly dirty = new Set<EntityState>();

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
      // Evict before inserting: the entry being created is about to be
      // used by the caller and must not be the one dropped.
      if (this.size >= this.entitiesMax) {
        this.evict();
        ids = this.byType.get(key.type);
        if (ids === undefined) {
          ids = new Map();
          this.byType.set(key.type, ids);
        }
      }
      state = {
        key: { type: key.type, id: key.id },
        lastSeq: undefined,
        head: undefined,
        committedLastSeq: undefined,
        committedHead: undefined,
        snapshotSeq: undefined,
        damaged: undefined,
        wake: undefined,
        dirty: false,
        version: 0,
        inFlight: 0,
        forgotten: false,
      };
      ids.set(key.id, state);
      this.size++;
    }
    return state;
  }

  /** Dirty entities the engine has let go of: a checkpoint frees them. */
  forgottenDirty = 0;

  /** Records an applied change; a write means the engine holds it again. */
  markDirty(state: EntityState): void {
    state.version++;
    if (state.forgotten) {
      state.forgotten = false;
      if (state.dirty) this.forgottenDirty--;
    }
    if (!state.dirty) {
      state.dirty = true;
      this.dirty.add(state);
    }
  }

  markClean(state: EntityState): void {
    if (!state.dirty) return;
    state.dirty = false;
    state.wake = undefined;
    this.dirty.delete(state);
    if (state.forgotten) {
      this.forgottenDirty--;
      this.drop(state);
    }
  }

  /**
   * The engine no longer holds the entity: drop what we know now if it is
   * clean, else once a checkpoint has made it clean.
   */
  forget(key: EntityKey): void {
    const state = this.get(key);
    if (state === undefined || state.forgotten) return;
    state.forgotten = true;
    if (state.dirty) this.forgottenDirty++;
    this.drop(state);
  }

  /** Drops `state` if nothing depends on it staying. */
  private drop(state: EntityState): void {
    if (state.dirty || state.inFlight > 0) return;
    this.remove(state);
  }

  /** Drops a forgotten entity once its last write in flight settles. */
  settled(state: EntityState): void {
    if (state.forgotten && state.inFlight === 0 && !state.dirty)
      this.remove(state);
  }

  private remove(state: EntityState): void {
    const ids = this.byType.get(state.key.type);
    if (ids?.get(state.key.id) !== state) return;
    ids.delete(state.key.id);
    this.size--;
    if (ids.size === 0) this.byType.delete(state.key.type);
  }

  /** Forgets everything (the state is being rebuilt from the database). */
  clear(): void {
    this.byType.clear();
    this.dirty.clear();
    this.size = 0;
    this.forgottenDirty = 0;
  }

  /** Entities currently held (for tests and the heap benchmark). */
  get entities(): number {
    return this.size;
  }

  /**
   * Drops clean, settled entries, oldest first, down to 90% of the bound.
   * Dirty entries and entries with writes in flight stay.
   */
  private evict(): void {
    const target = Math.floor(this.entitiesMax * 0.9);
    for (const [type, ids] of this.byType) {
      for (const [id, state] of ids) {
        if (this.size <= target) return;
        if (state.inFlight === 0 && !state.dirty) {
          ids.delete(id);
          this.size--;
        }
      }
      if (ids.size === 0) this.byType.delete(type);
    }
  }
}
