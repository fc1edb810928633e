/**
 * The codec: plain data to msgpack bytes and back, plus the two framings
 * built on it. Envelopes cross process boundaries (one version byte, then
 * msgpack); records go to disk (version byte, CRC-32, msgpack). Encoding
 * refuses what would not restore; decoding treats bytes as untrusted and
 * refuses everything outside the plain-data subset of msgpack before
 * msgpackr parses it.
 */
import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';

import { ConfigError, CodecError } from '../errors.js';
import { crc32 } from './crc32.js';
import { checkPlainData, type PlainDataLimits } from './plain-data.js';
import { scanMsgpack } from './scan.js';

/** Bounds applied when decoding bytes that came from outside the process. */
export interface DecodeLimits {
  /** Largest msgpack body accepted, in bytes. */
  bytesMax: number;
  /** Deepest nesting of arrays and maps accepted; `[]` has depth 1. */
  depthMax: number;
}

/**
 * Decode limits used when the caller gives none: 1 MiB and 64 levels, ample
 * for events and envelopes, small enough that a hostile peer cannot make a
 * node allocate much.
 *
 * @example
 * ```ts
 * decode(bytes, { ...defaultDecodeLimits, bytesMax: 4 * 1_048_576 });
 * ```
 */
export const defaultDecodeLimits: DecodeLimits = Object.freeze({
  bytesMax: 1_048_576,
  depthMax: 64,
});

/**
 * Records are written by this process's own stores, so they are trusted to
 * be well-intended but not to be intact: the limits are generous yet still
 * finite. Encoding uses the same limits, so anything `encode` accepts can be
 * read back from a record.
 */
const recordLimits: DecodeLimits = Object.freeze({
  bytesMax: 64 * 1_048_576,
  depthMax: 256,
});
const encodeLimits: PlainDataLimits = recordLimits;

/**
 * Version byte that opens every envelope. Receivers refuse other versions.
 *
 * @example
 * ```ts
 * encodeEnvelope({ type: 'PING' })[0] === ENVELOPE_VERSION; // true
 * ```
 */
export const ENVELOPE_VERSION = 1;

const RECORD_VERSION = 1;
/** Format version byte plus a big-endian CRC-32 of the payload. */
const RECORD_HEADER_BYTES = 5;

/** Largest msgpackr output buffer that encoded values may keep alive. */
const SLAB_BYTES_MAX = 262_144;

// One Packr for the process. msgpackr writes every value into one growing
// output buffer (shared by all Packr instances of this msgpackr copy) and
// returns a view of it that later encodes do not overwrite, so results need
// no copy; reusing that buffer is most of its speed. This holds only while
// nobody calls `useBuffer` with a buffer they later reuse, so code outside
// this file should encode through this module. `variableMapSize` writes
// small maps as fixmap and, unlike the default, does not fail on objects
// with more than 65,535 keys.
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  variableMapSize: true,
  encodeUndefinedAsNil: false,
});

// The scan has already refused every extension, bin value and unsafe
// 64-bit integer, so these options only have to say how plain values are
// built: maps as plain objects, int64 as numbers (exact, being safe).
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: 'number',
});

/**
 * Encodes plain data as msgpack. `undefined` survives the round trip, as in
 * `{ a: undefined }` and `[undefined]`; `-0` comes back as `0`, as in JSON.
 * Throws `CodecError` `ENCODE_FAILED` for anything {@link checkPlainData}
 * refuses, with `details.reason` set to the problem kind and `details.path`
 * to where it is.
 *
 * @example
 * ```ts
 * const bytes = encode({ type: 'ADD', sku: 'A-1', qty: 2 });
 * decode(bytes); // { type: 'ADD', sku: 'A-1', qty: 2 }
 * ```
 */
export function encode(value: unknown): Uint8Array {
  return pack(value, 0);
}

/**
 * Decodes msgpack bytes from an untrusted source into plain data. The bytes
 * must hold exactly one value within `limits` (defaults:
 * {@link defaultDecodeLimits}), built only from nil, booleans, finite
 * numbers, strings, arrays and maps with string keys. Every failure is a
 * `CodecError` `DECODE_FAILED` whose `details.reason` is one of
 * `too-large`, `too-deep`, `truncated`, `trailing-bytes`, `extension-type`
 * (msgpack ext or bin types), `forbidden-key` (`__proto__`, `constructor`),
 * `invalid-key` (a non-string map key) or `malformed`, and whose
 * `details.offset` locates the problem.
 *
 * @example
 * ```ts
 * const event = decode(bytesFromPeer, { bytesMax: 65_536 });
 * ```
 */
export function decode(
  bytes: Uint8Array,
  limits?: Partial<DecodeLimits>,
): unknown {
  return decodeFrom(bytes, 0, resolveLimits(limits), 'message');
}

