import { ConfigError } from '../../src/errors.js';
import { checkInteger, checkNumber, timerMsMax } from '../shared/options.js';

/**
 * Exponential backoff with optional full jitter, drawn from a seeded
 * generator whose state lives in machine context.
 *
 * Why a seed in context instead of Math.random: an entity's state is rebuilt
 * by replaying its journal through XState's pure `transition`, which re-runs
 * every `assign`. A delay drawn from Math.random would come out different on
 * replay, and the rebuilt context would not match the one the live actor had.
 * An xorshift step over a number kept in context gives the same sequence
 * every time.
 */

/** How the wait between attempts grows. */
export interface BackoffOptions {
  /** Wait after the first failure, in ms. */
  initialMs: number;
  /** Growth per further failure (2 doubles the wait). At least 1. */
  factor: number;
  /** Cap on any single wait, in ms. */
  maxMs: number;
  /**
   * `'full'`: each wait is drawn uniformly from [0, capped exponential)
   * (AWS's "full jitter", which spreads retries of many callers best);
   * `'none'`: the capped exponential itself.
   */
  jitter: 'full' | 'none';
}

/**
 * Defaults for {@link BackoffOptions}: 100 ms, doubling, capped at 30 s, full jitter.
 *
 * @example
 * ```ts
 * createRetryMachine({ task, attemptsMax: 5, backoff: { ...backoffDefaults, jitter: 'none' } });
 * ```
 */
export const backoffDefaults: BackoffOptions = {
  initialMs: 100,
  factor: 2,
  maxMs: 30_000,
  jitter: 'full',
};

/** Fills in defaults and checks ranges; throws ConfigError naming `factory`. @internal */
export function resolveBackoff(
  factory: string,
  options: Partial<BackoffOptions> | undefined,
  defaults = backoffDefaults,
): BackoffOptions {
  const b = { ...defaults, ...options };
  checkInteger(factory, 'backoff.initialMs', b.initialMs, 0, timerMsMax);
  checkNumber(factory, 'backoff.factor', b.factor, 1, 1_000);
  checkInteger(factory, 'backoff.maxMs', b.maxMs, 0, timerMsMax);
  if (b.jitter !== 'full' && b.jitter !== 'none') {
    throw new ConfigError(
      `${factory}: backoff.jitter must be 'full' or 'none'; got ${JSON.stringify(b.jitter)}.`,
      {
        details: { option: 'backoff.jitter', value: b.jitter },
      },
    );
  }
  return b;
}

/**
 * One xorshift32 step. The state must be a non-zero 32-bit unsigned integer;
 * the result is the next state, also non-zero.
 *
 * @example
 * ```ts
 * let s = seedFrom('order-42');
 * s = xorshift32(s); // next state; s / 2 ** 32 is a draw in [0, 1)
 * ```
 */
export function xorshift32(state: number): number {
  let x = state >>> 0 || 0x9e3779b9;
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}

/**
 * A non-zero 32-bit seed from any JSON-safe value (FNV-1a over its JSON), so
 * entities with different ids draw different jitter.
 *
 * @example
 * ```ts
 * seedFrom(42) === seedFrom(42); // true
 * ```
 */
export function seedFrom(value: unknown): number {
  let text: string;
  try {
    text = JSON.stringify(value) ?? 'undefined';
  } catch {
    text = String(value);
  }
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // murmur3's finaliser: small seeds (1, 2, 11) would otherwise start
  // xorshift in a corner where its first draws are all tiny.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0 || 0x9e3779b9;
}

/**
 * The wait after the `failures`-th consecutive failure (1 for the first),
 * and the generator state to store for the next draw.
 *
 * @example
 * ```ts
 * backoffDelay({ initialMs: 100, factor: 2, maxMs: 1_000, jitter: 'none' }, 3, 1);
 * // { delayMs: 400, rng: 1 }
 * ```
 */
export function backoffDelay(
  options: BackoffOptions,
  failures: number,
  rng: number,
): { delayMs: number; rng: number } {
  // Iterating keeps the cap exact and never overflows to Infinity or NaN
  // (0 * Infinity), whatever the factor.
  let base = Math.min(options.initialMs, options.maxMs);
  for (let i = 1; i < failures && base < options.maxMs; i++)
    base = Math.min(options.maxMs, base * options.factor);
  if (options.jitter === 'none') return { delayMs: Math.floor(base), rng };
  const next = xorshift32(rng);
  return { delayMs: Math.floor((base * next) / 4_294_967_296), rng: next };
}
