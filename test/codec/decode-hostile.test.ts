/**
 * decode treats bytes as hostile. These tests feed it random, truncated,
 * corrupted, deeply nested and oversized input and msgpackr's own
 * extensions, and check that the only outcome besides plain data is a
 * CodecError with code DECODE_FAILED.
 */
import * as zlib from 'node:zlib';

import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';

import {
  checkPlainData,
  decode,
  decodeEnvelope,
  decodeRecord,
  encode,
  encodeEnvelope,
  encodeRecord,
} from '../../src/codec/index.js';
import {
  decodeFailure,
  decodesOrFails,
  hasForbiddenKey,
  hex,
  str,
} from './helpers.js';

const plainJson = fc.jsonValue().filter((value) => !hasForbiddenKey(value));

/** Bytes biased toward msgpack headers, so the fuzz reaches deep into the decoder. */
const msgpackish = fc
  .uint8Array({ maxLength: 200 })
  .chain((noise) =>
    fc
      .array(
        fc.oneof(
          fc.integer({ min: 0, max: 255 }),
          fc.constantFrom(
            0x91,
            0x92,
            0x81,
            0x82,
            0xa1,
            0xa9,
            0xc0,
            0xc1,
            0xc4,
            0xc7,
            0xca,
            0xcb,
            0xcf,
            0xd3,
            0xd4,
            0xd9,
            0xdb,
            0xdc,
            0xdd,
            0xde,
            0xdf,
            0xff,
          ),
        ),
        { maxLength: 200 },
      )
      .map((header) => Uint8Array.from([...header, ...noise])),
  );