/**
 * Encodes a message body for another process: the byte
 * {@link ENVELOPE_VERSION}, then the msgpack body. Throws like
 * {@link encode}.
 *
 * @example
 * ```ts
 * transport.send(encodeEnvelope({ kind: 'deliver', entity, event }));
 * ```
 */
export function encodeEnvelope(body: unknown): Uint8Array {
  const bytes = pack(body, 1);
  bytes[0] = ENVELOPE_VERSION;
  return bytes;
}

/**
 * Decodes an envelope made by {@link encodeEnvelope}. Refuses any version
 * other than {@link ENVELOPE_VERSION} (reason `version`), then decodes the
 * body as {@link decode} does; `limits` apply to the body.
 *
 * @example
 * ```ts
 * const body = decodeEnvelope(bytesFromPeer);
 * ```
 */
export function decodeEnvelope(
  bytes: Uint8Array,
  limits?: Partial<DecodeLimits>,
): unknown {
  const resolved = resolveLimits(limits);
  assertBytes(bytes);
  if (bytes.length < 1) {
    throw failure(
      'truncated',
      'The envelope is empty: expected a version byte and a msgpack body. Resend the complete message.',
    );
  }
  if (bytes[0] !== ENVELOPE_VERSION) {
    throw failure(
      'version',
      `The envelope has version ${String(bytes[0])}, expected ${ENVELOPE_VERSION}: the sender runs an incompatible shardchart release. Run matching releases on both sides.`,
      { version: bytes[0] },
    );
  }
  return decodeFrom(bytes, 1, resolved, 'envelope body');
}

/**
 * Encodes a value as a storage record: one format-version byte (1), the
 * CRC-32 of the payload as 4 big-endian bytes, then the msgpack payload.
 * The header is reserved inside msgpackr's output buffer, so the payload is
 * never copied. Throws like {@link encode}.
 *
 * @example
 * ```ts
 * await file.write(encodeRecord({ seq: 42, event: { type: 'PAY' } }));
 * ```
 */
export function encodeRecord(value: unknown): Uint8Array {
  const bytes = pack(value, RECORD_HEADER_BYTES);
  const checksum = crc32(bytes.subarray(RECORD_HEADER_BYTES));
  bytes[0] = RECORD_VERSION;
  bytes[1] = checksum >>> 24;
  bytes[2] = (checksum >>> 16) & 0xff;
  bytes[3] = (checksum >>> 8) & 0xff;
  bytes[4] = checksum & 0xff;
  return bytes;
}

/**
 * Decodes a record made by {@link encodeRecord}. Checks the header length
 * (reason `truncated`), the format version (`version`) and the CRC-32
 * (`checksum`) before decoding the payload with generous limits (64 MiB,
 * depth 256): records are written by us, but disks tear writes and rot.
 *
 * @example
 * ```ts
 * const entry = decodeRecord(await file.read());
 * ```
 */
export function decodeRecord(bytes: Uint8Array): unknown {
  assertBytes(bytes);
  if (bytes.length < RECORD_HEADER_BYTES + 1) {
    throw failure(
      'truncated',
      `The record is ${bytes.length} bytes, shorter than its ${RECORD_HEADER_BYTES}-byte header plus a payload: it was cut short. Restore it from a replica or backup.`,
      { length: bytes.length },
    );
  }
  if (bytes[0] !== RECORD_VERSION) {
    throw failure(
      'version',
      `The record has format version ${String(bytes[0])}, expected ${RECORD_VERSION}: it was written by another shardchart release or is corrupt. Read it with a matching release.`,
      { version: bytes[0] },
    );
  }
  const stored =
    ((bytes[1] as number) << 24) |
    ((bytes[2] as number) << 16) |
    ((bytes[3] as number) << 8) |
    (bytes[4] as number);
  const computed = crc32(bytes.subarray(RECORD_HEADER_BYTES));
  if (stored >>> 0 !== computed) {
    throw failure(
      'checksum',
      `The record checksum does not match: stored ${hex32(stored)}, computed ${hex32(computed)}. The record is corrupt (a torn write or a disk fault); restore it from a replica or backup.`,
      { stored: stored >>> 0, computed },
    );
  }
  return decodeFrom(bytes, RECORD_HEADER_BYTES, recordLimits, 'record payload');
}

