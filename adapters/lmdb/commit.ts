/**
 * Group commit for the lmdb adapter.
 *
 * Operations queued in the same tick form one batch, committed in one LMDB
 * transaction. Each operation is checked on its own (a seq conflict rejects
 * only that write), and every caller's promise settles only after the
 * transaction is durable, in commit order.
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
 * No JavaScript runs inside the transaction. A batch is checked, and the
 * memory state moved, on the main thread when the batch is formed (`stage`):
 * this store is its environment's only writer, and the cache holds the
 * applied view of every entity with writes not yet checkpointed or in
 * flight, so the checks need no transaction. The batch's writes then go to
 * lmdb-js as one block of asynchronous puts (`issue`), which its write
 * thread applies and commits on its own. An earlier design ran the batch
 * in a `childTransaction` callback: the write thread then held the write
 * lock waiting for the busy main thread to reach the callback, and the
 * engine on LMDB ran at half the store's own speed.
 *
 * Pipelining: while one batch commits, the next is formed and handed over,
 * and lmdb-js starts its transaction as soon as the first one's commit is
 * done. When the disk is idle, a large batch is split in two so that two
 * groups of callers take turns: one runs while the other's commit is on
 * disk (see `run`).
 *
 * Failure: a batch can be handed over while the one before it is still
 * committing, with links to that one's records, so a batch must not commit
 * if an earlier one failed. Each block therefore runs only if the batch tip
 * in the meta database is the number of the batch before it (an lmdb-js
 * `ifVersion` condition checked by the write thread inside the
 * transaction), and writes its own number last. When a commit fails (an
 * I/O error, a full disk), LMDB writes nothing of it, the batches behind it
 * find the tip unchanged and write nothing either, and the memory state,
 * which moved with all of them, no longer matches the disk: the store then
 * refuses every operation with a non-retryable `STORE_FAILED` until it is
 * closed and opened again, which rebuilds the state from what is durable.
 * This replaces the child transaction's abort, which let the store go on
 * after a failed batch. A commit lmdb-js never decides (its transaction
 * cannot begin, as after LMDB marks the environment failed) counts as
 * failed after `commitTimeoutMs`; such a write may still reach the disk,
 * but it was never acknowledged. `test/adapters/lmdb-failure.test.ts`
 * fails commits for real (a file size limit), checks that the disk holds
 * exactly the acknowledged writes, and stalls one (another process holds
 * the write lock).
 *
 * What "durable" means with lmdb-js 3.5 (read in its README, `write.js`,
 * `src/writer.cpp` and the bundled `mdb.c`): the environment runs without
 * `overlappingSync` (see `options.ts`), so the write thread's
 * `mdb_txn_commit` fdatasyncs the data file and then writes the meta page
 * through a descriptor opened with `O_DSYNC` before it returns, and only
 * then are the transaction's promises resolved. Checked by delaying every
 * fdatasync/fsync/msync by 300 ms with strace fault injection
 * (`strace -f -e trace=fdatasync,fsync,msync -e
 * inject=fdatasync,fsync,msync:delay_enter=300000`): each `write()` then
 * takes 300 ms or more, also with four writers in flight at once, and
 * under `sync: false` (the environment runs with `noSync`) a few ms, with
 * no fsync at all. Such writes survive a process crash but not an OS crash
 * or power loss.
 */
import type { Database, RootDatabase } from 'lmdb';

import { encodeRecord } from '../../src/codec/index.js';
import {
  StoreError,
  isShardchartError,
  type ShardchartError,
} from '../../src/errors.js';
import type { EntityCache, EntityState } from './entity-cache.js';
import { CommitPacer } from './pacing.js';
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

