// The shard function (src/sharding/shard.ts) is part of the wire contract:
// MurmurHash3 x86_32 (seed 0) of UTF-8(type + NUL + id), unsigned, mod
// shardCount. The published MurmurHash3 vectors check the hash itself; the
// pinned values below may never change; the chi-square test checks that
// sequential ids spread evenly.
import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';

import { ConfigError } from '../../src/errors.js';
import {
  murmur3,
  murmur3String,
  shardCountMax,
  shardOf,
} from '../../src/sharding/shard.js';

describe('shard - the shard function', () => {
  test('shard - murmur3 matches the published MurmurHash3 x86_32 vectors', () => {
    const vectors: [string, number, number][] = [
      ['', 0, 0x00000000],
      ['', 1, 0x514e28b7],
      ['', 0xffffffff, 0x81f16f39],
      ['aaaa', 0x9747b28c, 0x5a97808a],
      ['abc', 0x9747b28c, 0xc84a62dd],
      ['abc', 0, 0xb3dd93fa],
      ['Hello, world!', 0x9747b28c, 0x24884cba],
      ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
    ];
    for (const [text, seed, hash] of vectors)
      expect(murmur3String(text, seed)).toBe(hash);
    expect(murmur3(new Uint8Array(4), 0)).toBe(0x2362f9de);
  });

  test('shard - pinned shards of known entities (the wire contract: never change these)', () => {
    expect(
      ['o-1', 'o-2', 'o-3', 'customer-42', ''].map((id) =>
        shardOf('order', id, 256),
      ),
    ).toEqual([198, 24, 141, 103, 94]);
    expect(shardOf('ünïcødé', '🙂', 1_024)).toBe(240);
    expect(shardOf('order', 'o-1', 65_536)).toBe(43_718);
  });

  test.prop([
    fc.string(),
    fc.string(),
    fc.integer({ min: 1, max: shardCountMax }),
  ])('shard - is in range and the same on every call', (type, id, count) => {
    const shard = shardOf(type, id, count);
    expect(Number.isInteger(shard) && shard >= 0 && shard < count).toBe(true);
    expect(shardOf(type, id, count)).toBe(shard);
  });

  test('shard - type and id are separated: (ab, c) and (a, bc) are different inputs', () => {
    expect(murmur3String('ab\u0000c')).not.toBe(murmur3String('a\u0000bc'));
    expect(shardOf('ab', 'c', 65_536)).toBe(
      murmur3String('ab\u0000c') % 65_536,
    );
  });

  test('shard - long ids hash like short ones (the scratch buffer grows)', () => {
    const long = 'x'.repeat(10_000) + 'é'.repeat(5_000);
    expect(shardOf('t', long, 97)).toBe(
      murmur3(new TextEncoder().encode(`t\u0000${long}`)) % 97,
    );
  });

  test('shard - sequential ids spread evenly over 256 shards (chi-square)', () => {
    // 256,000 ids o-0..o-255999: 1,000 expected per shard. With 255 degrees
    // of freedom the statistic exceeds 380 with probability about 1e-6.
    const shards = 256;
    const n = 256_000;
    const counts = new Array<number>(shards).fill(0);
    for (let i = 0; i < n; i++) counts[shardOf('order', `o-${i}`, shards)]!++;
    const expected = n / shards;
    const chi2 = counts.reduce(
      (sum, c) => sum + (c - expected) ** 2 / expected,
      0,
    );
    expect(chi2).toBeLessThan(380);
  });

  test('shard - refuses shard counts outside 1..shardCountMax', () => {
    expect(() => shardOf('t', 'i', 0)).toThrow(ConfigError);
    expect(() => shardOf('t', 'i', shardCountMax + 1)).toThrow(ConfigError);
    expect(() => shardOf('t', 'i', 2.5)).toThrow(ConfigError);
  });
});