/** Checks, then packs, leaving `reserve` zeroed bytes at the start for a header. */
function pack(value: unknown, reserve: number): Uint8Array {
  const { problem } = checkPlainData(value, encodeLimits);
  if (problem !== undefined) {
    throw new CodecError(
      'ENCODE_FAILED',
      `Cannot encode the value at ${problem.path}: ${problem.reason}`,
      { details: { reason: problem.kind, path: problem.path } },
    );
  }
  let bytes: Uint8Array;
  try {
    bytes =
      reserve === 0
        ? packr.pack(value)
        : packr.pack(value, RESERVE_START_SPACE | reserve);
  } catch (cause) {
    throw new CodecError(
      'ENCODE_FAILED',
      `msgpack encoding failed (${String(cause)}) although the value passed the plain-data check; please report this with the value's shape.`,
      { cause, details: { reason: 'encoder-failed' } },
    );
  }
  // The plain-data estimate undercounts text outside ASCII, so the exact
  // size is checked here to keep every encoding readable as a record.
  if (bytes.length - reserve > encodeLimits.bytesMax) {
    throw new CodecError(
      'ENCODE_FAILED',
      `The value encodes to ${bytes.length - reserve} bytes, more than the ${encodeLimits.bytesMax} a record may hold; send less data or a reference to it.`,
      { details: { reason: 'too-large', path: '$' } },
    );
  }
  if (bytes.buffer.byteLength > SLAB_BYTES_MAX) {
    // msgpackr grew its shared output buffer to fit this value and would
    // write the next values into it too, so each later small record would
    // keep this whole buffer alive. Copying out the one value it holds and
    // handing msgpackr a fresh buffer lets the large one be collected.
    const copy = Buffer.from(bytes);
    packr.useBuffer(Buffer.allocUnsafeSlow(8_192));
    return copy;
  }
  return bytes;
}

/** Size check, structural scan, then msgpackr over `bytes[start..]`. */
function decodeFrom(
  bytes: Uint8Array,
  start: number,
  limits: DecodeLimits,
  what: string,
): unknown {
  assertBytes(bytes);
  const size = bytes.length - start;
  if (size > limits.bytesMax) {
    throw failure(
      'too-large',
      `The ${what} is ${size} bytes, larger than bytesMax ${limits.bytesMax}. Send less data, or raise bytesMax if the sender is trusted.`,
      { size, bytesMax: limits.bytesMax },
    );
  }
  const problem = scanMsgpack(bytes, start, bytes.length, limits.depthMax);
  if (problem !== undefined) {
    throw failure(
      problem.reason,
      `Cannot decode the ${what}: ${problem.message}`,
      { offset: problem.offset },
    );
  }
  try {
    return unpackr.unpack(bytes, { start, end: bytes.length }) as unknown;
  } catch (cause) {
    // msgpackr recurses, and runs out of stack near 4,500 levels; only a
    // depthMax configured above that can let such input through the scan.
    if (cause instanceof RangeError && /call stack/i.test(cause.message)) {
      throw failure(
        'too-deep',
        `Cannot decode the ${what}: it nests too deeply for the msgpack parser (depthMax ${limits.depthMax} is above what it can follow). Lower depthMax to a few thousand at most.`,
        { depthMax: limits.depthMax },
        cause,
      );
    }
    throw failure(
      'malformed',
      `Cannot decode the ${what}: msgpack parsing failed (${String(cause)}). Check what produced the bytes.`,
      {},
      cause,
    );
  }
}

type DecodeReason =
  | 'too-large'
  | 'too-deep'
  | 'truncated'
  | 'trailing-bytes'
  | 'extension-type'
  | 'forbidden-key'
  | 'invalid-key'
  | 'malformed'
  | 'checksum'
  | 'version';

function failure(
  reason: DecodeReason,
  message: string,
  details: Record<string, unknown> = {},
  cause?: unknown,
): CodecError {
  return new CodecError('DECODE_FAILED', message, {
    details: { reason, ...details },
    ...(cause === undefined ? {} : { cause }),
  });
}

function assertBytes(bytes: unknown): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array)) {
    const got =
      bytes === null
        ? 'null'
        : typeof bytes === 'object'
          ? (bytes.constructor?.name ?? 'object')
          : typeof bytes;
    throw failure(
      'malformed',
      `Expected a Uint8Array (or Buffer) to decode, got ${got}. Pass the raw bytes as received.`,
    );
  }
}

function resolveLimits(
  limits: Partial<DecodeLimits> | undefined,
): DecodeLimits {
  if (limits === undefined) return defaultDecodeLimits;
  const resolved = {
    bytesMax: limits.bytesMax ?? defaultDecodeLimits.bytesMax,
    depthMax: limits.depthMax ?? defaultDecodeLimits.depthMax,
  };
  // A NaN or negative limit would silently disable the check it names.
  if (!(resolved.bytesMax >= 0) || !(resolved.depthMax >= 0)) {
    throw new ConfigError(
      `Decode limits must be non-negative numbers, got bytesMax ${String(limits.bytesMax)} and depthMax ${String(limits.depthMax)}.`,
      { details: { ...resolved } },
    );
  }
  return resolved;
}

function hex32(value: number): string {
  return `0x${(value >>> 0).toString(16).padStart(8, '0')}`;
}
