import * as zlib from 'node:zlib';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  decode,
  decodeEnvelope,
  decodeRecord,
  defaultDecodeLimits,
  encode,
  encodeEnvelope,
  encodeRecord,
  ENVELOPE_VERSION,
} from '../../src/codec/index.js';
import { ConfigError } from '../../src/errors.js';
import {
  decodeFailure,
  encodeFailure,
  hasForbiddenKey,
  viaJson,
} from './helpers.js';

describe('round trips', () => {
  it('codec - arbitrary JSON values round-trip through encode and decode', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        if (hasForbiddenKey(value)) {
          encodeFailure(() => encode(value));
          return;
        }
        expect(decode(encode(value))).toStrictEqual(viaJson(value));
      }),
      { numRuns: 500 },
    );
  });

  it('codec - arbitrary JSON values round-trip through envelopes', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        fc.pre(!hasForbiddenKey(value));
        const bytes = encodeEnvelope(value);
        expect(bytes[0]).toBe(ENVELOPE_VERSION);
        expect(decodeEnvelope(bytes)).toStrictEqual(viaJson(value));
      }),
      { numRuns: 500 },
    );
  });

  it('codec - arbitrary JSON values round-trip through records', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        fc.pre(!hasForbiddenKey(value));
        expect(decodeRecord(encodeRecord(value))).toStrictEqual(viaJson(value));
      }),
      { numRuns: 500 },
    );
  });

  it('codec - strings of any Unicode text round-trip', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (text) => {
        expect(decode(encode({ text }))).toStrictEqual({ text });
      }),
    );
  });

  it('codec - undefined survives in objects, arrays and at the top', () => {
    const value = { a: undefined, list: [1, undefined, 3] };
    const back = decode(encode(value)) as typeof value;
    expect(back).toStrictEqual(value);
    expect(Object.keys(back)).toEqual(['a', 'list']);
    expect(decode(encode(undefined))).toBeUndefined();
  });

  it('codec - integers at every width and floats round-trip exactly', () => {
    const numbers = [
      0,
      1,
      127,
      128,
      255,
      256,
      65_535,
      65_536,
      2 ** 32 - 1,
      2 ** 32,
      -1,
      -32,
      -33,
      -128,
      -129,
      -32_768,
      -32_769,
      -(2 ** 31),
      -(2 ** 31) - 1,
      Number.MAX_SAFE_INTEGER,
      Number.MIN_SAFE_INTEGER,
      0.1,
      -1.5e300,
      5e-324,
    ];
    expect(decode(encode(numbers))).toStrictEqual(numbers);
  });

  it('codec - -0 comes back as 0, as it does through JSON', () => {
    expect(Object.is(decode(encode(-0)), 0)).toBe(true);
  });

  it('codec - an object with more than 65,535 keys round-trips', () => {
    const wide: Record<string, number> = {};
    for (let i = 0; i < 70_000; i++) wide[`k${i}`] = i;
    expect(decode(encode(wide), { bytesMax: 4 * 1_048_576 })).toStrictEqual(
      wide,
    );
  });

  it('codec - null-prototype objects encode, and decode as ordinary objects', () => {
    const bare = Object.create(null) as Record<string, unknown>;
    bare['x'] = 1;
    const back = decode(encode(bare)) as object;
    expect(back).toStrictEqual({ x: 1 });
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
  });

  it('codec - encoded buffers stay intact when more values are encoded after them', () => {
    const first = encodeRecord({ n: 1, text: 'first' });
    const copy = Uint8Array.from(first);
    for (let i = 0; i < 2_000; i++)
      encodeRecord({ n: i, text: 'x'.repeat(i % 300) });
    expect(Uint8Array.from(first)).toEqual(copy);
    expect(decodeRecord(first)).toEqual({ n: 1, text: 'first' });
  });

  it('codec - after a large value, small encodings do not share (and pin) its large buffer', () => {
    const large = { text: 'x'.repeat(2_000_000) };
    const big = encodeRecord(large);
    const small = encodeRecord({ n: 1 });
    expect(small.buffer.byteLength).toBeLessThanOrEqual(262_144);
    expect(big.buffer).not.toBe(small.buffer);
    expect(decodeRecord(big)).toStrictEqual(large);
    expect(decodeRecord(small)).toStrictEqual({ n: 1 });
  });
});

