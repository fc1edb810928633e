/**
 * What the nats adapter stores in messages, and how it reads it back. Every
 * payload is an `encodeRecord` frame (version, CRC-32, msgpack) naming the
 * entity it belongs to, so a damaged message, a foreign one published to
 * one of our subjects, or one filed under the wrong subject is reported as
 * `STORE_CORRUPT` instead of being loaded, and never crashes the process.
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
import { quote } from './keys.js';

/** Which message failed, for the error message and `details`. */
interface RecordLocation {
  /** 'journal', 'snapshots', 'wakeups' or 'dead-letters'. */
  readonly kind: string;
  /** Stream holding the message. */
  readonly stream: string;
  readonly subject: string;
  /** The entity the message belongs to, when known. */
  readonly key?: EntityKey | undefined;
  /** Stream sequence of the message, when known. */
  readonly streamSeq?: number | undefined;
}

/** One journal message: the entries of one entity write, in seq order. */
export interface JournalMessage {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly entries: readonly JournalEntry[];
}

export function encodeJournalMessage(
  key: EntityKey,
  entries: readonly JournalEntry[],
): Uint8Array {
  return encodeRecord({
    k: [key.type, key.id],
    s: (entries[0] as JournalEntry).seq,
    e: entries,
  });
}

export function decodeJournalMessage(
  bytes: Uint8Array,
  where: RecordLocation & { readonly key: EntityKey },
): JournalMessage {
  const value = decodeStored(bytes, where);
  if (
    !isObject(value) ||
    !sameKey(value.k, where.key) ||
    !Number.isSafeInteger(value.s) ||
    (value.s as number) < 1 ||
    !Array.isArray(value.e) ||
    value.e.length === 0
  ) {
    throw corrupt(where, 'it is not a journal message of this entity');
  }
  const firstSeq = value.s as number;
  const entries = value.e as unknown[];
  for (let i = 0; i < entries.length; i++) {
    if (!isJournalEntryAt(entries[i], firstSeq + i)) {
      throw corrupt(
        where,
        `its entry ${i} is not a journal entry with seq ${firstSeq + i}`,
      );
    }
  }
  return {
    firstSeq,
    lastSeq: firstSeq + entries.length - 1,
    entries: entries as JournalEntry[],
  };
}

/**
 * A snapshot as stored in the snapshots bucket, with a read hint: the
 * entity's journal entries after `snapshot.seq` all sit at stream sequence
 * `from` or later (0 when unknown), so recovery reads only the tail.
 */
interface SnapshotRecord {
  readonly snapshot: StoredSnapshot;
  readonly from: number;
}

export function encodeSnapshotRecord(
  key: EntityKey,
  snapshot: StoredSnapshot,
  from: number,
): Uint8Array {
  return encodeRecord({ k: [key.type, key.id], snapshot, from });
}

export function decodeSnapshotRecord(
  bytes: Uint8Array,
  where: RecordLocation & { readonly key: EntityKey },
): SnapshotRecord {
  const value = decodeStored(bytes, where);
  const snapshot = isObject(value) ? value.snapshot : undefined;
  if (
    !isObject(value) ||
    !sameKey(value.k, where.key) ||
    !Number.isSafeInteger(value.from) ||
    (value.from as number) < 0 ||
    !isObject(snapshot) ||
    snapshot.v !== 1 ||
    !Number.isSafeInteger(snapshot.seq) ||
    !Array.isArray(snapshot.timers) ||
    !Array.isArray(snapshot.eventIds)
  ) {
    throw corrupt(where, 'it is not a version-1 snapshot of this entity');
  }
  return {
    snapshot: snapshot as unknown as StoredSnapshot,
    from: value.from as number,
  };
}

export function encodeWakeRecord(key: EntityKey, wakeAt: number): Uint8Array {
  return encodeRecord({ k: [key.type, key.id], w: wakeAt });
}

export function decodeWakeRecord(
  bytes: Uint8Array,
  where: RecordLocation & { readonly key: EntityKey },
): number {
  const value = decodeStored(bytes, where);
  if (
    !isObject(value) ||
    !sameKey(value.k, where.key) ||
    typeof value.w !== 'number' ||
    !Number.isFinite(value.w)
  ) {
    throw corrupt(where, 'it is not a timer-index entry of this entity');
  }
  return value.w;
}

export function encodeDeadLetter(letter: DeadLetter): Uint8Array {
  return encodeRecord(letter);
}

export function decodeDeadLetter(
  bytes: Uint8Array,
  where: RecordLocation,
): DeadLetter {
  const value = decodeStored(bytes, where);
  if (
    !isObject(value) ||
    !isObject(value.key) ||
    typeof value.key.type !== 'string' ||
    typeof value.key.id !== 'string' ||
    (where.key !== undefined &&
      (value.key.type !== where.key.type || value.key.id !== where.key.id)) ||
    !isObject(value.event) ||
    typeof value.code !== 'string'
  ) {
    throw corrupt(where, 'it is not a dead letter of this entity');
  }
  return value as unknown as DeadLetter;
}

/** A subject of ours whose tokens do not name an entity. */
export function corruptSubject(where: RecordLocation): StoreError {
  return corrupt(where, 'its subject does not name an entity');
}

/**
 * The journal of an entity skips entries: a message is missing (purged or
 * deleted by hand) or one was written past the end by another program.
 */
export function journalGap(
  where: RecordLocation & { readonly key: EntityKey },
  expectedSeq: number,
  firstSeq: number,
): StoreError {
  return corrupt(
    where,
    `its entries start at seq ${firstSeq}, but the journal before it ends at seq ${expectedSeq - 1}: entries are missing`,
    undefined,
    'gap',
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
  const at =
    where.streamSeq === undefined
      ? ''
      : ` (stream sequence ${where.streamSeq})`;
  const owner = where.key === undefined ? '' : ` of entity ${quote(where.key)}`;
  const remedy =
    where.kind === 'journal'
      ? `Restore the stream from a backup, or purge the subject to let the entity start over: nats stream purge ${where.stream} --subject '${where.subject}'.`
      : `Restore the stream from a backup, or purge the subject: nats stream purge ${where.stream} --subject '${where.subject}'.`;
  return new StoreError(
    'STORE_CORRUPT',
    `The ${where.kind} message${owner} on '${where.subject}' in stream '${where.stream}'${at} is corrupt: ${problem}. ${remedy}`,
    {
      cause,
      details: {
        kind: where.kind,
        stream: where.stream,
        subject: where.subject,
        key: where.key,
        streamSeq: where.streamSeq,
        reason,
      },
    },
  );
}

function sameKey(value: unknown, key: EntityKey): boolean {
  return (
    Array.isArray(value) &&
    value.length === 2 &&
    value[0] === key.type &&
    value[1] === key.id
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
