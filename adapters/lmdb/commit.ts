/**
 * Group commit for the lmdb adapter.
 *
 * Operations queued in the same tick, and while earlier commits are in
 * flight, are applied in ONE LMDB write transaction. Each operation is
 * checked on its own inside the transaction (a seq conflict rejects only that
 * write), and every caller's promise settles only after the transaction is
 * durable.
 *
 * What "durable" means with lmdb-js 3.5 (read in its README, `write.js`,
 * `src/writer.cpp` and the bundled `mdb.c`): the write thread runs
 * `mdb_txn_commit`, and with `overlappingSync` (the default on Linux) that
 * call releases the write lock, then `fdatasync`s the data file and writes
 * the flushed meta page before it returns; only then is the transaction
 * marked committed for JavaScript, and `env.flushed` resolves once that
 * flush is reported. The README says that with `overlappingSync` the commit
 * promise resolves when the data is visible and `flushed` when it is
 * durable, so we wait on both: `env.flushed` is taken right after queuing
 * our transaction, so it belongs to that transaction; the extra wait costs
 * microseconds. Checked by delaying every fdatasync/fsync/msync by 300 ms
 * with strace fault injection: each `write()` then takes 300 ms or more,
 * and under `sync: false` (the environment runs with `noSync`) about 1 ms,
 * with no fsync at all. Such writes survive a process crash but not an OS
 * crash or power loss.
 *
 * The batch runs as a child transaction: if a put fails half-way (disk full,
 * map full), the child is aborted, nothing of the batch is written, and every
 * operation in it rejects with a retryable `STORE_FAILED`. A plain async
 * transaction callback that throws would commit the puts made so far.
 */
import type { Database, RootDatabase } from 'lmdb';

import {
  StoreError,
  isShardchartError,
  type ShardchartError,
} from '../../src/errors.js';
import type { EntityCache, EntityState } from './entity-cache.js';
import {
  deadLetterIndexKey,
  deadLetterKey,
  decodeJournalSeq,
  quote,
  type EncodedEntity,
} from './keys.js';
import { corruptKey, decodeSnapshot } from './records.js';

/** The environment and its sub-databases; keys and values are raw bytes. */
export interface LmdbDatabases {
  readonly env: RootDatabase<Uint8Array, Uint8Array>;
  readonly journal: Database<Uint8Array, Uint8Array>;
  readonly snapshots: Database<Uint8Array, Uint8Array>;
  readonly wakeups: Database<Uint8Array, Uint8Array>;
  readonly deadLetters: Database<Uint8Array, Uint8Array>;
  /** Entity prefix + letter number -> empty: dead letters by entity. */
  readonly deadLetterIndex: Database<Uint8Array, Uint8Array>;
}

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
  readonly entryKeys: readonly Uint8Array[];
  readonly entryValues: readonly Uint8Array[];
  readonly snapshot: EncodedSnapshot | undefined;
  /** Encoded deadline, `null` to remove, `undefined` to leave unchanged. */
  readonly wakeAt: Uint8Array | null | undefined;
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

export type CommitOp = WriteOp | SnapshotOp | DeadLetterOp;

/** Bounds of the group commit; see `LmdbStoreOptions`. */
export interface CommitLimits {
  /** Operations applied in one transaction at most. */
  readonly commitOpsMax: number;
  /** Operations waiting for a transaction at most; more are refused. */
  readonly pendingOpsMax: number;
  /** Transactions queued in lmdb-js at once (pipelining depth). */
  readonly commitsInFlightMax: number;
}

/** The commit queue of one store. */
export interface Committer {
  /** Queues `op`; it settles when its transaction is durable or failed. */
  enqueue(op: CommitOp): void;
  /** Resolves once every queued operation has settled. */
  drain(): Promise<void>;
}

/** One entity's view inside a batch: the batch's own writes come first. */
interface Overlay {
  readonly state: EntityState;
  lastSeq: number | undefined;
  snapshotSeq: number | undefined;
  /** Operations of this batch applied to the entity. */
  applied: number;
}

const EMPTY = new Uint8Array(0);
const SEQ_MAX_SUFFIX = Buffer.alloc(8, 0xff);