describe('encode', () => {
  it('encode - refused values give ENCODE_FAILED with the problem kind and path', () => {
    const err = encodeFailure(() => encode({ type: 'PAY', at: new Date() }));
    expect(err.details).toMatchObject({
      reason: 'not-serializable',
      path: '$.at',
    });
    expect(err.message).toMatch(/\$\.at.*toISOString/);
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(encodeFailure(() => encodeRecord(cyclic)).details).toMatchObject({
      reason: 'cycle',
    });
    expect(
      encodeFailure(() => encodeEnvelope({ f: () => 1 })).details,
    ).toMatchObject({
      reason: 'not-serializable',
      path: '$.f',
    });
  });

  it('encode - a value nested deeper than a record may hold is refused', () => {
    let value: unknown = 1;
    for (let i = 0; i < 300; i++) value = [value];
    expect(encodeFailure(() => encode(value)).details).toMatchObject({
      reason: 'too-deep',
    });
  });

  it('encode - Map and Set are refused at encode time instead of being written lossily', () => {
    encodeFailure(() => encode(new Map([['a', 1]])));
    encodeFailure(() => encode({ tags: new Set(['a']) }));
  });
});

describe('decode limits', () => {
  it('decode - defaults are 1 MiB and 64 levels', () => {
    expect(defaultDecodeLimits).toEqual({ bytesMax: 1_048_576, depthMax: 64 });
    expect(Object.isFrozen(defaultDecodeLimits)).toBe(true);
  });

  it('decode - bytes over bytesMax give too-large before anything is parsed', () => {
    const bytes = encode('x'.repeat(100));
    expect(decode(bytes, { bytesMax: bytes.length })).toBe('x'.repeat(100));
    expect(
      decodeFailure(() => decode(bytes, { bytesMax: bytes.length - 1 })),
    ).toBe('too-large');
    const big = new Uint8Array(defaultDecodeLimits.bytesMax + 1);
    expect(decodeFailure(() => decode(big))).toBe('too-large');
  });

  it('decode - nesting exactly depthMax decodes and one more level is too-deep', () => {
    let value: unknown = 'leaf';
    for (let i = 0; i < 64; i++) value = i % 2 === 0 ? [value] : { k: value };
    expect(decode(encode(value))).toStrictEqual(value);
    expect(decodeFailure(() => decode(encode([value])))).toBe('too-deep');
    expect(decode(encode([value]), { depthMax: 65 })).toStrictEqual([value]);
  });

  it('decode - a NaN or negative limit is a ConfigError, not a silently disabled check', () => {
    const bytes = encode(1);
    expect(() => decode(bytes, { bytesMax: Number.NaN })).toThrow(ConfigError);
    expect(() => decode(bytes, { depthMax: -1 })).toThrow(ConfigError);
  });
});

describe('envelopes', () => {
  it('envelope - an unknown version byte gives reason version', () => {
    const bytes = encodeEnvelope({ type: 'PING' });
    bytes[0] = ENVELOPE_VERSION + 1;
    expect(decodeFailure(() => decodeEnvelope(bytes))).toBe('version');
  });

  it('envelope - an empty envelope is truncated, and one with only a version byte too', () => {
    expect(decodeFailure(() => decodeEnvelope(new Uint8Array(0)))).toBe(
      'truncated',
    );
    expect(
      decodeFailure(() => decodeEnvelope(Uint8Array.of(ENVELOPE_VERSION))),
    ).toBe('truncated');
  });

  it('envelope - limits apply to the body', () => {
    const bytes = encodeEnvelope([[[1]]]);
    expect(decodeEnvelope(bytes, { depthMax: 3 })).toEqual([[[1]]]);
    expect(decodeFailure(() => decodeEnvelope(bytes, { depthMax: 2 }))).toBe(
      'too-deep',
    );
    expect(decodeFailure(() => decodeEnvelope(bytes, { bytesMax: 3 }))).toBe(
      'too-large',
    );
  });
});

describe('records', () => {
  it('record - layout is version 1, big-endian CRC-32 of the payload, then msgpack', () => {
    const record = encodeRecord({ seq: 1 });
    const payload = encode({ seq: 1 });
    expect(record[0]).toBe(1);
    expect(Buffer.from(record.subarray(5))).toEqual(Buffer.from(payload));
    expect(Buffer.from(record.subarray(1, 5)).readUInt32BE(0)).toBe(
      zlib.crc32(payload),
    );
  });

  it('record - shorter than the header is truncated', () => {
    for (const length of [0, 1, 4, 5]) {
      expect(decodeFailure(() => decodeRecord(new Uint8Array(length)))).toBe(
        'truncated',
      );
    }
  });

  it('record - an unknown format version gives reason version', () => {
    const record = encodeRecord('x');
    record[0] = 2;
    expect(decodeFailure(() => decodeRecord(record))).toBe('version');
  });

  it('record - a payload that does not match its checksum gives reason checksum', () => {
    const record = encodeRecord({ amount: 100 });
    record[record.length - 1] = (record[record.length - 1] as number) ^ 0x01;
    expect(decodeFailure(() => decodeRecord(record))).toBe('checksum');
  });

  it('record - a record inside a larger buffer decodes from its own view', () => {
    const record = encodeRecord({ a: 'b' });
    const frame = new Uint8Array(record.length + 20);
    frame.set(record, 10);
    expect(decodeRecord(frame.subarray(10, 10 + record.length))).toEqual({
      a: 'b',
    });
  });
});
