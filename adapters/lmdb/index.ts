/**
 * The embedded store: journals, snapshots, the timer index and dead letters
 * in one LMDB environment (lmdb-js), crash-safe and without a server.
 *
 * Layout (version 2): named sub-databases with binary keys (see `keys.ts`)
 * and values framed by the codec's `encodeRecord` (version, CRC-32,
 * msgpack), so a torn or rotten record is reported as `STORE_CORRUPT`
 * instead of being loaded (see `records.ts`).
 *
 * - `log`: one record per entity write, under a position that grows by one
 *   per record; each record links to the entity's previous one (`log.ts`).
 * - `heads`: where each entity's chain starts, and `wakeups`: its timer
 *   deadline, both written by checkpoints (`meta` holds the position they
 *   reflect); newer values live in memory (`entity-cache.ts`) and are
 *   rebuilt from the log after a crash.
 * - `meta`: the layout version and checkpoint position, and the number of
 *   the last batch committed (the tip that chains batches, `commit.ts`).
 * - `snapshots`, `dead-letters`, `dead-letter-index`: by entity.
 *
 * Writes go through a group commit (see `commit.ts`): concurrent writes
 * share one LMDB transaction and one fsync, and append to the end of the
 * log instead of touching a page per entity.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

import { encodeRecord } from '../../src/codec/index.js';
import { StoreError, isShardchartError } from '../../src/errors.js';
import type {
  EntityKey,
  EntityWrite,
  Store,
  StoredSnapshot,
} from '../../src/persistence/types.js';
import {
  createCommitter,
  readHead,
  type CommitOp,
  type Committer,
  type EncodedSnapshot,
  type LmdbDatabases,
} from './commit.js';
import { EntityCache } from './entity-cache.js';
import {
  assert,
  encodeEntity,
  isAssertionError,
  type EncodedEntity,
} from './keys.js';
import { rebuild } from './log.js';
import {
  defaults,
  maxKeyBytes,
  openDatabases,
  validate,
  type LmdbStoreOptions,
} from './options.js';
import {
  lastDeadLetter,
  readDeadLetters,
  readJournal,
  scanEntities,
  scanWakeups,
  type ReadContext,
} from './reads.js';
import { damagedEntity, decodeSnapshot, encodeLogRecord } from './records.js';
import { checkSnapshot, checkWrite } from '../../src/persistence/contract.js';

export type { LmdbStoreOptions } from './options.js';

/** Bytes a journal key appends to the entity prefix. */
const SEQ_BYTES = 8;

type Settle = { resolve(): void; reject(error: unknown): void };

/**
 * Creates a store on an LMDB environment at `options.path` (`kind: 'lmdb'`,
 * `durable` unless `sync: false`). The environment opens on `open()` or the
 * first operation; `close()` waits for pending commits, and `open()` after
 * it opens the environment again. One store, in one process, writes an
 * environment at a time: the engine's shard ownership ensures it, and the
 * seq cache relies on it.
 *
 * @example
 * ```ts
 * import { lmdbStore } from 'shardchart/adapters/lmdb';
 *
 * const store = lmdbStore({ path: './data/orders' });
 * await store.open();
 * await store.write({
 *   key: { type: 'order', id: 'o-1' },
 *   expectedSeq: 0,
 *   entries: [{ seq: 1, at: Date.now(), event: { type: 'PLACE' } }],
 * });
 * await store.close();
 * ```
 */