export function createCommitter(
  dbs: LmdbDatabases,
  cache: EntityCache,
  options: CommitLimits & { readonly sync: boolean; nextDeadLetter: number },
): Committer {
  let pending: CommitOp[] = [];
  let inFlight = 0;
  let scheduled = false;
  let nextDeadLetter = options.nextDeadLetter;
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
      if (pending.length > 0) schedule();
      else if (inFlight === 0) {
        const waiters = idle;
        idle = [];
        for (const wake of waiters) wake();
      }
    });
    if (pending.length > 0) schedule();
  }

  async function commit(batch: CommitOp[]): Promise<void> {
    const outcomes = new Array<ShardchartError | undefined>(batch.length);
    const overlays = new Map<EntityState, Overlay>();
    // Settlements run in the order the batches were started (which is their
    // commit order), whatever order their promises resolve in, so the cache
    // never steps back.
    const previous = settled;
    let settle!: () => void;
    settled = new Promise<void>((resolve) => (settle = resolve));
    let failure: unknown;
    try {
      const committed = dbs.env.childTransaction(() =>
        apply(batch, outcomes, overlays),
      );
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
    }
    await previous;
    try {
      if (failure === undefined) succeed(batch, outcomes, overlays);
      else fail(batch, outcomes, overlays, failure);
    } finally {
      settle();
    }
  }

  /** Runs inside the write transaction, on the main thread. */
  function apply(
    batch: CommitOp[],
    outcomes: (ShardchartError | undefined)[],
    overlays: Map<EntityState, Overlay>,
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
      // Checks first: they only read, so a failure (conflict, corrupt key)
      // rejects this operation alone. Puts follow and never throw by design;
      // if one does, the whole batch aborts.
      let overlay: Overlay;
      let saveSnapshot: boolean;
      try {
        overlay = overlayOf(op.entity, overlays);
        if (op.kind === 'write') {
          const actualSeq = lastSeqOf(op.entity, overlay);
          if (actualSeq !== op.expectedSeq) {
            outcomes[i] = conflict(op.entity, op.expectedSeq, actualSeq);
            continue;
          }
        }
        saveSnapshot =
          op.snapshot !== undefined &&
          op.snapshot.seq >= snapshotSeqOf(op.entity, overlay);
      } catch (error) {
        if (!isShardchartError(error)) throw error;
        outcomes[i] = error;
        continue;
      }
      const prefix = op.entity.prefix;
      if (op.kind === 'write') {
        for (let e = 0; e < op.entryKeys.length; e++) {
          dbs.journal.putSync(
            op.entryKeys[e] as Uint8Array,
            op.entryValues[e] as Uint8Array,
          );
        }
        overlay.lastSeq = op.expectedSeq + op.entryKeys.length;
        if (op.wakeAt === null) dbs.wakeups.removeSync(prefix);
        else if (op.wakeAt !== undefined)
          dbs.wakeups.putSync(prefix, op.wakeAt);
      }
      if (saveSnapshot && op.snapshot !== undefined) {
        dbs.snapshots.putSync(prefix, op.snapshot.value);
        overlay.snapshotSeq = op.snapshot.seq;
      }
      if (overlay.applied++ === 0) overlay.state.inFlight++;
    }
  }

  function overlayOf(
    entity: EncodedEntity,
    overlays: Map<EntityState, Overlay>,
  ): Overlay {
    const state = cache.getOrCreate(entity.key);
    let overlay = overlays.get(state);
    if (overlay === undefined) {
      // Cached values are exact only while no other transaction of ours
      // holds unsettled writes of this entity.
      const trusted = state.inFlight === 0;
      overlay = {
        state,
        lastSeq: trusted ? state.lastSeq : undefined,
        snapshotSeq: trusted ? state.snapshotSeq : undefined,
        applied: 0,
      };
      overlays.set(state, overlay);
    }
    return overlay;
  }

  function lastSeqOf(entity: EncodedEntity, overlay: Overlay): number {
    if (overlay.lastSeq === undefined) {
      overlay.lastSeq = readLastSeq(dbs, entity);
      // Read inside the write transaction: the truth until one of our
      // writes of this entity commits, which settlement will record.
      if (overlay.state.inFlight === 0) overlay.state.lastSeq = overlay.lastSeq;
    }
    return overlay.lastSeq;
  }

  function snapshotSeqOf(entity: EncodedEntity, overlay: Overlay): number {
    if (overlay.snapshotSeq === undefined) {
      overlay.snapshotSeq = readSnapshotSeq(dbs, entity);
      if (overlay.state.inFlight === 0) {
        overlay.state.snapshotSeq = overlay.snapshotSeq;
      }
    }
    return overlay.snapshotSeq;
  }

  function succeed(
    batch: CommitOp[],
    outcomes: (ShardchartError | undefined)[],
    overlays: Map<EntityState, Overlay>,
  ): void {
    for (const overlay of overlays.values()) {
      if (overlay.applied === 0) continue;
      overlay.state.inFlight--;
      overlay.state.lastSeq = overlay.lastSeq;
      overlay.state.snapshotSeq = overlay.snapshotSeq;
    }
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
    overlays: Map<EntityState, Overlay>,
    cause: unknown,
  ): void {
    for (const overlay of overlays.values()) {
      if (overlay.applied === 0) continue;
      overlay.state.inFlight--;
      overlay.state.lastSeq = undefined;
      overlay.state.snapshotSeq = undefined;
    }
    const message = cause instanceof Error ? cause.message : String(cause);
    for (let i = 0; i < batch.length; i++) {
      const op = batch[i] as CommitOp;
      op.reject(
        outcomes[i] ??
          new StoreError(
            'STORE_FAILED',
            `The LMDB transaction holding this ${op.kind} of entity ${quote(op.entity.key)} failed (${message}); nothing of it was written. Retry the operation; if it keeps failing, check the disk and the map size (mapSizeBytes).`,
            { cause, retryable: true, details: { key: op.entity.key } },
          ),
      );
    }
  }

  return {
    enqueue(op) {
      if (pending.length >= options.pendingOpsMax) {
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
    },
    drain() {
      if (pending.length === 0 && inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => idle.push(resolve));
    },
  };
}

/** Seq of the entity's last journal entry, read from the current transaction. */
export function readLastSeq(dbs: LmdbDatabases, entity: EncodedEntity): number {
  const prefix = entity.prefix;
  for (const key of dbs.journal.getKeys({
    start: Buffer.concat([prefix, SEQ_MAX_SUFFIX]),
    end: prefix,
    reverse: true,
    limit: 1,
  })) {
    const seq = decodeJournalSeq(key, prefix.length);
    if (seq === undefined) throw corruptKey('journal', key);
    return seq;
  }
  return 0;
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
