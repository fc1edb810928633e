/**
 * What every store adapter checks of what the engine hands it, and how it
 * reports a broken check: the caller's side of the write contract (seqs
 * consecutive from `expectedSeq + 1`, snapshots no further than the write),
 * assertion errors for programmer errors, and the decoding of a stored
 * record into a value or a typed corruption error. Adapters share these so
 * that the contract is checked the same way whatever the storage.
 *
 * @internal
 */
import { decodeRecord } from '../codec/index.js';
import { isShardchartError, type StoreError } from '../errors.js';
import type {
  EntityKey,
  EntityWrite,
  JournalEntry,
  StoredSnapshot,
} from './types.js';

/** A programmer-error check: a broken invariant fails loudly with its values. */
export type Assert = (
  condition: boolean,
  message: () => string,
) => asserts condition;

/** The {@link Assert} of one adapter: its errors name the adapter. */
export function assertFor(adapter: string): Assert {
  return (condition, message) => {
    if (!condition) {
      const error = new Error(`shardchart ${adapter} adapter: ${message()}`);
      error.name = 'AssertionError';
      throw error;
    }
  };
}

/** True for errors thrown by an {@link Assert}. */
export function isAssertionError(error: unknown): boolean {
  return error instanceof Error && error.name === 'AssertionError';
}

/** Short printable form of a value for an adapter's error messages (JSON, cut at 120 characters). */
export function describeValue(value: unknown): string {
  try {
    const text = JSON.stringify(value);
    if (text === undefined) return String(value);
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
  } catch {
    return String(value);
  }
}

/** `'type/id'` with quotes, as error messages show entity keys. */
export function quote(key: EntityKey): string {
  return `'${key.type}/${key.id}'`;
}

/** A snapshot handed to a store must be a version-1 `StoredSnapshot` with a seq. */
export function checkSnapshot(snapshot: StoredSnapshot, assert: Assert): void {
  assert(
    typeof snapshot === 'object' &&
      snapshot !== null &&
      snapshot.v === 1 &&
      Number.isSafeInteger(snapshot.seq) &&
      snapshot.seq >= 0,
    () =>
      `snapshot must be a version-1 StoredSnapshot with a seq, got ${describeValue(snapshot)}`,
  );
}

/** The caller's side of the write contract; breaking it is a bug. */
export function checkWrite(write: EntityWrite, assert: Assert): void {
  const { expectedSeq, entries, snapshot, wakeAt } = write;
  assert(
    Number.isSafeInteger(expectedSeq) && expectedSeq >= 0,
    () =>
      `expectedSeq must be a non-negative integer, got ${describeValue(expectedSeq)}`,
  );
  for (let i = 0; i < entries.length; i++) {
    const seq = (entries[i] as JournalEntry).seq;
    assert(
      seq === expectedSeq + 1 + i,
      () =>
        `entries must be consecutive from expectedSeq + 1 = ${expectedSeq + 1}, but entry ${i} has seq ${describeValue(seq)}`,
    );
  }
  if (snapshot !== undefined) {
    checkSnapshot(snapshot, assert);
    assert(
      snapshot.seq <= expectedSeq + entries.length,
      () =>
        `snapshot seq ${snapshot.seq} is past the last entry of the write (${expectedSeq + entries.length})`,
    );
  }
  assert(
    wakeAt === undefined || wakeAt === null || Number.isFinite(wakeAt),
    () =>
      `wakeAt must be a finite number, null or undefined, got ${describeValue(wakeAt)}`,
  );
}

/**
 * Decodes a stored record; a record the codec refuses becomes the adapter's
 * corruption error (`corrupt(problem, cause, reason)`), whose reason is the
 * codec's own when it gave one.
 */
export function decodeStored(
  bytes: Uint8Array,
  corrupt: (problem: string, cause: unknown, reason: string) => StoreError,
): unknown {
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
    throw corrupt(`decoding failed (${reason})`, cause, reason);
  }
}

/**
 * True when a decoded value has the shape of the journal entry with `seq`:
 * a plain object with that seq, a numeric `at` and an event with a string
 * type. Adapters check every entry they read against it.
 */
export function isJournalEntryAt(entry: unknown, seq: number): boolean {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
    return false;
  const { seq: at, at: time, event } = entry as Record<string, unknown>;
  return (
    at === seq &&
    typeof time === 'number' &&
    typeof event === 'object' &&
    event !== null &&
    !Array.isArray(event) &&
    typeof (event as Record<string, unknown>).type === 'string'
  );
}