export function lmdbStore(options: LmdbStoreOptions): Store {
  const settings = validate(options);
  let cache = new EntityCache(settings.cachedEntitiesMax);
  let dbs: LmdbDatabases | undefined;
  let committer: Committer | undefined;
  let prefixBytesMax = 0;
  let closing: Promise<void> | undefined;

  /** Opens the environment on first use; throws once the store is closed. */
  function session(): LmdbDatabases {
    if (closing !== undefined) {
      throw new StoreError(
        'STORE_CLOSED',
        `The LMDB store at '${settings.path}' is closed. Call store.open() to use it again.`,
        { details: { path: settings.path } },
      );
    }
    if (dbs === undefined) {
      const opened = openDatabases(settings);
      let nextDeadLetter: number;
      let replayed: ReturnType<typeof rebuild>;
      const keyBytesMax = maxKeyBytes(opened) - SEQ_BYTES;
      try {
        nextDeadLetter = lastDeadLetter(opened) + 1;
        // Records written after the last checkpoint (a crash, or a close
        // that could not checkpoint) are known only to the log.
        replayed = rebuild(opened, cache, keyBytesMax);
      } catch (error) {
        cache.clear();
        void opened.env.close();
        throw error;
      }
      prefixBytesMax = keyBytesMax;
      committer = createCommitter(opened, cache, {
        prefixBytesMax: keyBytesMax,
        commitOpsMax: settings.commitOpsMax,
        pendingOpsMax: settings.pendingOpsMax,
        commitsInFlightMax: defaults.commitsInFlightMax,
        splitOpsMin: defaults.splitOpsMin,
        checkpointRecords: settings.checkpointRecords,
        commitTimeoutMs: settings.commitTimeoutMs,
        forgottenDirtyMax: defaults.forgottenDirtyMax,
        nextDeadLetter,
        nextPos: replayed.nextPos,
        recordsSinceCheckpoint: replayed.recordsSinceCheckpoint,
      });
      dbs = opened;
    }
    return dbs;
  }

  /** Encodes a key; the size limit is known once the environment is open. */
  function entity(key: EntityKey): EncodedEntity {
    if (dbs === undefined) session();
    return encodeEntity(key, prefixBytesMax);
  }

  /**
   * The entity's head and last seq as committed: from the cache when it
   * knows them, else from the heads database, which is exact for an entity
   * the cache does not hold (dirty entities never leave it).
   */
  function committedHead(key: EntityKey): { head: number; lastSeq: number } {
    const opened = session();
    const state = cache.get(key);
    if (state?.damaged !== undefined) throw damagedEntity(key, state.damaged);
    if (
      state?.committedHead !== undefined &&
      state.committedLastSeq !== undefined
    ) {
      return { head: state.committedHead, lastSeq: state.committedLastSeq };
    }
    const head = readHead(opened, entity(key));
    if (head.damaged !== undefined) throw damagedEntity(key, head.damaged);
    return head;
  }

  const reads: ReadContext = {
    session: () => {
      try {
        return session();
      } catch (error) {
        throw toStoreError(error);
      }
    },
    entity,
    committedHead,
    checkpoint: () =>
      attempt(() => {
        session();
        return (committer as Committer).checkpoint();
      }),
  };

  /** Runs `fn` now; a thrown error becomes a rejected promise. */
  function attempt<T>(fn: () => T | Promise<T>): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (error) {
      return Promise.reject(toStoreError(error));
    }
  }

  /** Encodes an operation now (encode errors reject) and queues it. */
  function enqueue(build: (settle: Settle) => CommitOp): Promise<void> {
    return attempt(() => {
      session();
      const queue = committer as Committer;
      return new Promise<void>((resolve, reject) => {
        queue.enqueue(build({ resolve, reject }));
      });
    });
  }

  const store: Store = {
    kind: 'lmdb',
    durable: settings.sync,

    // A closed store opens again once its close has finished, with a cold
    // cache, like a new store on the same path (the memory store reopens
    // the same way, so a system can restart on the same store object).
    open() {
      const closed = closing;
      if (closed === undefined) return attempt(() => void session());
      return closed.then(() => {
        if (closing === closed) {
          closing = undefined;
          dbs = undefined;
          committer = undefined;
          cache = new EntityCache(settings.cachedEntitiesMax);
        }
        return attempt(() => void session());
      });
    },

    write(write: EntityWrite) {
      assertWrite(write);
      return enqueue((settle) => {
        const target = entity(write.key);
        // Encoded here; forming the batch only links the record into the
        // entity's chain.
        const hasRecord =
          write.entries.length > 0 || write.wakeAt !== undefined;
        return {
          kind: 'write',
          entity: target,
          expectedSeq: write.expectedSeq,
          entryCount: write.entries.length,
          record: hasRecord
            ? encodeLogRecord(
                target.prefix,
                write.key,
                write.expectedSeq + 1,
                write.entries,
                write.wakeAt,
              )
            : undefined,
          wakeAt: write.wakeAt,
          snapshot:
            write.snapshot === undefined
              ? undefined
              : encodeSnapshot(write.snapshot),
          ...settle,
        };
      });
    },

    journal: {
      append(key, entries, expectedSeq) {
        return store.write({ key, entries, expectedSeq });
      },

      read(key, fromSeq, toSeq) {
        return readJournal(reads, key, fromSeq, toSeq);
      },

      lastSeq(key) {
        return attempt(() => committedHead(key).lastSeq);
      },
    },

    snapshots: {
      load(key) {
        return attempt(() => {
          const bytes = session().snapshots.get(entity(key).prefix);
          return bytes === undefined ? undefined : decodeSnapshot(bytes, key);
        });
      },

      save(key, snapshot) {
        assertSnapshot(snapshot);
        return enqueue((settle) => ({
          kind: 'snapshot',
          entity: entity(key),
          snapshot: encodeSnapshot(snapshot),
          ...settle,
        }));
      },
    },

    scanWakeups() {
      return scanWakeups(reads);
    },

    scanEntities(type) {
      return scanEntities(reads, type);
    },

    appendDeadLetter(letter) {
      return enqueue((settle) => ({
        kind: 'dead-letter',
        entity: entity(letter.key),
        value: encodeRecord(letter),
        ...settle,
      }));
    },

    readDeadLetters(filter) {
      return attempt(() => readDeadLetters(reads, filter));
    },

    forget(key) {
      cache.forget(key);
    },

    close() {
      if (closing === undefined) {
        const queue = committer;
        const opened = dbs;
        closing = (async () => {
          if (queue !== undefined) {
            // A checkpoint on the way out spares the next open the replay.
            // If it fails, the log still holds everything: only the replay
            // on the next open gets longer, so closing goes on.
            if (cache.dirty.size > 0)
              await queue.checkpoint().catch(() => undefined);
            await queue.drain();
          }
          if (opened !== undefined) await opened.env.close();
        })();
      }
      return closing;
    },

    sizeBytes() {
      return attempt(async () => {
        session();
        try {
          return (await stat(join(settings.path, 'data.mdb'))).size;
        } catch (cause) {
          throw new StoreError(
            'STORE_FAILED',
            `Cannot read the size of the LMDB data file in '${settings.path}': ${String(cause)}.`,
            { cause, details: { path: settings.path } },
          );
        }
      });
    },
  };
  return store;
}

function encodeSnapshot(snapshot: StoredSnapshot): EncodedSnapshot {
  return { seq: snapshot.seq, value: encodeRecord(snapshot) };
}

function assertSnapshot(snapshot: StoredSnapshot): void {
  checkSnapshot(snapshot, assert);
}

function assertWrite(write: EntityWrite): void {
  checkWrite(write, assert);
}

/**
 * Our own coded errors and failed assertions pass through; anything else
 * (an lmdb-js or system error) becomes a retryable `STORE_FAILED`.
 */
function toStoreError(error: unknown): Error {
  if (isShardchartError(error)) return error;
  if (error instanceof Error && isAssertionError(error)) return error;
  return new StoreError(
    'STORE_FAILED',
    `The LMDB store failed: ${error instanceof Error ? error.message : String(error)}. Retry; if it keeps failing, check the disk and the store's files.`,
    { cause: error, retryable: true },
  );
}
