/**
 * Decoding of stored values for the lmdb adapter. Every LMDB value is an
 * `encodeRecord` frame (version, CRC-32, msgpack). A frame that fails its
 * checks, or decodes to the wrong shape, becomes a `STORE_CORRUPT`
 * StoreError naming the entity and the record: corrupt data is never
 * loaded silently and never crashes the process.
 */
import { decodeRecord } from '../../src/codec/index.js';
import { StoreError, isShardchartError } from '../../src/errors.js';
import type {
  DeadLetter,
  EntityKey,
  JournalEntry,
  StoredSnapshot,
} from '../../src/persistence/types.js';
import { quote } from './keys.js';

/** Which record failed, for the error message and `details`. */
interface RecordLocation {
  /** Sub-database: 'journal', 'snapshots', 'wakeups' or 'dead-letters'. */
  readonly db: string;
  /** The entity the record belongs to, when known. */
  readonly key?: EntityKey;
  /** Journal seq or dead-letter number, when the record has one. */
  readonly seq?: number;
}

/** Decodes a journal entry stored under `key`/`seq` and checks its shape. */
export function decodeJournalEntry(
  bytes: Uint8Array,
  key: EntityKey,
  seq: number,
): JournalEntry {
  const where = { db: 'journal', key, seq };
  const value = decodeStored(bytes, where);
  if (
    !isObject(value) ||
    value.seq !== seq ||
    typeof value.at !== 'number' ||
    !isObject(value.event) ||
    typeof value.event.type !== 'string'
  ) {
    throw corrupt(where, 'it is not a journal entry with this seq');
  }
  return value as unknown as JournalEntry;
}

/** Decodes the snapshot stored for `key` and checks its shape. */
export function decodeSnapshot(
  bytes: Uint8Array,
  key: EntityKey,
): StoredSnapshot {
  const where = { db: 'snapshots', key };
  const value = decodeStored(bytes, where);
  if (
    !isObject(value) ||
    value.v !== 1 ||
    !Number.isSafeInteger(value.seq) ||
    !Array.isArray(value.timers) ||
    !Array.isArray(value.eventIds)
  ) {
    throw corrupt(where, 'it is not a version-1 snapshot');
  }
  return value as unknown as StoredSnapshot;
}

/** Decodes the timer-index entry (the wake-up deadline) of `key`. */
export function decodeWakeAt(bytes: Uint8Array, key: EntityKey): number {
  const where = { db: 'wakeups', key };
  const value = decodeStored(bytes, where);
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw corrupt(where, 'it is not a finite number');
  }
  return value;
}

/** Decodes dead letter number `n`. */
export function decodeDeadLetter(bytes: Uint8Array, n: number): DeadLetter {
  const where = { db: 'dead-letters', seq: n };
  const value = decodeStored(bytes, where);
  if (
    !isObject(value) ||
    !isObject(value.key) ||
    typeof value.key.type !== 'string' ||
    typeof value.key.id !== 'string' ||
    !isObject(value.event) ||
    typeof value.code !== 'string'
  ) {
    throw corrupt(where, 'it is not a dead letter');
  }
  return value as unknown as DeadLetter;
}

/** A key that does not parse: the database itself is damaged. */
export function corruptKey(db: string, bytes: Uint8Array): StoreError {
  return corrupt(
    { db },
    `its key ${Buffer.from(bytes).toString('hex')} does not parse`,
  );
}

function decodeStored(bytes: Uint8Array, where: RecordLocation): unknown {
  try {
    return decodeRecord(bytes);
  } catch (cause) {
    const detail = isShardchartError(cause) ? cause.details?.reason : undefined;
    const reason =
      typeof detail === 'string'
        ? detail
        : isShardchartError(cause)
          ? cause.code
          : 'decoder-threw';
    throw corrupt(where, `decoding failed (${reason})`, cause, reason);
  }
}

function corrupt(
  where: RecordLocation,
  problem: string,
  cause?: unknown,
  reason = 'shape',
): StoreError {
  const record =
    where.key === undefined
      ? `A record in '${where.db}'${where.seq === undefined ? '' : ` (number ${where.seq})`}`
      : `The ${where.db} record of entity ${quote(where.key)}${where.seq === undefined ? '' : ` at seq ${where.seq}`}`;
  const remedy =
    where.key === undefined
      ? 'Restore the store from a backup.'
      : `Restore the store from a backup, or delete the records of entity ${quote(where.key)} to let it start over.`;
  return new StoreError(
    'STORE_CORRUPT',
    `${record} is corrupt: ${problem}. ${remedy}`,
    {
      cause,
      details: {
        db: where.db,
        key: where.key,
        seq: where.seq,
        reason,
      },
    },
  );
}

function isObject(value: unknown): value is Record<string, unknown> & {
  [key: string]: unknown;
} {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
