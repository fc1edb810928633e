/**
 * The in-memory store: plain maps, nothing survives the process. It backs
 * tests, examples and benchmarks, so a write costs a few map operations and
 * an array push.
 *
 * Records are stored as given and handed back as stored, without copying:
 * the engine never mutates a journal entry, snapshot or dead letter after
 * passing it to the store, and callers must treat what they read as
 * immutable (the types are `readonly`). Mutating one would change the
 * stored record.
 */
import { ConfigError, StoreError } from '../../src/errors.js';
import type {
  DeadLetter,
  EntityKey,
  EntityWrite,
  JournalEntry,
  StoredSnapshot,
  Store,
} from '../../src/persistence/types.js';

/** Options of {@link memoryStore}; none are needed today. */
export type MemoryStoreOptions = Record<string, never>;

/** What the store holds for one entity. */
interface EntityRecords {
  readonly key: EntityKey;
  /** `entries[i].seq === i + 1`: writes are consecutive from seq 1. */
  readonly entries: JournalEntry[];
  snapshot: StoredSnapshot | undefined;
  wakeAt: number | undefined;
}

const DEAD_LETTER_LIMIT = 1_000;

/**
 * Creates an in-memory store (`kind: 'memory'`, `durable: false`). Writes
 * apply synchronously inside `write()`; the returned promise only reports
 * the outcome.
 *
 * @example
 * ```ts
 * import { memoryStore } from 'shardchart/adapters/memory';
 *
 * const store = memoryStore();
 * await store.journal.append(
 *   { type: 'counter', id: 'c-1' },
 *   [{ seq: 1, at: 0, event: { type: 'INC' } }],
 *   0,
 * );
 * await store.journal.lastSeq({ type: 'counter', id: 'c-1' }); // 1
 * ```
 */
