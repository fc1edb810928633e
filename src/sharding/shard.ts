/**
 * The shard function: which shard an entity belongs to.
 *
 * This is part of the wire contract. Every node of a system, every client
 * that routes by shard and every release must compute the same shard for the
 * same entity, or events land on a node that does not own the entity and
 * journals written under one release are looked for in another shard by the
 * next. The function below must therefore never change:
 *
 *   shard = murmur3_x86_32(utf8(type + '\u0000' + id), seed 0) mod shardCount
 *
 * with the hash read as an unsigned 32-bit integer. MurmurHash3 is used for
 * its avalanche (the low bits that `mod` keeps are as well mixed as the high
 * ones, which FNV-1a does not give for short, similar ids such as `o-1`,
 * `o-2`), its published test vectors, and implementations in every language
 * a client might be written in. The NUL separator keeps (`ab`, `c`) and
 * (`a`, `bc`) apart. Strings are encoded as UTF-8 the way `TextEncoder`
 * does it, so a lone surrogate hashes as U+FFFD.
 */

import { ConfigError } from '../errors.js';

/**
 * The largest shard count a system may use. Each shard has an owner record
 * in the cluster KV, so the bound keeps that bucket and every allocation pass
 * small; 256 to 4,096 shards suit clusters of up to a few hundred nodes.
 *
 * @example
 * ```ts
 * const shardCount = Math.min(1_024, shardCountMax);
 * ```
 */
export const shardCountMax = 65_536;

/**
 * Throws `ConfigError` unless `shardCount` is an integer in 1..shardCountMax.
 * @internal
 */
export function assertShardCount(shardCount: number): void {
  if (
    !Number.isInteger(shardCount) ||
    shardCount < 1 ||
    shardCount > shardCountMax
  ) {
    throw new ConfigError(
      `shardCount must be an integer from 1 to ${shardCountMax}, got ${String(shardCount)}: pass the shard count the system was created with.`,
      { details: { shardCount } },
    );
  }
}

const encoder = new TextEncoder();
// One buffer reused by every call: shardOf runs on every send and every
// store write, so it should not allocate. Grown on demand.
let scratch = new Uint8Array(256);

/**
 * MurmurHash3, x86 32-bit variant, over `bytes[0..length)`, as an unsigned
 * 32-bit integer.
 * @internal
 */
export function murmur3(
  bytes: Uint8Array,
  seed = 0,
  length = bytes.length,
): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed | 0;
  const blocks = length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k =
      (bytes[i] as number) |
      ((bytes[i + 1] as number) << 8) |
      ((bytes[i + 2] as number) << 16) |
      ((bytes[i + 3] as number) << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  const tail = length & 3;
  if (tail === 3) k ^= (bytes[blocks + 2] as number) << 16;
  if (tail >= 2) k ^= (bytes[blocks + 1] as number) << 8;
  if (tail >= 1) {
    k ^= bytes[blocks] as number;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= length;
  return fmix32(h);
}

/**
 * The MurmurHash3 finalizer: a bijection on 32-bit integers with full
 * avalanche.
 * @internal
 */
export function fmix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * MurmurHash3 (x86, 32-bit) of the UTF-8 bytes of `text`.
 * @internal
 */
export function murmur3String(text: string, seed = 0): number {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit.
  const needed = text.length * 3;
  if (needed > scratch.length) {
    scratch = new Uint8Array(Math.max(needed, scratch.length * 2));
  }
  const { written } = encoder.encodeInto(text, scratch);
  return murmur3(scratch, seed, written);
}

/**
 * The shard of entity (`type`, `id`) among `shardCount` shards: an integer in
 * `[0, shardCount)`. Stable forever (see the module comment): the same
 * entity maps to the same shard on every node and every release, for a given
 * `shardCount`. Changing `shardCount` remaps almost every entity, so it is
 * fixed for the life of a system.
 *
 * @example
 * ```ts
 * shardOf('order', 'o-1', 256); // the same number on every node, forever
 * ```
 */
export function shardOf(type: string, id: string, shardCount: number): number {
  assertShardCount(shardCount);
  return murmur3String(`${type}\u0000${id}`) % shardCount;
}
