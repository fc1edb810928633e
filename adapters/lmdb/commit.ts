/**
 * Group commit for the lmdb adapter.
 *
 * Operations queued in the same tick, and while earlier commits are in
 * flight, are applied in ONE LMDB write transaction. Each operation is
 * checked on its own inside the transaction (a seq conflict rejects only that
 * write), and every caller's promise settles only after the transaction is
 * durable.
 *
 * Layout (see `index.ts`): a write appends one record to the log, whose keys
 * grow by one per record, so a commit of many entities' writes dirties a few
 * pages at the end of one B-tree instead of one page per entity. That is
 * what makes durable writes fast: an fsync costs about the pages it writes
 * (measured on the bench machine: 64 writes to 64 entities' own key ranges
 * took 8 ms per commit, 64 appended records 1.5 to 3.5 ms). Each record
 * points to the entity's previous one; where each entity's chain starts
 * (its head) and its wake-up deadline are kept in memory and written to the
 * heads and wake-ups databases by a checkpoint every `checkpointRecords`
 * records, in the same transaction as the log position it covers. After a
 * crash, the log after that position is replayed into memory on open.
 *
 * What "durable" means with lmdb-js 3.5 (read in its README, `write.js`,
 * `src/writer.cpp` and the bundled `mdb.c`): the environment runs without
 * `overlappingSync` (see `options.ts`), so the write thread's
 * `mdb_txn_commit` fdatasyncs the data file and then writes and syncs the
 * meta page before it returns, and only then is the transaction marked
 * committed for JavaScript. We also wait on `env.flushed`, taken right
 * after queuing our transaction, which costs microseconds and keeps the
 * guarantee if `overlappingSync` is ever turned back on (it resolves when
 * the deferred flush is reported). Checked by delaying every
 * fdatasync/fsync/msync by 300 ms with strace fault injection: each
 * `write()` then takes 300 ms or more, and under `sync: false` (the
 * environment runs with `noSync`) about 1 ms, with no fsync at all. Such
 * writes survive a process crash but not an OS crash or power loss.
 *
 * The batch runs as a child transaction: if a put fails half-way (disk full,
 * map full), the child is aborted, nothing of the batch is written, every
 * operation in it rejects with a retryable `STORE_FAILED`, and the memory
 * state is rebuilt from the database before the next batch. A failed commit
 * (the fsync itself failing) leaves the disk in a state we cannot know: the
 * store then refuses every operation until it is closed and opened again,
 * as databases do after an fsync error.
 */
import type { Database, RootDatabase } from 'lmdb';

import { encodeRecord } from '../../src/codec/index.js';
import {
  StoreError,
  isShardchartError,
  type ShardchartError,
} from '../../src/errors.js';
import type { EntityCache, EntityState } from './entity-cache.js';
import {
  deadLetterIndexKey,
  deadLetterKey,
  encodeEntity,
  logKey,
  quote,
  type EncodedEntity,
} from './keys.js';
import {
  damagedEntity,
  decodeHead,
  decodeSnapshot,
  encodeHead,
  encodeMeta,
  setLogPrev,
  type HeadRecord,
} from './records.js';

/** The environment and its sub-databases; keys and values are raw bytes. */
export interface LmdbDatabases {
  readonly env: RootDatabase<Uint8Array, Uint8Array>;
  /** Log position -> one entity write (see records.ts `LogRecord`). */
  readonly log: Database<Uint8Array, Uint8Array>;
  /** Entity prefix -> where its chain of log records starts, as checkpointed. */
  readonly heads: Database<Uint8Array, Uint8Array>;
  /** The store's state record (layout version, checkpoint position). */
  readonly meta: Database<Uint8Array, Uint8Array>;
  readonly snapshots: Database<Uint8Array, Uint8Array>;
  readonly wakeups: Database<Uint8Array, Uint8Array>;
  readonly deadLetters: Database<Uint8Array, Uint8Array>;
  /** Entity prefix + letter number -> empty: dead letters by entity. */
  readonly deadLetterIndex: Database<Uint8Array, Uint8Array>;
}