/** Log records per dirty entity before a checkpoint is due (see `maybeCheckpoint`). */
const dirtyRecordsFactor = 4;

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
  /** Batches handed to lmdb-js and not committed yet, at most. */
  readonly commitsInFlightMax: number;
  /**
   * Writes a batch needs, at least, to be split in two when nothing is
   * being committed (see `run`).
   */
  readonly splitOpsMin: number;
  /** Log records between checkpoints at most. */
  readonly checkpointRecords: number;
  /** Dirty entities the engine let go of that trigger a checkpoint. */
  readonly forgottenDirtyMax: number;
  /** A commit not decided after this long fails, and breaks the store. */
  readonly commitTimeoutMs: number;
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

/** What an applied write leaves, for settlement. */
interface Applied {
  readonly state: EntityState;
  readonly head: number;
  readonly lastSeq: number;
}

/** One LMDB write of a batch: a put, or a delete when `value` is absent. */
interface Put {
  readonly db: Database<Uint8Array, Uint8Array>;
  readonly key: Uint8Array;
  readonly value: Uint8Array | undefined;
}

/** A batch whose memory changes are made and whose writes are listed. */
interface Staged {
  readonly ops: CommitOp[];
  readonly outcomes: (ShardchartError | undefined)[];
  readonly applied: (Applied | undefined)[];
  readonly cleaned: [EntityState, number][];
  readonly puts: Put[];
}

const EMPTY = new Uint8Array(0);

/**
 * Key of the batch tip in the meta database: the number of the newest
 * committed batch, as 8 bytes holding a float64 in the machine's byte
 * order, which is how lmdb-js's write thread reads a version to compare.
 */
const TIP_KEY = Buffer.from('tip');
const TIP_BYTES = 8;

