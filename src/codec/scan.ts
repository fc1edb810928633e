/**
 * The structural pre-scan run over untrusted msgpack bytes before msgpackr
 * sees them. msgpackr decodes recursively (it overflows the stack near 4,500
 * nested arrays), trusts declared lengths, and decodes its own extensions
 * (records, Date, Set, Error, RegExp, bigint) whatever its options say. This
 * walker is iterative, allocates nothing per item, and accepts only the
 * plain-data subset of msgpack, so what reaches msgpackr is known to be safe.
 *
 * @internal Shared with `codec.ts` only.
 */

/** Why the scan refused the bytes; a subset of the codec's decode reasons. */
export type ScanReason =
  | 'too-deep'
  | 'truncated'
  | 'trailing-bytes'
  | 'extension-type'
  | 'forbidden-key'
  | 'invalid-key'
  | 'malformed';

/** @internal */
export interface ScanFailure {
  reason: ScanReason;
  /** Byte offset (from the start of the scanned range) of the offending item. */
  offset: number;
  /** A full sentence: what was wrong and what to do. */
  message: string;
}

// The scan is synchronous and calls out to nothing, so one growable stack
// shared by every call is safe and spares an allocation per decode. Each
// level holds the items (array) or entries (map) still expected in an open
// container, and what comes next in it.
const ARRAY = 0;
const MAP_KEY = 1;
const MAP_VALUE = 2;
let remaining = new Uint32Array(64);
let next = new Uint8Array(64);

const PROTO = [0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f]; // "__proto__"
const CONSTRUCTOR = [
  0x63, 0x6f, 0x6e, 0x73, 0x74, 0x72, 0x75, 0x63, 0x74, 0x6f, 0x72,
]; // "constructor"

/**
 * Scans exactly one msgpack value in `bytes[start, end)`. Returns undefined
 * when the bytes hold one complete plain-data value and nothing after it,
 * else the first problem found.
 *
 * @internal
 */
