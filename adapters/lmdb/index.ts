/**
 * The embedded store: journals, snapshots, the timer index and dead letters
 * in one LMDB environment (lmdb-js), crash-safe and without a server.
 *
 * Layout: named sub-databases with binary keys (see `keys.ts`) and values
 * framed by the codec's `encodeRecord` (version, CRC-32, msgpack), so a torn
 * or rotten record is reported as `STORE_CORRUPT` instead of being loaded
 * (see `records.ts`). Writes go through a group commit (see `commit.ts`):
 * concurrent writes share one LMDB transaction and one fsync.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

import { encodeRecord } from '../../src/codec/index.js';
import { StoreError, isShardchartError } from '../../src/errors.js';
import type {
  EntityKey,
  EntityWrite,
  JournalEntry,
  Store,
  StoredSnapshot,
} from '../../src/persistence/types.js';
import {
  createCommitter,
  readLastSeq,
  type CommitOp,
  type Committer,
  type EncodedSnapshot,
  type LmdbDatabases,
} from './commit.js';
import { EntityCache } from './entity-cache.js';
import {
  assert,
  describe,
  encodeEntity,
  isAssertionError,
  journalKey,
  type EncodedEntity,
} from './keys.js';
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
import { decodeSnapshot } from './records.js';

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
      try {
        nextDeadLetter = lastDeadLetter(opened) + 1;
      } catch (error) {
        void opened.env.close();
        throw error;
      }
      prefixBytesMax = maxKeyBytes(opened) - SEQ_BYTES;
      committer = createCommitter(opened, cache, {
        sync: settings.sync,
        commitOpsMax: settings.commitOpsMax,
        pendingOpsMax: settings.pendingOpsMax,
        commitsInFlightMax: defaults.commitsInFlightMax,
        nextDeadLetter,
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

  const reads: ReadContext = {
    session: () => {
      try {
        return session();
      } catch (error) {
        throw toStoreError(error);
      }
    },
    entity,
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
        const entryKeys: Uint8Array[] = [];
        const entryValues: Uint8Array[] = [];
        for (const entry of write.entries) {
          entryKeys.push(journalKey(target.prefix, entry.seq));
          entryValues.push(encodeRecord(entry));
        }
        return {
          kind: 'write',
          entity: target,
          expectedSeq: write.expectedSeq,
          entryKeys,
          entryValues,
          snapshot:
            write.snapshot === undefined
              ? undefined
              : encodeSnapshot(write.snapshot),
          wakeAt:
            write.wakeAt === undefined || write.wakeAt === null
              ? write.wakeAt
              : encodeRecord(write.wakeAt),
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
        return attempt(() => {
          const opened = session();
          const target = entity(key);
          const state = cache.get(key);
          if (state?.inFlight === 0 && state.lastSeq !== undefined) {
            return state.lastSeq;
          }
          const seq = readLastSeq(opened, target);
          // A read outside the write transaction is exact only while none
          // of our writes of this entity is in flight.
          const fresh = cache.getOrCreate(key);
          if (fresh.inFlight === 0) fresh.lastSeq = seq;
          return seq;
        });
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

    close() {
      if (closing === undefined) {
        const queue = committer;
        const opened = dbs;
        closing = (async () => {
          if (queue !== undefined) await queue.drain();
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
  assert(
    typeof snapshot === 'object' &&
      snapshot !== null &&
      snapshot.v === 1 &&
      Number.isSafeInteger(snapshot.seq) &&
      snapshot.seq >= 0,
    () =>
      `snapshot must be a version-1 StoredSnapshot with a seq, got ${describe(snapshot)}`,
  );
}

/** The caller's side of the write contract; breaking it is a bug. */
function assertWrite(write: EntityWrite): void {
  const { expectedSeq, entries, snapshot, wakeAt } = write;
  assert(
    Number.isSafeInteger(expectedSeq) && expectedSeq >= 0,
    () =>
      `expectedSeq must be a non-negative integer, got ${describe(expectedSeq)}`,
  );
  for (let i = 0; i < entries.length; i++) {
    const seq = (entries[i] as JournalEntry).seq;
    assert(
      seq === expectedSeq + 1 + i,
      () =>
        `entries must be consecutive from expectedSeq + 1 = ${expectedSeq + 1}, but entry ${i} has seq ${describe(seq)}`,
    );
  }
  if (snapshot !== undefined) {
    assertSnapshot(snapshot);
    assert(
      snapshot.seq <= expectedSeq + entries.length,
      () =>
        `snapshot seq ${snapshot.seq} is past the last entry of the write (${expectedSeq + entries.length})`,
    );
  }
  assert(
    wakeAt === undefined || wakeAt === null || Number.isFinite(wakeAt),
    () =>
      `wakeAt must be a finite number, null or undefined, got ${describe(wakeAt)}`,
  );
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