export function createCommitter(
  dbs: LmdbDatabases,
  cache: EntityCache,
  options: CommitLimits & {
    readonly prefixBytesMax: number;
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
  /**
   * Number of the last batch handed to lmdb-js. Batches of this session
   * count on from the tip found on open, so the first one's number is new
   * to the disk whatever an earlier session left there.
   */
  let tip = readTip(dbs);
  /** The first batch of the session has no batch before it to wait for. */
  let chained = false;
  /** Set when a commit failed: the store refuses everything until reopened. */
  let broken: unknown;
  /** Resolves when the newest started batch has settled. */
  let settled: Promise<void> = Promise.resolve();
  let idle: (() => void)[] = [];
  /** Batches committed or failed whose callers are not all answered yet. */
  let settling = 0;
  /** Writes in batches whose callers are not all answered yet. */
  let opsUnsettled = 0;
  /** A batch was handed to lmdb-js in this turn of the event loop. */
  let handedThisTurn = false;
  const pacer = new CommitPacer();

  function schedule(): void {
    if (scheduled || handedThisTurn) return;
    if (inFlight >= options.commitsInFlightMax) return;
    scheduled = true;
    // A microtask runs after the continuations already queued in this tick,
    // so the writes they issue join the same batch.
    queueMicrotask(run);
  }

  /**
   * Hands the next batch to lmdb-js, or waits. lmdb-js starts a
   * transaction on its write thread in a `setImmediate` when the thread is
   * idle, and puts every block handed over before the transaction is full
   * into it; so one batch per event-loop turn at most, and the next waits
   * for our own `setImmediate`, queued after lmdb-js's: by then the write
   * thread has the first, and the next becomes a transaction of its own.
   *
   * Whether to hand a batch over while another is being committed, and to
   * split one in two when the disk is idle, is the pacer's call (see
   * `pacing.ts`): two groups of callers that take turns on the disk, or one
   * group that shares each commit. With one group, writes that arrive while
   * a batch is being committed wait for its callers' next writes and go
   * with them.
   */
  function run(): void {
    scheduled = false;
    if (pending.length === 0 || handedThisTurn) return;
    if (inFlight >= options.commitsInFlightMax) return;
    let count = Math.min(pending.length, options.commitOpsMax);
    const twoGroups = pacer.twoGroups(opsUnsettled + pending.length);
    if (!twoGroups && settling > 0) return;
    if (twoGroups && inFlight === 0 && count >= 2 * options.splitOpsMin) {
      count = Math.ceil(count / 2);
    }
    let batch: CommitOp[];
    if (count === pending.length) {
      batch = pending;
      pending = [];
    } else {
      batch = pending.splice(0, count);
    }
    const handedAt = performance.now();
    pacer.handedOver(handedAt);
    inFlight++;
    settling++;
    opsUnsettled += batch.length;
    void commit(batch, () => {
      inFlight--;
      pacer.decided(
        handedAt,
        performance.now(),
        batch.length,
        inFlight === 0 && pending.length === 0,
      );
      schedule();
    }).then(() => {
      settling--;
      opsUnsettled -= batch.length;
      maybeCheckpoint();
      // The callers just answered write again a few microtasks from now;
      // writes that waited for them go over with theirs, or in a turn.
      if (pending.length > 0) setImmediate(schedule);
      else if (inFlight === 0 && settling === 0) {
        const waiters = idle;
        idle = [];
        for (const wake of waiters) wake();
      }
    });
    handedThisTurn = true;
    setImmediate(nextTurn);
  }

  function nextTurn(): void {
    handedThisTurn = false;
    if (pending.length > 0) schedule();
  }

  /**
   * Queues a checkpoint when enough has accumulated since the last one. A
   * checkpoint writes one head per dirty entity, so with many entities
   * written it comes after at least `dirtyRecordsFactor` records per dirty
   * entity: its cost per record stays bounded (with 10,000 busy entities a
   * checkpoint every 10,000 records cost a head write per record), and the
   * replay after a crash stays proportional to the entities being written.
   */
  function maybeCheckpoint(): void {
    if (checkpointQueued || broken !== undefined) return;
    if (
      recordsSinceCheckpoint >=
        Math.max(options.checkpointRecords, dirtyRecordsFactor * cache.dirty.size) ||
      cache.forgottenDirty >= options.forgottenDirtyMax
    ) {
      enqueue({ kind: 'checkpoint', resolve() {}, reject() {} });
    }
  }

  async function commit(batch: CommitOp[], decided: () => void): Promise<void> {
    // Settlements run in the order the batches were started (which is their
    // commit order), whatever order their promises resolve in, so the
    // committed view never steps back.
    const previous = settled;
    let settle!: () => void;
    settled = new Promise<void>((resolve) => (settle = resolve));
    let staged: Staged | undefined;
    let failure: unknown = broken;
    if (failure === undefined) {
      try {
        staged = stage(batch);
        failure = await withTimeout(
          outcome(issue(staged.puts)),
          options.commitTimeoutMs,
        );
      } catch (cause) {
        // `stage` threw (a read failed): the memory state may have moved
        // for part of the batch, so the store cannot go on either.
        failure = cause ?? new Error('LMDB batch failed');
      }
      if (failure !== undefined) broken ??= failure;
    }
    decided();
    await previous;
    try {
      if (failure === undefined && staged !== undefined) succeed(staged);
      else fail(batch, staged, failure);
    } finally {
      settle();
    }
  }

  /**
   * Hands the batch's writes to lmdb-js as one block of asynchronous writes,
   * which its write thread applies without calling back into JavaScript.
   * Every block but the session's first runs only if the tip is the number
   * of the block before it, which that block writes last: a block whose
   * predecessor did not commit (a failed transaction, or the rest of a
   * block cut short) writes nothing, so what is on disk is always the
   * batches of the session up to some point, never one with a gap before it.
   * The promise resolves after the durable commit: `false` if the block's
   * condition failed, rejected if its transaction failed.
   */
  function issue(puts: Put[]): Promise<boolean> {
    const expected = tip;
    const number = ++tip;
    const write = (): void => {
      for (const put of puts) {
        if (put.value === undefined) void put.db.remove(put.key);
        else void put.db.put(put.key, put.value);
      }
      void dbs.meta.put(TIP_KEY, encodeTip(number));
    };
    if (!chained) {
      chained = true;
      return dbs.meta.batch(write);
    }
    return dbs.meta.ifVersion(TIP_KEY, expected, write);
  }

  /**
   * Checks every operation of the batch against the applied view of its
   * entity, moves that view, and lists the batch's writes, all on the main
   * thread and before anything is handed to lmdb-js. The applied view of a
   * dirty or in-flight entity is in the cache (such entities never leave
   * it); any other entity's checkpointed head, read here, is the whole
   * truth, because this store is the environment's only writer.
   */
  function stage(ops: CommitOp[]): Staged {
    const staged: Staged = {
      ops,
      outcomes: new Array<ShardchartError | undefined>(ops.length),
      applied: new Array<Applied | undefined>(ops.length),
      cleaned: [],
      puts: [],
    };
    const { outcomes, applied, puts } = staged;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i] as CommitOp;
      if (op.kind === 'dead-letter') {
        const n = nextDeadLetter++;
        puts.push({
          db: dbs.deadLetters,
          key: deadLetterKey(n),
          value: op.value,
        });
        puts.push({
          db: dbs.deadLetterIndex,
          key: deadLetterIndexKey(op.entity.prefix, n),
          value: EMPTY,
        });
        continue;
      }
      if (op.kind === 'checkpoint') {
        stageCheckpoint(staged);
        continue;
      }
      // Checks first: they only read, so a failure (conflict, corrupt
      // record) rejects this operation alone, before anything moved.
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
        // The record is not touched again once handed to lmdb-js, which
        // reads it from this buffer on its write thread.
        setLogPrev(op.record, state.head as number);
        puts.push({ db: dbs.log, key: logKey(pos), value: op.record });
        state.head = pos;
        state.lastSeq = (state.lastSeq as number) + op.entryCount;
        if (op.wakeAt !== undefined) state.wake = op.wakeAt;
        cache.markDirty(state);
        recordsSinceCheckpoint++;
      }
      if (saveSnapshot && op.snapshot !== undefined) {
        puts.push({ db: dbs.snapshots, key: prefix, value: op.snapshot.value });
        state.snapshotSeq = op.snapshot.seq;
      }
      state.inFlight++;
      applied[i] = {
        state,
        head: state.head as number,
        lastSeq: state.lastSeq as number,
      };
    }
    return staged;
  }

  /**
   * Writes where every dirty entity's chain starts and its wake-up change,
   * and records that the databases reflect the log up to here, in this
   * batch: after a crash, only the log past it needs replaying. The applied
   * view includes batches still in flight; their records commit with or
   * before this one (see `issue`), so the heads written match the log up to
   * the position recorded.
   */
  function stageCheckpoint(staged: Staged): void {
    checkpointQueued = false;
    for (const state of cache.dirty) {
      const prefix = encodeEntity(state.key, options.prefixBytesMax).prefix;
      staged.puts.push({
        db: dbs.heads,
        key: prefix,
        value: encodeHead({
          head: state.head as number,
          lastSeq: state.lastSeq as number,
          damaged: state.damaged,
        }),
      });
      if (state.wake === null) {
        staged.puts.push({ db: dbs.wakeups, key: prefix, value: undefined });
      } else if (state.wake !== undefined) {
        staged.puts.push({
          db: dbs.wakeups,
          key: prefix,
          value: encodeRecord(state.wake),
        });
      }
      staged.cleaned.push([state, state.version]);
    }
    staged.puts.push({
      db: dbs.meta,
      key: META_KEY,
      value: encodeMeta({ format: FORMAT, checkpoint: nextPos - 1 }),
    });
    recordsSinceCheckpoint = 0;
  }

  /**
   * Fills in the applied view of an entity the cache does not know. It is
   * clean (dirty entities never leave the cache), so its checkpointed head
   * is the whole truth.
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

  function succeed({ ops, outcomes, applied, cleaned }: Staged): void {
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
    for (const done of applied)
      if (done !== undefined) cache.settled(done.state);
    for (let i = 0; i < ops.length; i++) {
      const outcome = outcomes[i];
      const op = ops[i] as CommitOp;
      if (outcome === undefined) op.resolve();
      else op.reject(outcome);
    }
  }

  /**
   * Rejects the batch. The memory state moved with it (and with the batches
   * queued after it, which cannot commit either, see `issue`), so it no
   * longer matches the disk: the store refuses everything from here on,
   * and opening it again rebuilds the state from what is durable.
   */
  function fail(
    batch: CommitOp[],
    staged: Staged | undefined,
    cause: unknown,
  ): void {
    if (staged !== undefined) {
      for (const done of staged.applied) {
        if (done !== undefined) done.state.inFlight--;
      }
    }
    const message = cause instanceof Error ? cause.message : String(cause);
    for (let i = 0; i < batch.length; i++) {
      const op = batch[i] as CommitOp;
      const entity = op.kind === 'checkpoint' ? undefined : op.entity;
      op.reject(
        staged?.outcomes[i] ??
          new StoreError(
            'STORE_FAILED',
            `An LMDB commit failed (${message}), so the store no longer knows what is on disk; this ${op.kind}${entity === undefined ? '' : ` of entity ${quote(entity.key)}`} may or may not have been written. Close the store and open it again (the system restarts from what is durable), and check the disk and the map size (mapSizeBytes).`,
            {
              cause,
              retryable: false,
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
      if (pending.length === 0 && inFlight === 0 && settling === 0) {
        return Promise.resolve();
      }
      return new Promise((resolve) => idle.push(resolve));
    },
    checkpoint() {
      return new Promise((resolve, reject) => {
        enqueue({ kind: 'checkpoint', resolve, reject });
      });
    },
  };
}

/**
 * What became of a batch handed to lmdb-js: `undefined` when it committed,
 * else the reason it did not.
 */
async function outcome(committed: Promise<boolean>): Promise<unknown> {
  try {
    return (await committed)
      ? undefined
      : new Error(
          'a batch queued before this one did not commit, or another process wrote the environment',
        );
  } catch (cause) {
    return (await commitError(cause)) ?? new Error('LMDB commit failed');
  }
}

/**
 * `decided`, or a failure once `timeoutMs` have passed: lmdb-js leaves a
 * commit's promise pending for good when its write transaction cannot even
 * begin (an environment LMDB marked as failed), and a caller must not wait
 * forever on that.
 */
function withTimeout(
  decided: Promise<unknown>,
  timeoutMs: number,
): Promise<unknown> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<unknown>((resolve) => {
    timer = setTimeout(
      () =>
        resolve(
          new Error(
            `the commit did not finish within ${timeoutMs} ms (commitTimeoutMs)`,
          ),
        ),
      timeoutMs,
    );
    // A stalled commit alone does not keep the process alive.
    timer.unref();
  });
  return Promise.race([decided, expired]).finally(() => clearTimeout(timer));
}

/**
 * The reason behind a failed lmdb-js commit. lmdb-js rejects the commit's
 * writes with a generic error whose `commitError` promise rejects with the
 * system error (EIO, ENOSPC, ...); that promise must be handled here, or it
 * would end the process as an unhandled rejection.
 */
async function commitError(cause: unknown): Promise<unknown> {
  const detail = (cause as { commitError?: unknown } | undefined)?.commitError;
  if (!(detail instanceof Promise)) return cause;
  try {
    await detail;
    return cause;
  } catch (error) {
    return error ?? cause;
  }
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

/**
 * The batch tip left on disk, or 0 when there is none or it does not hold
 * a batch number (a damaged tip only means the first batch of the session,
 * which does not check it, writes a valid one).
 */
function readTip(dbs: LmdbDatabases): number {
  const bytes = dbs.meta.get(TIP_KEY);
  if (bytes?.length !== TIP_BYTES) return 0;
  const tip = new Float64Array(
    Uint8Array.from(bytes).buffer,
    0,
    1,
  )[0] as number;
  return Number.isSafeInteger(tip) && tip >= 0 ? tip : 0;
}

function encodeTip(tip: number): Uint8Array {
  return new Uint8Array(Float64Array.of(tip).buffer);
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