export function scanMsgpack(
  bytes: Uint8Array,
  start: number,
  end: number,
  depthMax: number,
): ScanFailure | undefined {
  let pos = start;
  let sp = 0;
  for (;;) {
    if (pos >= end) {
      return truncated(
        start,
        pos,
        sp === 0 ? 'an empty message' : 'an array or map',
      );
    }
    const token = bytes[pos] as number;
    const left = end - pos;
    let count = -1; // >= 0 when this item opens an array or map
    let header = 0;
    let map = false;

    if (sp > 0 && next[sp - 1] === MAP_KEY) {
      // A map key: only strings, and never the names that pollute prototypes.
      let length: number;
      if (token >= 0xa0 && token <= 0xbf) {
        length = token & 0x1f;
        header = 1;
      } else if (token === 0xd9 && left >= 2) {
        length = bytes[pos + 1] as number;
        header = 2;
      } else if (token === 0xda && left >= 3) {
        length = u16(bytes, pos + 1);
        header = 3;
      } else if (token === 0xdb && left >= 5) {
        length = u32(bytes, pos + 1);
        header = 5;
      } else if (token >= 0xd9 && token <= 0xdb) {
        return truncated(start, pos, 'a string header');
      } else if (
        (token >= 0xc4 && token <= 0xc9) ||
        (token >= 0xd4 && token <= 0xd8)
      ) {
        // msgpackr's bundled strings put an extension where a key belongs;
        // an extension is reported as such wherever it appears.
        return refuseExtension(bytes, pos, left, start);
      } else {
        return fail(
          start,
          'invalid-key',
          pos,
          `A map key at offset ${pos - start} is ${describe(token)}, not a string; only string keys are plain data. Encode objects with string keys.`,
        );
      }
      if (length > left - header) return truncated(start, pos, 'a map key');
      const keyStart = pos + header;
      if (
        (length === 9 && equalsAt(bytes, keyStart, PROTO)) ||
        (length === 11 && equalsAt(bytes, keyStart, CONSTRUCTOR))
      ) {
        const key = length === 9 ? '__proto__' : 'constructor';
        return fail(
          start,
          'forbidden-key',
          pos,
          `A map key at offset ${pos - start} is "${key}", which is refused because it enables prototype pollution. Rename the key.`,
        );
      }
      pos = keyStart + length;
    } else if (token <= 0x7f || token >= 0xe0) {
      pos += 1; // positive and negative fixint
    } else if (token <= 0x8f) {
      count = token & 0x0f;
      header = 1;
      map = true;
    } else if (token <= 0x9f) {
      count = token & 0x0f;
      header = 1;
    } else if (token <= 0xbf) {
      const length = token & 0x1f;
      if (length > left - 1) return truncated(start, pos, 'a string');
      pos += 1 + length;
    } else {
      switch (token) {
        case 0xc0: // nil
        case 0xc2: // false
        case 0xc3: // true
          pos += 1;
          break;
        case 0xc1:
          return fail(
            start,
            'malformed',
            pos,
            `Byte 0xc1 at offset ${pos - start} is never used by msgpack; the bytes are not msgpack. Check what produced them.`,
          );
        case 0xc4:
        case 0xc5:
        case 0xc6:
          return refuseExtension(bytes, pos, left, start);
        case 0xd4:
          // msgpackr writes undefined as fixext1 type 0 with a zero byte; it
          // is the one extension accepted, and only in exactly that form.
          if (left >= 3 && bytes[pos + 1] === 0 && bytes[pos + 2] === 0) {
            pos += 3;
            break;
          }
          return refuseExtension(bytes, pos, left, start);
        case 0xc7:
        case 0xc8:
        case 0xc9:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
          return refuseExtension(bytes, pos, left, start);
        case 0xca: // float32: refuse NaN and Infinity, which are not plain data
          if (left < 5) return truncated(start, pos, 'a float');
          if (
            ((bytes[pos + 1] as number) & 0x7f) === 0x7f &&
            ((bytes[pos + 2] as number) & 0x80) === 0x80
          ) {
            return nonFinite(pos, start);
          }
          pos += 5;
          break;
        case 0xcb:
          if (left < 9) return truncated(start, pos, 'a float');
          if (
            ((bytes[pos + 1] as number) & 0x7f) === 0x7f &&
            ((bytes[pos + 2] as number) & 0xf0) === 0xf0
          ) {
            return nonFinite(pos, start);
          }
          pos += 9;
          break;
        case 0xcc:
        case 0xd0:
          if (left < 2) return truncated(start, pos, 'an integer');
          pos += 2;
          break;
        case 0xcd:
        case 0xd1:
          if (left < 3) return truncated(start, pos, 'an integer');
          pos += 3;
          break;
        case 0xce:
        case 0xd2:
          if (left < 5) return truncated(start, pos, 'an integer');
          pos += 5;
          break;
        case 0xcf:
        case 0xd3: {
          // 64-bit integers decode as numbers, so only safe integers restore
          // exactly; anything larger would be silently rounded.
          if (left < 9) return truncated(start, pos, 'an integer');
          const high = u32(bytes, pos + 1);
          const signedHigh =
            token === 0xd3 && high >= 0x80000000 ? high - 0x100000000 : high;
          if (
            !Number.isSafeInteger(
              signedHigh * 0x100000000 + u32(bytes, pos + 5),
            )
          ) {
            return fail(
              start,
              'malformed',
              pos,
              `The 64-bit integer at offset ${pos - start} is outside Number.MAX_SAFE_INTEGER and cannot be decoded exactly; send it as a string instead.`,
            );
          }
          pos += 9;
          break;
        }
        case 0xd9: {
          if (left < 2) return truncated(start, pos, 'a string header');
          const length = bytes[pos + 1] as number;
          if (length > left - 2) return truncated(start, pos, 'a string');
          pos += 2 + length;
          break;
        }
        case 0xda: {
          if (left < 3) return truncated(start, pos, 'a string header');
          const length = u16(bytes, pos + 1);
          if (length > left - 3) return truncated(start, pos, 'a string');
          pos += 3 + length;
          break;
        }
        case 0xdb: {
          if (left < 5) return truncated(start, pos, 'a string header');
          const length = u32(bytes, pos + 1);
          if (length > left - 5) return truncated(start, pos, 'a string');
          pos += 5 + length;
          break;
        }
        case 0xdc:
        case 0xde:
          if (left < 3) return truncated(start, pos, 'an array or map header');
          count = u16(bytes, pos + 1);
          header = 3;
          map = token === 0xde;
          break;
        case 0xdd:
        case 0xdf:
          if (left < 5) return truncated(start, pos, 'an array or map header');
          count = u32(bytes, pos + 1);
          header = 5;
          map = token === 0xdf;
          break;
        default:
          // Every byte from 0xc0 to 0xdf has a case above; reaching here is a
          // bug in this table, and looping without advancing would hang.
          throw new Error(
            `scanMsgpack: unhandled token 0x${token.toString(16)}`,
          );
      }
    }

    if (count >= 0) {
      if (sp + 1 > depthMax) {
        return fail(
          start,
          'too-deep',
          pos,
          `Arrays and maps nest deeper than depthMax ${depthMax} at offset ${pos - start}. Flatten the data or raise depthMax.`,
        );
      }
      // Every item takes at least one byte, so a declared count larger than
      // the bytes left is refused here, before anything is allocated for it.
      const items = map ? count * 2 : count;
      if (items > left - header) {
        return truncated(
          start,
          pos,
          map
            ? `a map declaring ${count} entries`
            : `an array declaring ${count} items`,
        );
      }
      pos += header;
      if (count > 0) {
        if (sp === remaining.length) grow();
        remaining[sp] = count;
        next[sp] = map ? MAP_KEY : ARRAY;
        sp += 1;
        continue;
      }
    }

    // One item is complete: count it off, closing every container it fills.
    for (;;) {
      if (sp === 0) {
        if (pos !== end) {
          return fail(
            start,
            'trailing-bytes',
            pos,
            `${end - pos} bytes follow the end of the value at offset ${pos - start}; a message holds exactly one value. Check the framing of what produced it.`,
          );
        }
        return undefined;
      }
      const top = sp - 1;
      const state = next[top];
      if (state === MAP_KEY) {
        next[top] = MAP_VALUE;
        break;
      }
      if (state === MAP_VALUE) next[top] = MAP_KEY;
      const rest = (remaining[top] as number) - 1;
      if (rest > 0) {
        remaining[top] = rest;
        break;
      }
      sp = top;
    }
  }
}

