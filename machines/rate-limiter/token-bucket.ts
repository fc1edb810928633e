/**
 * Exact token-bucket arithmetic, in integers. A token is `UNIT` micro-tokens
 * and the refill rate is micro-tokens per millisecond, so with
 * `refillPerSecond` a multiple of 0.001 every level, refill and wait is an
 * integer: no rounding can let a request through early, and a computed
 * `retryAfterMs` is exactly the first millisecond at which the request fits.
 */

/** Micro-tokens per token. @internal */
export const UNIT = 1_000_000;

/** A key's bucket: its level in micro-tokens at time `at` (ms). */
export interface Bucket {
  micro: number;
  at: number;
}

/** The resolved rate of one limiter: capacity and refill in micro-tokens. @internal */
export interface Rate {
  capacityMicro: number;
  /** Micro-tokens added per millisecond (= refillPerSecond * 1000). */
  refillMicroPerMs: number;
}

/** The level of `bucket` at `now` (never above capacity); a missing bucket is full. @internal */
export function levelAt(
  rate: Rate,
  bucket: Bucket | undefined,
  now: number,
): number {
  if (bucket === undefined) return rate.capacityMicro;
  const missing = rate.capacityMicro - bucket.micro;
  const elapsed = Math.max(0, now - bucket.at);
  // Compare before multiplying: a long idle time times the rate could leave
  // the range of exact integers, and the answer is "full" anyway.
  if (elapsed >= Math.ceil(missing / rate.refillMicroPerMs))
    return rate.capacityMicro;
  return bucket.micro + elapsed * rate.refillMicroPerMs;
}

/** Milliseconds until a bucket at `level` holds `micro` micro-tokens (0 if it does). @internal */
export function waitFor(rate: Rate, level: number, micro: number): number {
  if (level >= micro) return 0;
  return Math.ceil((micro - level) / rate.refillMicroPerMs);
}