/** Key of the store's state record in the meta database. */
export const META_KEY = Buffer.from('state');
/** The layout this code reads and writes. */
export const FORMAT = 2;

interface Settle {
  resolve(): void;
  reject(error: unknown): void;
}

/** A snapshot encoded ahead of the transaction. */
export interface EncodedSnapshot {
  readonly seq: number;
  readonly value: Uint8Array;
}

/** `Store.write`, encoded ahead of the transaction. */
export interface WriteOp extends Settle {
  readonly kind: 'write';
  readonly entity: EncodedEntity;
  readonly expectedSeq: number;
  readonly entryCount: number;
  /**
   * The log record (entries and wake-up change), its previous-record
   * pointer filled in by the transaction; `undefined` when the write has
   * neither (a snapshot alone).
   */
  readonly record: Buffer | undefined;
  readonly wakeAt: number | null | undefined;
  readonly snapshot: EncodedSnapshot | undefined;
}

/** `SnapshotStore.save`: no seq check, only "never backwards". */
export interface SnapshotOp extends Settle {
  readonly kind: 'snapshot';
  readonly entity: EncodedEntity;
  readonly snapshot: EncodedSnapshot;
}

/** `Store.appendDeadLetter`. */
export interface DeadLetterOp extends Settle {
  readonly kind: 'dead-letter';
  readonly entity: EncodedEntity;
  readonly value: Uint8Array;
}

/** Writes the dirty heads and wake-ups and moves the checkpoint. */
export interface CheckpointOp extends Settle {
  readonly kind: 'checkpoint';
}

export type CommitOp = WriteOp | SnapshotOp | DeadLetterOp | CheckpointOp;

/** Bounds of the group commit; see `LmdbStoreOptions`. */
export interface CommitLimits {
  /** Operations applied in one transaction at most. */
  readonly commitOpsMax: number;
  /** Operations waiting for a transaction at most; more are refused. */
  readonly pendingOpsMax: number;
  /** Transactions queued in lmdb-js at once (pipelining depth). */
  readonly commitsInFlightMax: number;
  /** Log records between checkpoints at most. */
  readonly checkpointRecords: number;
  /** Dirty entities the engine let go of that trigger a checkpoint. */
  readonly forgottenDirtyMax: number;
}

/** The commit queue of one store. */
export interface Committer {
  /** Queues `op`; it settles when its transaction is durable or failed. */
  enqueue(op: CommitOp): void;
  /** Resolves once every queued operation has settled. */
  drain(): Promise<void>;
  /** Writes a checkpoint now (after what is queued); resolves when durable. */
  checkpoint(): Promise<void>;
}

/** How the memory state is rebuilt from the database (`log.ts`). */
export interface Recovery {
  /** Replays the log after the checkpoint into the cache; returns positions. */
  rebuild(): { nextPos: number; recordsSinceCheckpoint: number };
  /** Prefix bytes an entity key may take. */
  readonly prefixBytesMax: number;
}

/** What an applied write leaves, for settlement. */
interface Applied {
  readonly state: EntityState;
  readonly head: number;
  readonly lastSeq: number;
}

const EMPTY = new Uint8Array(0);