function fail(
  start: number,
  reason: ScanReason,
  at: number,
  message: string,
): ScanFailure {
  return { reason, offset: at - start, message };
}

function truncated(start: number, at: number, what: string): ScanFailure {
  return fail(
    start,
    'truncated',
    at,
    `The bytes end inside ${what} at offset ${at - start}: the message is truncated or declares a length larger than it holds. Resend the complete message.`,
  );
}

function grow(): void {
  const grownRemaining = new Uint32Array(remaining.length * 2);
  grownRemaining.set(remaining);
  const grownNext = new Uint8Array(next.length * 2);
  grownNext.set(next);
  remaining = grownRemaining;
  next = grownNext;
}

/** Refuses msgpack ext and bin values, naming the ext type: neither is plain data. */
function refuseExtension(
  bytes: Uint8Array,
  pos: number,
  left: number,
  start: number,
): ScanFailure {
  const token = bytes[pos] as number;
  if (token >= 0xc4 && token <= 0xc6) {
    return {
      reason: 'extension-type',
      offset: pos - start,
      message: `Binary data (${describe(token)}) at offset ${pos - start} is not plain data; send an array of numbers or a base64 string instead.`,
    };
  }
  // The type byte follows the length field: none for fixext, 1, 2 or 4
  // bytes for ext 8, 16 and 32.
  const typeAt =
    pos + (token === 0xc7 ? 2 : token === 0xc8 ? 3 : token === 0xc9 ? 5 : 1);
  const type = typeAt < pos + left ? (bytes[typeAt] as number) : undefined;
  const shown =
    type === undefined
      ? 'an extension'
      : `extension type ${type > 127 ? type - 256 : type}`;
  return {
    reason: 'extension-type',
    offset: pos - start,
    message: `The value at offset ${pos - start} is msgpack ${shown} (${describe(bytes[pos] as number)}), which is not plain data: msgpack extensions (msgpackr records, Date, Set, RegExp, Error, bigint and the like) are refused. Encode plain data with shardchart's encode().`,
  };
}

function nonFinite(pos: number, start: number): ScanFailure {
  return {
    reason: 'malformed',
    offset: pos - start,
    message: `The float at offset ${pos - start} is NaN or Infinity, which is not plain data; send null or a sentinel string instead.`,
  };
}

function describe(token: number): string {
  const hex = `0x${token.toString(16).padStart(2, '0')}`;
  if (token <= 0x7f || token >= 0xe0) return `an integer (${hex})`;
  if (token <= 0x8f || token === 0xde || token === 0xdf)
    return `a map (${hex})`;
  if (token <= 0x9f || token === 0xdc || token === 0xdd)
    return `an array (${hex})`;
  if (token <= 0xbf) return `a string (${hex})`;
  if (token === 0xc0) return 'nil (0xc0)';
  if (token === 0xc2 || token === 0xc3) return `a boolean (${hex})`;
  if (token >= 0xc4 && token <= 0xc6) return `bin (${hex})`;
  if (token === 0xca || token === 0xcb) return `a float (${hex})`;
  if ((token >= 0xc7 && token <= 0xc9) || (token >= 0xd4 && token <= 0xd8)) {
    return `ext (${hex})`;
  }
  return `byte ${hex}`;
}

function u16(bytes: Uint8Array, at: number): number {
  return ((bytes[at] as number) << 8) | (bytes[at + 1] as number);
}

function u32(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at] as number) * 0x1000000 +
    (((bytes[at + 1] as number) << 16) |
      ((bytes[at + 2] as number) << 8) |
      (bytes[at + 3] as number))
  );
}

function equalsAt(bytes: Uint8Array, at: number, expected: number[]): boolean {
  for (let i = 0; i < expected.length; i++) {
    if (bytes[at + i] !== expected[i]) return false;
  }
  return true;
}
