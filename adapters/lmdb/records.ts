/**
 * Decoding of stored values for the lmdb adapter. Every LMDB value is an
 * `encodeRecord` frame (version, CRC-32, msgpack). A frame that fails its
 * checks, or decodes to the wrong shape, becomes a `STORE_CORRUPT`
 * StoreError naming the entity and the record: corrupt data is never
 * loaded silently and never crashes the process.
 */
import { encodeRecord } from '../../src/codec/index.js';
import { StoreError } from '../../src/errors.js';
import {
  decodeStored as decodeRecordOrCorrupt,
  isJournalEntryAt,
} from '../../src/persistence/contract.js';
import type {
  DeadLetter,
  EntityKey,
  JournalEntry,
  StoredSnapshot,
} from '../../src/persistence/types.js';
import { decodeEntity, quote } from './keys.js';

/** Which record failed, for the error message and `details`. */
interface RecordLocation {
  /** Sub-database: 'log', 'heads', 'meta', 'snapshots', 'wakeups' or 'dead-letters'. */
  readonly db: string;
  /** The entity the record belongs to, when known. */
  readonly key?: EntityKey;
  /** Journal seq or dead-letter number, when the record has one. */
  readonly seq?: number | undefined;
  /** Log position, for records of the log. */
  readonly pos?: number;
}

/** Bytes of the previous-record pointer in front of a log record's frame. */
export const LOG_PREV_BYTES = 8;

/**
 * One entity write in the log: the journal entries it appended (possibly
 * none), the timer-index change it made, and the position of the entity's
 * previous log record, which chains an entity's records newest to oldest.
 */
export interface LogRecord {
  /** Position of this entity's previous log record; 0 for its first. */
  readonly prev: number;
  readonly key: EntityKey;
  /** Seq of the first entry; the entries follow consecutively. */
  readonly firstSeq: number;
  readonly entries: readonly JournalEntry[];
  /** New wake-up deadline, `null` to remove, `undefined` for no change. */
  readonly wakeAt: number | null | undefined;
}

/**
 * Encodes a log record: `[8 bytes prev][entity prefix][frame]`. The
 * previous-record pointer is filled in when the write joins a batch (see
 * {@link setLogPrev}); the frame's CRC covers the rest of the record. The
 * prefix is in clear so that a record whose frame is damaged can still be
 * attributed to its entity, and the damage kept to that entity.
 */
export function encodeLogRecord(
  prefix: Buffer,
  key: EntityKey,
  firstSeq: number,
  entries: readonly JournalEntry[],
  wakeAt: number | null | undefined,
): Buffer {
  const frame = encodeRecord(
    wakeAt === undefined
      ? { k: [key.type, key.id], s: firstSeq, e: entries }
      : { k: [key.type, key.id], s: firstSeq, e: entries, w: wakeAt },
  );
  const value = Buffer.allocUnsafe(
    LOG_PREV_BYTES + prefix.length + frame.length,
  );
  prefix.copy(value, LOG_PREV_BYTES);
  value.set(frame, LOG_PREV_BYTES + prefix.length);
  return value;
}

/** Writes the previous-record pointer of an encoded log record. */
export function setLogPrev(value: Buffer, prev: number): void {
  value.writeUInt32BE(Math.floor(prev / 0x1_0000_0000), 0);
  value.writeUInt32BE(prev >>> 0, 4);
}

/**
 * The clear part of a log record: its previous-record pointer and entity,
 * readable even when the frame is damaged. `undefined` when the bytes are
 * too short or the prefix does not parse.
 */
export function peekLogRecord(
  bytes: Uint8Array,
): { prev: number; key: EntityKey; frameOffset: number } | undefined {
  if (bytes.length < LOG_PREV_BYTES) return undefined;
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entity = decodeEntity(view.subarray(LOG_PREV_BYTES));
  if (entity === undefined) return undefined;
  return {
    prev: view.readUInt32BE(0) * 0x1_0000_0000 + view.readUInt32BE(4),
    key: entity.key,
    frameOffset: LOG_PREV_BYTES + entity.prefixBytes,
  };
}

/**
 * Decodes the log record at `pos`. `expected`, when given, is the entity the
 * caller followed a chain for: a record of another entity means a damaged
 * pointer.
 */
