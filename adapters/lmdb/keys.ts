/**
 * Binary LMDB keys for the lmdb adapter.
 *
 * An entity's prefix is `[u16 type bytes][type utf-8][u16 id bytes][id utf-8]`
 * and a journal key appends the seq as 8 big-endian bytes. Length prefixes
 * make every key unambiguous for any string, including ones holding NUL or
 * control characters (lmdb-js's default ordered-binary array keys only
 * escape those in short strings). Byte order then groups each entity's keys
 * together and sorts its journal by seq, which is all a range read needs.
 * Entities of one type share the `[u16 type bytes][type utf-8]` prefix, so
 * `scanEntities(type)` is a range read too.
 */
import { InvalidInputError } from '../../src/errors.js';
import type { EntityKey } from '../../src/persistence/types.js';
import {
  assertFor,
  describeValue as describe,
  isAssertionError,
  quote,
  type Assert,
} from '../../src/persistence/contract.js';

const SEQ_BYTES = 8;
const TWO_POW_32 = 0x1_0000_0000;

/** An entity key with its encoded prefix, so an operation encodes it once. */
export interface EncodedEntity {
  readonly key: EntityKey;
  /** `[type][id]` prefix: the key of snapshots and wakeups. */
  readonly prefix: Buffer;
}

/**
 * Encodes the entity prefix. `prefixBytesMax` leaves room for the 8 seq
 * bytes under LMDB's key size limit; a longer type and id cannot be stored.
 */
export function encodeEntity(
  key: EntityKey,
  prefixBytesMax: number,
): EncodedEntity {
  assert(
    typeof key === 'object' &&
      key !== null &&
      typeof key.type === 'string' &&
      typeof key.id === 'string',
    () =>
      `entity key must be { type: string, id: string }, got ${describe(key)}`,
  );
  const typeBytes = Buffer.byteLength(key.type, 'utf8');
  const idBytes = Buffer.byteLength(key.id, 'utf8');
  const size = 4 + typeBytes + idBytes;
  if (size > prefixBytesMax) {
    throw new InvalidInputError(
      'ENTITY_ID_INVALID',
      `The entity key ${quote(key)} takes ${size} bytes, more than the ${prefixBytesMax} an LMDB key can hold with its seq. Use a shorter entity type and id.`,
      { details: { key, bytes: size, bytesMax: prefixBytesMax } },
    );
  }
  const prefix = Buffer.allocUnsafe(size);
  prefix.writeUInt16BE(typeBytes, 0);
  prefix.write(key.type, 2, 'utf8');
  prefix.writeUInt16BE(idBytes, 2 + typeBytes);
  prefix.write(key.id, 4 + typeBytes, 'utf8');
  return { key, prefix };
}

/** The prefix shared by every entity of `type`. */
export function encodeTypePrefix(type: string): Buffer {
  assert(
    typeof type === 'string',
    () => `type must be a string, got ${describe(type)}`,
  );
  const typeBytes = Buffer.byteLength(type, 'utf8');
  const prefix = Buffer.allocUnsafe(2 + typeBytes);
  prefix.writeUInt16BE(typeBytes, 0);
  prefix.write(type, 2, 'utf8');
  return prefix;
}

/** The journal key of `seq` in the entity whose prefix is given. */
export function journalKey(prefix: Buffer, seq: number): Buffer {
  const key = Buffer.allocUnsafe(prefix.length + SEQ_BYTES);
  prefix.copy(key, 0);
  writeSeq(key, prefix.length, seq);
  return key;
}

/**
 * The smallest key greater than every key that starts with `prefix`: the
 * exclusive end of a prefix range. `undefined` when no such key exists
 * (the prefix is all 0xff bytes), meaning "to the end of the database".
 */
export function prefixEnd(prefix: Buffer): Buffer | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const byte = prefix[i] as number;
    if (byte !== 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = byte + 1;
      return end;
    }
  }
  return undefined;
}

/**
 * Reads the entity back from a key (a prefix or a journal key). Returns
 * `undefined` when the bytes do not parse, which callers report as
 * corruption.
 */
export function decodeEntity(
  bytes: Uint8Array,
): { key: EntityKey; prefixBytes: number } | undefined {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < 4) return undefined;
  const typeBytes = buffer.readUInt16BE(0);
  if (buffer.length < 4 + typeBytes) return undefined;
  const idBytes = buffer.readUInt16BE(2 + typeBytes);
  const prefixBytes = 4 + typeBytes + idBytes;
  if (buffer.length < prefixBytes) return undefined;
  return {
    key: {
      type: buffer.toString('utf8', 2, 2 + typeBytes),
      id: buffer.toString('utf8', 4 + typeBytes, prefixBytes),
    },
    prefixBytes,
  };
}

/** Reads the seq from a journal key whose prefix is `prefixBytes` long. */
export function decodeJournalSeq(
  bytes: Uint8Array,
  prefixBytes: number,
): number | undefined {
  if (bytes.length !== prefixBytes + SEQ_BYTES) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return (
    view.getUint32(prefixBytes) * TWO_POW_32 + view.getUint32(prefixBytes + 4)
  );
}

/**
 * Key of log record `pos`: 8 big-endian bytes, so the log is one growing
 * sequence and every commit appends at the end of the B-tree.
 */
export function logKey(pos: number): Buffer {
  const key = Buffer.allocUnsafe(SEQ_BYTES);
  writeSeq(key, 0, pos);
  return key;
}

/** Inverse of {@link logKey}; `undefined` for malformed keys. */
export function decodeLogKey(bytes: Uint8Array): number | undefined {
  return decodeJournalSeq(bytes, 0);
}

/** Key of the n-th dead letter: 8 big-endian bytes, so keys sort by age. */
export function deadLetterKey(n: number): Buffer {
  const key = Buffer.allocUnsafe(SEQ_BYTES);
  writeSeq(key, 0, n);
  return key;
}

/** Inverse of {@link deadLetterKey}; `undefined` for malformed keys. */
export function decodeDeadLetterKey(bytes: Uint8Array): number | undefined {
  return decodeJournalSeq(bytes, 0);
}

/** Key of the dead-letter index: the entity prefix, then the letter number. */
export function deadLetterIndexKey(prefix: Buffer, n: number): Buffer {
  return journalKey(prefix, n);
}

function writeSeq(target: Buffer, offset: number, seq: number): void {
  assert(
    Number.isSafeInteger(seq) && seq >= 0,
    () => `seq must be a non-negative safe integer, got ${describe(seq)}`,
  );
  target.writeUInt32BE(Math.floor(seq / TWO_POW_32), offset);
  target.writeUInt32BE(seq >>> 0, offset + 4);
}

/** Programmer-error check: a broken invariant fails loudly with its values. */
export const assert: Assert = assertFor('lmdb');

export { isAssertionError, describe, quote };