describe('decode - fuzz', () => {
  it('decode - random bytes give plain data or DECODE_FAILED, nothing else', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ maxLength: 300 }), msgpackish),
        (bytes) => {
          let value: unknown;
          if (decodesOrFails(() => (value = decode(bytes)))) {
            // Paired check: whatever decode accepts is plain data encode accepts.
            expect(
              checkPlainData(value, { bytesMax: 1e9, depthMax: 64 }).problem,
            ).toBeUndefined();
            expect(() => encode(value)).not.toThrow();
          }
        },
      ),
      { numRuns: 5_000 },
    );
  });

  it('decode - random bytes fed to envelopes and records never escape as another error', () => {
    fc.assert(
      fc.property(msgpackish, (bytes) => {
        decodesOrFails(() => decodeEnvelope(bytes));
        decodesOrFails(() => decodeRecord(bytes));
        decodesOrFails(() => decodeEnvelope(Uint8Array.of(1, ...bytes)));
      }),
      { numRuns: 2_000 },
    );
  });

  it('decode - every truncation of a valid encoding is truncated', () => {
    fc.assert(
      fc.property(plainJson, (value) => {
        const bytes = encode(value);
        for (let length = 0; length < bytes.length; length++) {
          expect(decodeFailure(() => decode(bytes.subarray(0, length)))).toBe(
            'truncated',
          );
        }
      }),
      { numRuns: 200 },
    );
  });

  it('decode - every truncation of an envelope is truncated', () => {
    fc.assert(
      fc.property(plainJson, (value) => {
        const bytes = encodeEnvelope(value);
        for (let length = 0; length < bytes.length; length++) {
          expect(
            decodeFailure(() => decodeEnvelope(bytes.subarray(0, length))),
          ).toBe('truncated');
        }
      }),
      { numRuns: 200 },
    );
  });

  it('decode - every truncation of a record fails on length or checksum', () => {
    fc.assert(
      fc.property(plainJson, (value) => {
        const bytes = encodeRecord(value);
        for (let length = 0; length < bytes.length; length++) {
          expect(['truncated', 'checksum']).toContain(
            decodeFailure(() => decodeRecord(bytes.subarray(0, length))),
          );
        }
      }),
      { numRuns: 200 },
    );
  });

  it('decode - every single-byte corruption of a record is caught by version or checksum', () => {
    fc.assert(
      fc.property(
        plainJson,
        fc.integer({ min: 1, max: 255 }),
        (value, flip) => {
          const record = Uint8Array.from(encodeRecord(value));
          for (let at = 0; at < record.length; at++) {
            const corrupt = Uint8Array.from(record);
            corrupt[at] = (corrupt[at] as number) ^ flip;
            const reason = decodeFailure(() => decodeRecord(corrupt));
            expect(reason).toBe(at === 0 ? 'version' : 'checksum');
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('decode - single-byte corruptions of bare msgpack decode or fail with DECODE_FAILED', () => {
    fc.assert(
      fc.property(
        plainJson,
        fc.integer({ min: 0, max: 255 }),
        (value, byte) => {
          const bytes = Uint8Array.from(encode(value));
          for (let at = 0; at < bytes.length; at++) {
            const corrupt = Uint8Array.from(bytes);
            corrupt[at] = byte;
            decodesOrFails(() => decode(corrupt));
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('decode - depth and declared lengths', () => {
  it('decode - 100,000 nested arrays give DECODE_FAILED too-deep, not a stack overflow', () => {
    const bytes = new Uint8Array(100_001).fill(0x91);
    bytes[100_000] = 0xc0;
    expect(decodeFailure(() => decode(bytes))).toBe('too-deep');
    expect(
      decodeFailure(() => decodeEnvelope(Uint8Array.of(1, ...bytes))),
    ).toBe('too-deep');
  });

  it('decode - 100,000 nested maps give too-deep', () => {
    const level = [0x81, ...str('k')];
    const bytes = Uint8Array.from([
      ...Array.from({ length: 100_000 }, () => level).flat(),
      0xc0,
    ]);
    expect(decodeFailure(() => decode(bytes))).toBe('too-deep');
  });

  it('decode - 100,000 nested arrays under a huge depthMax still give DECODE_FAILED, never a RangeError', () => {
    const bytes = new Uint8Array(100_001).fill(0x91);
    bytes[100_000] = 0xc0;
    expect(decodeFailure(() => decode(bytes, { depthMax: 1e9 }))).toBe(
      'too-deep',
    );
    // msgpackr is left in a usable state afterwards.
    expect(decode(encode({ still: ['fine'] }))).toEqual({ still: ['fine'] });
  });

  it('decode - a record payload of 100,000 nested arrays with a valid checksum gives too-deep', () => {
    const payload = new Uint8Array(100_001).fill(0x91);
    payload[100_000] = 0xc0;
    expect(decodeFailure(() => decodeRecord(withRecordHeader(payload)))).toBe(
      'too-deep',
    );
  });

  const hugeDeclarations: Array<[string, string]> = [
    ['array32 of 2^32-1 elements', 'dd ffffffff 0000000000'],
    ['map32 of 2^32-1 entries', 'df ffffffff 0000000000'],
    ['array16 of 65,535 elements', 'dc ffff c0c0'],
    ['map16 of 65,535 entries', 'de ffff a1 61 c0'],
    ['str32 of 4 GiB', 'db ffffffff 6161616161'],
    ['str16 of 64 KiB', 'da ffff 6161'],
    ['str8 of 255 bytes', 'd9 ff 6161'],
    ['a fixstr longer than the input', 'a5 6161'],
    ['a float64 cut short', 'cb 3ff0'],
    ['an int64 cut short', 'd3 0000'],
  ];
  for (const [name, bytes] of hugeDeclarations) {
    it(`decode - ${name} in a few bytes is truncated, without allocating`, () => {
      const before = process.memoryUsage().arrayBuffers;
      expect(decodeFailure(() => decode(hex(bytes)))).toBe('truncated');
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(
        1_048_576,
      );
    });
  }

  it('decode - a map32 declaring 2^32-1 entries inside an array is truncated', () => {
    expect(decodeFailure(() => decode(hex('91 df ffffffff')))).toBe(
      'truncated',
    );
  });

  it('decode - bytes after the value are trailing-bytes', () => {
    expect(
      decodeFailure(() => decode(Uint8Array.of(...encode({ a: 1 }), 0xc0))),
    ).toBe('trailing-bytes');
    expect(decodeFailure(() => decode(hex('01 02')))).toBe('trailing-bytes');
  });

  it('decode - the never-used byte 0xc1 is malformed', () => {
    expect(decodeFailure(() => decode(hex('c1')))).toBe('malformed');
    expect(decodeFailure(() => decode(hex('92 01 c1')))).toBe('malformed');
  });

  it('decode - NaN and Infinity floats are malformed, since they are not plain data', () => {
    const nan64 = Buffer.alloc(9);
    nan64[0] = 0xcb;
    nan64.writeDoubleBE(Number.NaN, 1);
    const inf32 = Buffer.alloc(5);
    inf32[0] = 0xca;
    inf32.writeFloatBE(-Infinity, 1);
    expect(decodeFailure(() => decode(nan64))).toBe('malformed');
    expect(decodeFailure(() => decode(inf32))).toBe('malformed');
    expect(decode(hex('ca 3fc00000'))).toBe(1.5);
  });

  it('decode - 64-bit integers decode as numbers when safe and are malformed when not', () => {
    expect(decode(hex('cf 001fffffffffffff'))).toBe(Number.MAX_SAFE_INTEGER);
    expect(decode(hex('d3 ffe0000000000001'))).toBe(Number.MIN_SAFE_INTEGER);
    expect(decode(hex('d3 ffffffffffffffff'))).toBe(-1);
    expect(decodeFailure(() => decode(hex('cf 0020000000000000')))).toBe(
      'malformed',
    );
    expect(decodeFailure(() => decode(hex('d3 ffe0000000000000')))).toBe(
      'malformed',
    );
    expect(decodeFailure(() => decode(hex('cf ffffffffffffffff')))).toBe(
      'malformed',
    );
  });

  it('decode - input that is not a Uint8Array is malformed', () => {
    expect(decodeFailure(() => decode('abc' as unknown as Uint8Array))).toBe(
      'malformed',
    );
    expect(
      decodeFailure(() => decodeRecord(null as unknown as Uint8Array)),
    ).toBe('malformed');
  });
});

describe('decode - msgpackr extensions', () => {
  const permissive = new Packr({
    useRecords: true,
    moreTypes: true,
    useBigIntExtension: true,
  });
  const cloning = new Packr({ structuredClone: true });
  const bundling = new Packr({ bundleStrings: true, useRecords: false });
  const shared = { sku: 'A-1' };

  const cases: Array<[string, () => Uint8Array]> = [
    ['a record (useRecords)', () => permissive.pack({ a: 1, b: 2 })],
    ['records nested in an array', () => permissive.pack([{ a: 1 }, { a: 2 }])],
    ['a bigint beyond 64 bits', () => permissive.pack(2n ** 100n)],
    ['a Date', () => permissive.pack(new Date(0))],
    [
      'a Date inside a map',
      () => new Packr({ useRecords: false }).pack({ at: new Date(0) }),
    ],
    ['a RegExp', () => permissive.pack(/a+b/gi)],
    ['an Error', () => permissive.pack(new TypeError('boom'))],
    ['a Set', () => permissive.pack(new Set([1, 2]))],
    ['a typed array', () => permissive.pack(new Float64Array([1.5]))],
    [
      'a shared reference (structuredClone)',
      () => cloning.pack([shared, shared]),
    ],
    [
      'bundled strings',
      () => bundling.pack({ text: 'hello world, '.repeat(20) }),
    ],
    ['a Buffer (bin)', () => permissive.pack(Buffer.from('hi'))],
    ['a custom ext 32 value', () => hex('c9 00000002 05 0102')],
    ['a fixext1 that is not exactly undefined', () => hex('d4 00 01')],
  ];
  for (const [name, make] of cases) {
    it(`decode - ${name} encoded by a permissive Packr is refused as extension-type`, () => {
      const bytes = make();
      expect(decodeFailure(() => decode(bytes))).toBe('extension-type');
      expect(decodeFailure(() => decodeRecord(withRecordHeader(bytes)))).toBe(
        'extension-type',
      );
    });
  }

  it('decode - a Map with non-string keys is refused as invalid-key', () => {
    expect(
      decodeFailure(() => decode(permissive.pack(new Map([[1, 'one']])))),
    ).toBe('invalid-key');
    expect(decodeFailure(() => decode(hex('81 91 01 c0')))).toBe('invalid-key');
    expect(decodeFailure(() => decode(hex('81 c0 c0')))).toBe('invalid-key');
  });

  it('decode - a Map with string keys is an ordinary msgpack map and decodes as a plain object', () => {
    expect(decode(permissive.pack(new Map([['a', 1]])))).toStrictEqual({
      a: 1,
    });
  });

  it('decode - a bigint within 64 bits is written as int64 by msgpackr: a number when safe, else malformed', () => {
    expect(decode(permissive.pack(42n))).toBe(42);
    expect(decodeFailure(() => decode(permissive.pack(2n ** 60n)))).toBe(
      'malformed',
    );
  });

  it('decode - the exact bytes msgpackr writes for undefined are accepted', () => {
    expect(decode(hex('d4 00 00'))).toBeUndefined();
    expect(decode(hex('92 d40000 01'))).toStrictEqual([undefined, 1]);
  });
});

describe('decode - prototype pollution', () => {
  /** `{ "__proto__": { "polluted": true } }`, built by hand as msgpackr would never write it. */
  const protoMap = Uint8Array.from([
    0x81,
    ...str('__proto__'),
    0x81,
    ...str('polluted'),
    0xc3,
  ]);

  it('decode - a map with key __proto__ is refused as forbidden-key', () => {
    expect(decodeFailure(() => decode(protoMap))).toBe('forbidden-key');
    expect(
      decodeFailure(() => decodeEnvelope(Uint8Array.of(1, ...protoMap))),
    ).toBe('forbidden-key');
    expect(decodeFailure(() => decodeRecord(withRecordHeader(protoMap)))).toBe(
      'forbidden-key',
    );
  });

  it('decode - __proto__ nested deep in arrays and maps is refused', () => {
    const nested = Uint8Array.from([
      0x92,
      0x01,
      0x81,
      ...str('a'),
      ...protoMap,
    ]);
    expect(decodeFailure(() => decode(nested))).toBe('forbidden-key');
  });

  it('decode - a map with key constructor is refused, in fixstr and str8 form', () => {
    const fix = Uint8Array.from([
      0x81,
      ...str('constructor'),
      0x81,
      ...str('prototype'),
      0x80,
    ]);
    const str8 = Uint8Array.from([
      0x81,
      0xd9,
      11,
      ...Buffer.from('constructor'),
      0xc0,
    ]);
    expect(decodeFailure(() => decode(fix))).toBe('forbidden-key');
    expect(decodeFailure(() => decode(str8))).toBe('forbidden-key');
  });

  it('decode - keys that only resemble the forbidden ones decode normally', () => {
    const near = Uint8Array.from([
      0x83,
      ...str('__proto_'),
      0x01,
      ...str('__proto__x'),
      0x02,
      ...str('Constructor'),
      0x03,
    ]);
    expect(decode(near)).toStrictEqual({
      __proto_: 1,
      __proto__x: 2,
      Constructor: 3,
    });
  });

  it('decode - overlong UTF-8 spellings of the forbidden keys do not decode to them', () => {
    // 0xc1 0x9f is an overlong '_' and 0xc1 0xa3 an overlong 'c': a lenient
    // UTF-8 decoder would turn these keys into "__proto__" and "constructor"
    // after the byte-level check had passed them.
    const overlong = [
      [0xc1, 0x9f, ...Buffer.from('_proto__')],
      [0xe0, 0x81, 0x9f, ...Buffer.from('_proto__')],
      [0xc1, 0xa3, ...Buffer.from('onstructor')],
    ];
    for (const key of overlong) {
      const value = decode(
        Uint8Array.from([0x81, 0xa0 | key.length, ...key, 0x01]),
      ) as object;
      expect(Object.keys(value)).toHaveLength(1);
      expect(Object.keys(value)).not.toContain('__proto__');
      expect(Object.keys(value)).not.toContain('constructor');
      expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    }
  });

  it('decode - Object.prototype is never polluted, whatever the bytes', () => {
    fc.assert(
      fc.property(msgpackish, (noise) => {
        decodesOrFails(() =>
          decode(Uint8Array.from([...protoMap.subarray(0, 11), ...noise])),
        );
        decodesOrFails(() => decode(noise));
      }),
      { numRuns: 1_000 },
    );
    decodesOrFails(() => decode(protoMap));
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('encode - an own __proto__ key (as JSON.parse makes) is refused at encode time too', () => {
    const value: unknown = JSON.parse('{"__proto__":{"polluted":true}}');
    expect(() => encode(value)).toThrow(/prototype pollution/);
    expect(() => encodeRecord({ constructor: 1 })).toThrow(
      /prototype pollution/,
    );
  });
});

describe('records - checksum', () => {
  it('record - the portable CRC-32 matches zlib on known and random input', async () => {
    const { crc32Portable } = await import('../../src/codec/crc32.js');
    expect(crc32Portable(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32Portable(new Uint8Array(0))).toBe(0);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1_000 }), (bytes) => {
        expect(crc32Portable(bytes)).toBe(zlib.crc32(bytes));
      }),
    );
  });
});

/** Frames arbitrary payload bytes as a record with a correct header and checksum. */
function withRecordHeader(payload: Uint8Array): Uint8Array {
  const record = new Uint8Array(payload.length + 5);
  record[0] = 1;
  new DataView(record.buffer).setUint32(1, zlib.crc32(payload));
  record.set(payload, 5);
  return record;
}