export function decodeLogRecord(
  bytes: Uint8Array,
  pos: number,
  expected?: EntityKey,
): LogRecord {
  const clear = peekLogRecord(bytes);
  const where = { db: 'log', key: expected ?? clear?.key, seq: undefined, pos };
  if (clear === undefined) {
    throw corrupt(
      where,
      'its header is cut short or does not parse',
      undefined,
      'truncated',
    );
  }
  const value = decodeStored(bytes.subarray(clear.frameOffset), where);
  if (
    !isObject(value) ||
    !Array.isArray(value.k) ||
    value.k.length !== 2 ||
    value.k[0] !== clear.key.type ||
    value.k[1] !== clear.key.id ||
    !Number.isSafeInteger(value.s) ||
    !Array.isArray(value.e) ||
    !(value.w === undefined || value.w === null || Number.isFinite(value.w)) ||
    clear.prev >= pos
  ) {
    throw corrupt(where, 'it is not a log record');
  }
  const key = clear.key;
  if (
    expected !== undefined &&
    (key.type !== expected.type || key.id !== expected.id)
  ) {
    throw corrupt(
      where,
      `it belongs to ${quote(key)}, so the chain of records pointing to it is damaged`,
      undefined,
      'chain',
    );
  }
  const firstSeq = value.s as number;
  const entries = value.e as unknown[];
  for (let i = 0; i < entries.length; i++) {
    if (!isJournalEntryAt(entries[i], firstSeq + i)) {
      throw corrupt(
        { ...where, key, seq: firstSeq + i },
        'it is not a journal entry with this seq',
      );
    }
  }
  return {
    prev: clear.prev,
    key,
    firstSeq,
    entries: entries as JournalEntry[],
    wakeAt: value.w as number | null | undefined,
  };
}

/** Where an entity's chain of log records starts, as checkpointed. */
export interface HeadRecord {
  /** Log position of the entity's newest record (0: none). */
  readonly head: number;
  /** Seq of its last journal entry (0: none). */
  readonly lastSeq: number;
  /**
   * Position of a damaged record in the entity's chain (found when the log
   * was replayed): reads and writes of the entity fail with `STORE_CORRUPT`.
   */
  readonly damaged?: number | undefined;
}

export function encodeHead(head: HeadRecord): Uint8Array {
  return encodeRecord(
    head.damaged === undefined
      ? { h: head.head, q: head.lastSeq }
      : { h: head.head, q: head.lastSeq, d: head.damaged },
  );
}

export function decodeHead(bytes: Uint8Array, key: EntityKey): HeadRecord {
  const where = { db: 'heads', key };
  const value = decodeStored(bytes, where);
  if (
    !isObject(value) ||
    !Number.isSafeInteger(value.h) ||
    !Number.isSafeInteger(value.q) ||
    (value.h as number) < 0 ||
    (value.q as number) < 0 ||
    !(value.d === undefined || Number.isSafeInteger(value.d))
  ) {
    throw corrupt(where, 'it is not a head record');
  }
  return {
    head: value.h as number,
    lastSeq: value.q as number,
    damaged: value.d as number | undefined,
  };
}

/**
 * The store's own state: the layout version and the log position up to
 * which the heads and wake-ups databases are up to date.
 */
export interface MetaRecord {
  readonly format: number;
  readonly checkpoint: number;
}

export function encodeMeta(meta: MetaRecord): Uint8Array {
  return encodeRecord({ format: meta.format, checkpoint: meta.checkpoint });
}

export function decodeMeta(bytes: Uint8Array): MetaRecord {
  const where = { db: 'meta' };
  const value = decodeStored(bytes, where);
  if (
    !isObject(value) ||
    !Number.isSafeInteger(value.format) ||
    !Number.isSafeInteger(value.checkpoint)
  ) {
    throw corrupt(where, 'it is not the store state record');
  }
  return value as unknown as MetaRecord;
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

/**
 * The entity has a damaged record in its chain (at `pos`): nothing of it can
 * be trusted past that point, so it neither reads nor writes.
 */
export function damagedEntity(key: EntityKey, pos: number): StoreError {
  return new StoreError(
    'STORE_CORRUPT',
    `The log record of entity ${quote(key)} at log position ${pos} is corrupt, so its journal cannot be read past it. Restore the store from a backup, or delete the records of entity ${quote(key)} to let it start over.`,
    { details: { db: 'log', key, pos, reason: 'damaged' } },
  );
}

/** A key that does not parse: the database itself is damaged. */
export function corruptKey(db: string, bytes: Uint8Array): StoreError {
  return corrupt(
    { db },
    `its key ${Buffer.from(bytes).toString('hex')} does not parse`,
  );
}

function decodeStored(bytes: Uint8Array, where: RecordLocation): unknown {
  return decodeRecordOrCorrupt(bytes, (problem, cause, reason) =>
    corrupt(where, problem, cause, reason),
  );
}

function corrupt(
  where: RecordLocation,
  problem: string,
  cause?: unknown,
  reason = 'shape',
): StoreError {
  const at = where.pos === undefined ? '' : ` at log position ${where.pos}`;
  const record =
    where.key === undefined
      ? `A record in '${where.db}'${where.seq === undefined ? '' : ` (number ${where.seq})`}${at}`
      : `The ${where.db} record of entity ${quote(where.key)}${where.seq === undefined ? '' : ` at seq ${where.seq}`}${at}`;
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
        pos: where.pos,
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