export function memoryStore(options: MemoryStoreOptions = {}): Store {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(
      `memoryStore takes an optional options object, got ${String(options)}.`,
    );
  }
  /** Entities by type, then id: no string key is built per write. */
  const entities = new Map<string, Map<string, EntityRecords>>();
  const deadLetters: DeadLetter[] = [];
  let closed = false;

  function closedError(): StoreError {
    return new StoreError(
      'STORE_CLOSED',
      'The memory store is closed. Call store.open() (or start a new system on it) to use it again.',
    );
  }

  function find(key: EntityKey): EntityRecords | undefined {
    return entities.get(key.type)?.get(key.id);
  }

  function findOrCreate(key: EntityKey): EntityRecords {
    let ids = entities.get(key.type);
    if (ids === undefined) {
      ids = new Map();
      entities.set(key.type, ids);
    }
    let records = ids.get(key.id);
    if (records === undefined) {
      records = {
        key: { type: key.type, id: key.id },
        entries: [],
        snapshot: undefined,
        wakeAt: undefined,
      };
      ids.set(key.id, records);
    }
    return records;
  }

  /** Keeps the newer snapshot; an equal seq overwrites. */
  function saveSnapshot(
    records: EntityRecords,
    snapshot: StoredSnapshot,
  ): void {
    if (
      records.snapshot === undefined ||
      snapshot.seq >= records.snapshot.seq
    ) {
      records.snapshot = snapshot;
    }
  }

  const store: Store = {
    kind: 'memory',
    durable: false,

    // Reopening keeps the data: a test or a demo can stop a system and
    // start a new one on the same memory store, as a process restart would
    // on a durable one.
    open() {
      closed = false;
      return Promise.resolve();
    },

    write(write: EntityWrite) {
      assertWrite(write);
      if (closed) return Promise.reject(closedError());
      const existing = find(write.key);
      const actualSeq = existing === undefined ? 0 : existing.entries.length;
      if (actualSeq !== write.expectedSeq) {
        return Promise.reject(
          new StoreError(
            'STORE_CONFLICT',
            `The journal of entity '${write.key.type}/${write.key.id}' ends at seq ${actualSeq}, but the write expected ${write.expectedSeq}: another writer got there first. Reload the entity and retry.`,
            {
              retryable: false,
              details: {
                key: write.key,
                expectedSeq: write.expectedSeq,
                actualSeq,
              },
            },
          ),
        );
      }
      const records = existing ?? findOrCreate(write.key);
      for (const entry of write.entries) records.entries.push(entry);
      if (write.snapshot !== undefined) saveSnapshot(records, write.snapshot);
      if (write.wakeAt === null) records.wakeAt = undefined;
      else if (write.wakeAt !== undefined) records.wakeAt = write.wakeAt;
      return Promise.resolve();
    },

    journal: {
      append(key, entries, expectedSeq) {
        return store.write({ key, entries, expectedSeq });
      },

      async *read(key, fromSeq, toSeq) {
        if (closed) throw closedError();
        const entries = find(key)?.entries;
        if (entries === undefined) return;
        // Seq n lives at index n - 1. The bounds are fixed when iteration
        // starts: entries appended meanwhile are not part of this read.
        const start = Math.max(fromSeq, 1) - 1;
        const end = Math.min(toSeq ?? entries.length, entries.length);
        for (let i = start; i < end; i++) {
          if (closed) throw closedError();
          yield entries[i] as JournalEntry;
        }
      },

      lastSeq(key) {
        if (closed) return Promise.reject(closedError());
        return Promise.resolve(find(key)?.entries.length ?? 0);
      },
    },

    snapshots: {
      load(key) {
        if (closed) return Promise.reject(closedError());
        return Promise.resolve(find(key)?.snapshot);
      },

      save(key, snapshot) {
        if (closed) return Promise.reject(closedError());
        saveSnapshot(findOrCreate(key), snapshot);
        return Promise.resolve();
      },
    },

    async *scanWakeups() {
      if (closed) throw closedError();
      for (const ids of entities.values()) {
        for (const records of ids.values()) {
          if (closed) throw closedError();
          if (records.wakeAt !== undefined) {
            yield { key: records.key, wakeAt: records.wakeAt };
          }
        }
      }
    },

    async *scanEntities(type) {
      if (closed) throw closedError();
      const groups =
        type === undefined
          ? [...entities.values()]
          : [entities.get(type) ?? new Map<string, EntityRecords>()];
      for (const ids of groups) {
        for (const records of ids.values()) {
          if (closed) throw closedError();
          if (records.entries.length > 0 || records.snapshot !== undefined) {
            yield records.key;
          }
        }
      }
    },

    appendDeadLetter(letter) {
      if (closed) return Promise.reject(closedError());
      deadLetters.push(letter);
      return Promise.resolve();
    },

    readDeadLetters(filter) {
      if (closed) return Promise.reject(closedError());
      const limit = filter?.limit ?? DEAD_LETTER_LIMIT;
      if (!Number.isSafeInteger(limit) || limit < 1) {
        return Promise.reject(
          new ConfigError(
            `readDeadLetters limit must be a positive integer, got ${String(limit)}.`,
            { details: { limit } },
          ),
        );
      }
      const key = filter?.key;
      const found: DeadLetter[] = [];
      for (const letter of deadLetters) {
        if (found.length >= limit) break;
        if (
          key === undefined ||
          (letter.key.type === key.type && letter.key.id === key.id)
        ) {
          found.push(letter);
        }
      }
      return Promise.resolve(found);
    },

    close() {
      closed = true;
      return Promise.resolve();
    },

    sizeBytes() {
      if (closed) return Promise.reject(closedError());
      // An estimate from JSON lengths; it walks everything, so it is meant
      // for occasional diagnostics, not for hot paths.
      let bytes = 0;
      for (const ids of entities.values()) {
        for (const records of ids.values()) {
          for (const entry of records.entries) bytes += jsonBytes(entry);
          if (records.snapshot !== undefined)
            bytes += jsonBytes(records.snapshot);
        }
      }
      for (const letter of deadLetters) bytes += jsonBytes(letter);
      return Promise.resolve(bytes);
    },
  };
  return store;
}

/**
 * The caller's side of the write contract; breaking it is a bug. Runs on
 * every write, so messages are built only when a check fails.
 */
function assertWrite(write: EntityWrite): void {
  const { expectedSeq, entries } = write;
  if (!Number.isSafeInteger(expectedSeq) || expectedSeq < 0) {
    fail(`expectedSeq must be a non-negative integer, got ${String(expectedSeq)}`);
  }
  for (let i = 0; i < entries.length; i++) {
    const seq = (entries[i] as JournalEntry).seq;
    if (seq !== expectedSeq + 1 + i) {
      fail(`entries must be consecutive from expectedSeq + 1 = ${expectedSeq + 1}, but entry ${i} has seq ${String(seq)}`);
    }
  }
  const snapshot = write.snapshot;
  if (snapshot !== undefined && !(snapshot.seq <= expectedSeq + entries.length)) {
    fail(`snapshot seq ${String(snapshot.seq)} is past the last entry of the write (${expectedSeq + entries.length})`);
  }
}

function fail(message: string): never {
  const error = new Error(`shardchart memory adapter: ${message}`);
  error.name = 'AssertionError';
  throw error;
}

function jsonBytes(value: unknown): number {
  try {
    return JSON.stringify(value)?.length ?? 0;
  } catch {
    return 0;
  }
}