export function createCommitter(
  dbs: LmdbDatabases,
  cache: EntityCache,
  recovery: Recovery,
  options: CommitLimits & {
    readonly sync: boolean;
    nextDeadLetter: number;
    nextPos: number;
    recordsSinceCheckpoint: number;
  },
): Committer {
  let pending: CommitOp[] = [];
  let inFlight = 0;
  let scheduled = false;
  let nextDeadLetter = options.nextDeadLetter;
  let nextPos = options.nextPos;
  let recordsSinceCheckpoint = options.recordsSinceCheckpoint;
  let checkpointQueued = false;
  /** Set when a batch aborted: rebuild the memory state before the next. */
  let resync = false;
  /** Set when a commit failed: the store refuses everything until reopened. */
  let broken: unknown;
  /** Resolves when the newest started batch has settled. */
  let settled: Promise<void> = Promise.resolve();
  let idle: (() => void)[] = [];

  function schedule(): void {
    if (scheduled || inFlight >= options.commitsInFlightMax) return;
    scheduled = true;
    // A microtask runs after the continuations already queued in this tick,
    // so the writes they issue join the same transaction.
    queueMicrotask(run);
  }

  function run(): void {
    scheduled = false;
    if (pending.length === 0 || inFlight >= options.commitsInFlightMax) return;
    let batch: CommitOp[];
    if (pending.length <= options.commitOpsMax) {
      batch = pending;
      pending = [];
    } else {
      batch = pending.splice(0, options.commitOpsMax);
    }
    inFlight++;
    void commit(batch).then(() => {
      inFlight--;
      maybeCheckpoint();
      if (pending.length > 0) schedule();
      else if (inFlight === 0) {
        const waiters = idle;
        idle = [];
        for (const wake of waiters) wake();
      }
    });
    if (pending.length > 0) schedule();
  }

  /** Queues a checkpoint when enough has accumulated since the last one. */
  function maybeCheckpoint(): void {
    if (checkpointQueued || broken !== undefined) return;
    if (
      recordsSinceCheckpoint >= options.checkpointRecords ||
      cache.forgottenDirty >= options.forgottenDirtyMax
    ) {
      enqueue({ kind: 'checkpoint', resolve() {}, reject() {} });
    }
  }

  async function commit(batch: CommitOp[]): Promise<void> {
    const outcomes = new Array<ShardchartError | undefined>(batch.length);
    const applied: (Applied | undefined)[] = new Array(batch.length);
    const cleaned: [EntityState, number][] = [];
    // Settlements run in the order the batches were started (which is their
    // commit order), whatever order their promises resolve in, so the
    // committed view never steps back.
    const previous = settled;
    let settle!: () => void;
    settled = new Promise<void>((resolve) => (settle = resolve));
    let failure: unknown;
    let aborted = false;
    if (broken !== undefined) {
      failure = broken;
    } else {
      try {
        const committed = dbs.env.childTransaction(() => {
          try {
            if (resync) {
              resync = false;
              const rebuilt = recovery.rebuild();
              nextPos = rebuilt.nextPos;
              recordsSinceCheckpoint = rebuilt.recordsSinceCheckpoint;
            }
            apply(batch, outcomes, applied, cleaned);
          } catch (error) {
            // Nothing of the batch will be written, but the memory state
            // moved with it. A later batch may run before this promise
            // settles, so the flag is set here: that batch rebuilds the state
            // from the database first.
            aborted = true;
            cache.clear();
            resync = true;
            throw error;
          }
        });
        // Taken synchronously, before anything else is queued: `flushed`
        // follows the newest queued write, which is this transaction.
        const flushed = options.sync
          ? new Promise((resolve, reject) => {
              dbs.env.flushed.then(resolve, reject);
            })
          : undefined;
        await committed;
        if (flushed !== undefined) await flushed;
      } catch (cause) {
        failure = cause ?? new Error('LMDB commit failed');
        if (!aborted) broken ??= failure;
      }
    }
    await previous;
    try {
      if (failure === undefined) succeed(batch, outcomes, applied, cleaned);
      else fail(batch, outcomes, applied, failure);
    } finally {
      settle();
    }
  }

  /** Runs inside the write transaction, on the main thread. */
  function apply(
    batch: CommitOp[],
    outcomes: (ShardchartError | undefined)[],
    applied: (Applied | undefined)[],
    cleaned: [EntityState, number][],
  ): void {
    for (let i = 0; i < batch.length; i++) {
      const op = batch[i] as CommitOp;
      if (op.kind === 'dead-letter') {
        const n = nextDeadLetter++;
        dbs.deadLetters.putSync(deadLetterKey(n), op.value);
        dbs.deadLetterIndex.putSync(
          deadLetterIndexKey(op.entity.prefix, n),
          EMPTY,
        );
        continue;
      }
      if (op.kind === 'checkpoint') {
        applyCheckpoint(cleaned);
        continue;
      }
      // Checks first: they only read, so a failure (conflict, corrupt
      // record) rejects this operation alone. Puts follow and never throw by
      // design; if one does, the whole batch aborts.
      let state: EntityState;
      let saveSnapshot: boolean;
      try {
        state = known(cache.getOrCreate(op.entity.key), op.entity);
        if (state.damaged !== undefined) {
          throw damagedEntity(state.key, state.damaged);
        }
        if (op.kind === 'write' && state.lastSeq !== op.expectedSeq) {
          outcomes[i] = conflict(
            op.entity,
            op.expectedSeq,
            state.lastSeq as number,
          );
          continue;
        }
        saveSnapshot =
          op.snapshot !== undefined &&
          op.snapshot.seq >= snapshotSeqOf(state, op.entity);
      } catch (error) {
        if (!isShardchartError(error)) throw error;
        outcomes[i] = error;
        continue;
      }
      const prefix = op.entity.prefix;
      if (op.kind === 'write' && op.record !== undefined) {
        const pos = nextPos++;
        setLogPrev(op.record, state.head as number);
        dbs.log.putSync(logKey(pos), op.record);
        state.head = pos;
        state.lastSeq = (state.lastSeq as number) + op.entryCount;
        if (op.wakeAt !== undefined) state.wake = op.wakeAt;
        cache.markDirty(state);
        recordsSinceCheckpoint++;
      }
      if (saveSnapshot && op.snapshot !== undefined) {
        dbs.snapshots.putSync(prefix, op.snapshot.value);
        state.snapshotSeq = op.snapshot.seq;
      }
      state.inFlight++;
      applied[i] = {
        state,
        head: state.head as number,
        lastSeq: state.lastSeq as number,
      };
    }
  }

  /**
   * Writes where every dirty entity's chain starts and its wake-up change,
   * and records that the databases reflect the log up to here, all in this
   * transaction: after a crash, only the log past it needs replaying.
   */
  function applyCheckpoint(cleaned: [EntityState, number][]): void {
    checkpointQueued = false;
    for (const state of cache.dirty) {
      const prefix = encodeEntity(state.key, recovery.prefixBytesMax).prefix;
      dbs.heads.putSync(
        prefix,
        encodeHead({
          head: state.head as number,
          lastSeq: state.lastSeq as number,
          damaged: state.damaged,
        }),
      );
      if (state.wake === null) dbs.wakeups.removeSync(prefix);
      else if (state.wake !== undefined) {
        dbs.wakeups.putSync(prefix, encodeRecord(state.wake));
      }
      cleaned.push([state, state.version]);
    }
    dbs.meta.putSync(
      META_KEY,
      encodeMeta({ format: FORMAT, checkpoint: nextPos - 1 }),
    );
    recordsSinceCheckpoint = 0;
  }

  /**
   * Fills in the applied view of an entity the cache does not know. It is
   * clean (dirty entities never leave the cache), so its checkpointed head,
   * read inside the write transaction, is the whole truth.
   */
  function known(state: EntityState, entity: EncodedEntity): EntityState {
    if (state.lastSeq === undefined || state.head === undefined) {
      const head = readHead(dbs, entity);
      state.head = head.head;
      state.lastSeq = head.lastSeq;
      state.damaged = head.damaged;
      if (state.inFlight === 0) {
        state.committedHead = head.head;
        state.committedLastSeq = head.lastSeq;
      }
    }
    return state;
  }

  function snapshotSeqOf(state: EntityState, entity: EncodedEntity): number {
    if (state.snapshotSeq === undefined) {
      state.snapshotSeq = readSnapshotSeq(dbs, entity);
    }
    return state.snapshotSeq;
  }

  function succeed(
    batch: CommitOp[],
    outcomes: (ShardchartError | undefined)[],
    applied: (Applied | undefined)[],
    cleaned: [EntityState, number][],
  ): void {
    for (const done of applied) {
      if (done === undefined) continue;
      done.state.committedHead = done.head;
      done.state.committedLastSeq = done.lastSeq;
      done.state.inFlight--;
    }
    for (const [state, version] of cleaned) {
      // A write applied after the checkpoint keeps the entity dirty.
      if (state.version === version) cache.markClean(state);
    }
    for (const done of applied) if (done !== undefined) cache.settled(done.state);
    for (let i = 0; i < batch.length; i++) {
      const outcome = outcomes[i];
      const op = batch[i] as CommitOp;
      if (outcome === undefined) op.resolve();
      else op.reject(outcome);
    }
  }

  function fail(
    batch: CommitOp[],
    outcomes: (ShardchartError | undefined)[],
    applied: (Applied | undefined)[],
    cause: unknown,
  ): void {
    for (const done of applied) if (done !== undefined) done.state.inFlight--;
    const message = cause instanceof Error ? cause.message : String(cause);
    const fatal = broken !== undefined;
    for (let i = 0; i < batch.length; i++) {
      const op = batch[i] as CommitOp;
      const entity = op.kind === 'checkpoint' ? undefined : op.entity;
      op.reject(
        outcomes[i] ??
          new StoreError(
            'STORE_FAILED',
            fatal
              ? `An LMDB commit failed (${message}), so what is on disk is uncertain; this ${op.kind} was not written. Close the store and open it again (the system restarts from what is durable), and check the disk.`
              : `The LMDB transaction holding this ${op.kind}${entity === undefined ? '' : ` of entity ${quote(entity.key)}`} failed (${message}); nothing of it was written. Retry the operation; if it keeps failing, check the disk and the map size (mapSizeBytes).`,
            {
              cause,
              retryable: !fatal,
              details: entity === undefined ? {} : { key: entity.key },
            },
          ),
      );
    }
  }

  function enqueue(op: CommitOp): void {
    if (op.kind === 'checkpoint') checkpointQueued = true;
    else if (pending.length >= options.pendingOpsMax) {
      op.reject(
        new StoreError(
          'STORE_FAILED',
          `The LMDB store has ${pending.length} operations waiting for a commit, its pendingOpsMax: the disk is not keeping up. Retry later or raise pendingOpsMax.`,
          {
            retryable: true,
            details: {
              key: op.entity.key,
              pendingOpsMax: options.pendingOpsMax,
            },
          },
        ),
      );
      return;
    }
    pending.push(op);
    schedule();
  }

  return {
    enqueue,
    drain() {
      if (pending.length === 0 && inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => idle.push(resolve));
    },
    checkpoint() {
      return new Promise((resolve, reject) => {
        enqueue({ kind: 'checkpoint', resolve, reject });
      });
    },
  };
}

/** The checkpointed head of an entity; `{ 0, 0 }` when it has none. */
export function readHead(
  dbs: LmdbDatabases,
  entity: EncodedEntity,
): HeadRecord {
  const bytes = dbs.heads.get(entity.prefix);
  return bytes === undefined
    ? { head: 0, lastSeq: 0 }
    : decodeHead(bytes, entity.key);
}

/** Seq of the stored snapshot, -1 for none. A corrupt one may be replaced. */
function readSnapshotSeq(dbs: LmdbDatabases, entity: EncodedEntity): number {
  const bytes = dbs.snapshots.get(entity.prefix);
  if (bytes === undefined) return -1;
  try {
    return decodeSnapshot(bytes, entity.key).seq;
  } catch {
    return -1;
  }
}

function conflict(
  entity: EncodedEntity,
  expectedSeq: number,
  actualSeq: number,
): StoreError {
  return new StoreError(
    'STORE_CONFLICT',
    `The journal of entity ${quote(entity.key)} ends at seq ${actualSeq}, but the write expected ${expectedSeq}: another writer got there first. Reload the entity and retry.`,
    {
      retryable: false,
      details: { key: entity.key, expectedSeq, actualSeq },
    },
  );
}
