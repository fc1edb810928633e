import { enqueueActions, setup } from 'xstate';
import { ConfigError } from '../../src/errors.js';
import {
  levelAt,
  UNIT,
  waitFor,
  type Bucket,
  type Rate,
} from './token-bucket.js';
import { checkInteger } from '../shared/options.js';

/** Asks for `cost` tokens (default 1) of `key`'s bucket at time `at` (ms). */
export type RateLimitRequest = {
  type: 'REQUEST';
  /** The bucket: a user, a tenant, an API key. 1..256 characters. */
  key: string;
  /** Tokens to take; a positive integer. Default 1. */
  cost?: number;
  /** Echoed in the answer so the caller can match it. */
  correlationId: string;
  /**
   * The request's time in ms (any epoch, the same for all requests). It is
   * the limiter's only clock: see the README. Default: the latest time seen.
   */
  at?: number;
};

/** Why a request was refused. */
export type RateLimitRejection =
  /** The bucket holds fewer tokens than the cost; retry after `retryAfterMs`. */
  | 'insufficient-tokens'
  /** `keysMax` keys have partial buckets; retry after `retryAfterMs`, when one is full again. */
  | 'keys-exhausted'
  /** The cost is above `capacity`: it can never be allowed. */
  | 'cost-exceeds-capacity'
  /** The request is malformed (key, cost, correlationId or at). */
  | 'invalid';

/** The answer to one request. `at` is the time it was decided at. */
export type RateLimitDecision =
  | {
      allowed: true;
      correlationId: string;
      key: string;
      cost: number;
      at: number;
      remaining: number;
    }
  | {
      allowed: false;
      correlationId: string;
      key: string;
      cost: number;
      at: number;
      reason: RateLimitRejection;
      /** Exact: the same request at `at + retryAfterMs` is allowed if nothing else takes tokens first. Null: never. */
      retryAfterMs: number | null;
    };

/** Emitted (and sent to the parent) per request. */
export type RateLimitAnswer =
  | ({ type: 'ALLOWED' } & Extract<RateLimitDecision, { allowed: true }>)
  | ({ type: 'REJECTED' } & Extract<RateLimitDecision, { allowed: false }>);

/** Plain data only, so the limiter can be an entity. */
export interface RateLimiterContext {
  /** Latest request time seen (ms); time never moves backwards. */
  now: number;
  /** Partial buckets by key; a key without a bucket has a full one. */
  buckets: Record<string, Bucket>;
  /** The answer to the last request. */
  last: RateLimitDecision | null;
  /** The last `decisionsMax` answers, oldest first (find yours by correlationId). */
  decisions: RateLimitDecision[];
  allowed: number;
  rejected: number;
}

export interface RateLimiterMachineOptions {
  /** Bucket size in tokens: the largest burst. Integer, 1..1 000 000 000. */
  capacity: number;
  /** Tokens added per second, a multiple of 0.001 from 0.001 to 1 000 000. */
  refillPerSecond: number;
  /** Keys with partial buckets tracked at once. Default 1 000, 1..100 000. */
  keysMax?: number;
  /** Answers kept in context. Default 16, 0..1 000. */
  decisionsMax?: number;
  /** Machine id. Default 'rateLimiter'. */
  id?: string;
}

/**
 * Defaults and bounds of the rate limiter's options.
 *
 * @example
 * ```ts
 * import { rateLimiterDefaults } from 'shardchart/machines';
 * if (userId.length > rateLimiterDefaults.keyLengthMax) userId = hash(userId); // else refused as 'invalid'
 * ```
 */
export const rateLimiterDefaults = {
  keysMax: 1_000,
  keysMaxLimit: 100_000,
  decisionsMax: 16,
  decisionsMaxLimit: 1_000,
  capacityLimit: 1_000_000_000,
  refillPerSecondLimit: 1_000_000,
  keyLengthMax: 256,
} as const;

/**
 * Creates a token-bucket rate limiter with one bucket per key. Each
 * `REQUEST { key, cost?, correlationId, at? }` is answered `ALLOWED` (tokens
 * taken) or `REJECTED` with an exact `retryAfterMs`. Over any window of
 * `elapsed` ms a key is allowed at most `capacity + refillPerSecond *
 * elapsed / 1000` tokens.
 *
 * Time comes from the requests (`at`), never from a clock read inside the
 * machine: an entity's journal replays through XState's pure `transition`,
 * and only time carried by events replays to the same decisions. Time never
 * moves backwards; an `at` older than the latest seen counts as the latest,
 * which can only refuse more, never allow more.
 *
 * The answer is emitted (`actor.on('ALLOWED' | 'REJECTED', …)`), sent to the
 * parent when invoked, and kept in context (`last`, `decisions`) for callers
 * that read an entity's state. At most `keysMax` partial buckets are kept:
 * a full bucket is the same as none, so full ones are dropped first; when
 * every tracked bucket is partial, a new key is refused (`keys-exhausted`)
 * until one refills, so the bound never lets a request through early.
 *
 * @example
 * ```ts
 * import { createActor } from 'xstate';
 * import { createRateLimiterMachine } from 'shardchart/machines';
 *
 * const limiter = createActor(createRateLimiterMachine({ capacity: 2, refillPerSecond: 1 })).start();
 * limiter.on('REJECTED', (a) => console.log(a.retryAfterMs)); // 1000
 * for (const id of ['a', 'b', 'c']) {
 *   limiter.send({ type: 'REQUEST', key: 'user-1', correlationId: id, at: 0 });
 * }
 * ```
 */
export function createRateLimiterMachine(options: RateLimiterMachineOptions) {
  const keysMax = options.keysMax ?? rateLimiterDefaults.keysMax;
  const decisionsMax = options.decisionsMax ?? rateLimiterDefaults.decisionsMax;
  checkInteger(
    'createRateLimiterMachine',
    'capacity',
    options.capacity,
    1,
    rateLimiterDefaults.capacityLimit,
  );
  checkInteger(
    'createRateLimiterMachine',
    'keysMax',
    keysMax,
    1,
    rateLimiterDefaults.keysMaxLimit,
  );
  checkInteger(
    'createRateLimiterMachine',
    'decisionsMax',
    decisionsMax,
    0,
    rateLimiterDefaults.decisionsMaxLimit,
  );
  const refillMilli = Math.round(options.refillPerSecond * 1_000);
  if (
    typeof options.refillPerSecond !== 'number' ||
    !(
      options.refillPerSecond > 0 &&
      options.refillPerSecond <= rateLimiterDefaults.refillPerSecondLimit
    ) ||
    Math.abs(options.refillPerSecond * 1_000 - refillMilli) > 1e-6
  ) {
    throw new ConfigError(
      `createRateLimiterMachine: refillPerSecond must be a multiple of 0.001 from 0.001 to ${rateLimiterDefaults.refillPerSecondLimit}; got ${JSON.stringify(options.refillPerSecond)}.`,
      {
        details: { option: 'refillPerSecond', value: options.refillPerSecond },
      },
    );
  }
  const rate: Rate = {
    capacityMicro: options.capacity * UNIT,
    refillMicroPerMs: refillMilli,
  };

  return setup({
    types: {
      context: {} as RateLimiterContext,
      events: {} as RateLimitRequest,
      emitted: {} as RateLimitAnswer,
    },
    actions: {
      decide: enqueueActions(({ context, event, enqueue, self }) => {
        const { decision, now, buckets } = decide(
          rate,
          keysMax,
          context,
          event,
        );
        enqueue.assign({
          now,
          buckets,
          last: decision,
          decisions:
            decisionsMax === 0
              ? []
              : [...context.decisions, decision].slice(-decisionsMax),
          allowed: context.allowed + (decision.allowed ? 1 : 0),
          rejected: context.rejected + (decision.allowed ? 0 : 1),
        });
        const answer: RateLimitAnswer = decision.allowed
          ? { type: 'ALLOWED', ...decision }
          : { type: 'REJECTED', ...decision };
        enqueue.emit(answer);
        // A root entity has no parent, and sendParent throws without one.
        if (self._parent) enqueue.sendParent(answer);
      }),
    },
  }).createMachine({
    id: options.id ?? 'rateLimiter',
    context: {
      now: 0,
      buckets: {},
      last: null,
      decisions: [],
      allowed: 0,
      rejected: 0,
    },
    initial: 'ready',
    states: {
      ready: { on: { REQUEST: { actions: 'decide' } } },
    },
  });
}

/** The decision for one request and the limiter state after it. Pure. */
function decide(
  rate: Rate,
  keysMax: number,
  context: RateLimiterContext,
  event: RateLimitRequest,
): {
  decision: RateLimitDecision;
  now: number;
  buckets: Record<string, Bucket>;
} {
  const { key, correlationId, at } = event;
  const cost = event.cost ?? 1;
  const validAt =
    at === undefined ||
    (typeof at === 'number' && Number.isFinite(at) && at >= 0);
  const now =
    validAt && at !== undefined ? Math.max(context.now, at) : context.now;
  const base = {
    correlationId: typeof correlationId === 'string' ? correlationId : '',
    key:
      typeof key === 'string'
        ? key.slice(0, rateLimiterDefaults.keyLengthMax)
        : '',
    cost: Number.isSafeInteger(cost) ? cost : 0,
    at: now,
  };
  const refuse = (reason: RateLimitRejection, retryAfterMs: number | null) => ({
    decision: { allowed: false as const, ...base, reason, retryAfterMs },
    now,
    buckets: context.buckets,
  });
  if (
    !validAt ||
    !isKey(key) ||
    typeof correlationId !== 'string' ||
    !Number.isSafeInteger(cost) ||
    cost < 1
  ) {
    return refuse('invalid', null);
  }
  const costMicro = cost * UNIT;
  if (costMicro > rate.capacityMicro)
    return refuse('cost-exceeds-capacity', null);

  const bucket = Object.hasOwn(context.buckets, key)
    ? context.buckets[key]
    : undefined;
  const level = levelAt(rate, bucket, now);
  if (level < costMicro)
    return refuse('insufficient-tokens', waitFor(rate, level, costMicro));

  let buckets = context.buckets;
  if (bucket === undefined && Object.keys(buckets).length >= keysMax) {
    // Full buckets are the same as absent ones: dropping them loses nothing.
    const kept: Record<string, Bucket> = {};
    let keptCount = 0;
    let soonestFullMs = Infinity;
    for (const [k, b] of Object.entries(buckets)) {
      const l = levelAt(rate, b, now);
      if (l >= rate.capacityMicro) continue;
      kept[k] = b;
      keptCount++;
      soonestFullMs = Math.min(
        soonestFullMs,
        waitFor(rate, l, rate.capacityMicro),
      );
    }
    if (keptCount >= keysMax) return refuse('keys-exhausted', soonestFullMs);
    buckets = kept;
  }
  const micro = level - costMicro;
  return {
    decision: { allowed: true, ...base, remaining: Math.floor(micro / UNIT) },
    now,
    buckets: { ...buckets, [key]: { micro, at: now } },
  };
}

/** Keys become context property names: `__proto__` and `constructor` would not survive the codec. */
function isKey(key: unknown): key is string {
  return (
    typeof key === 'string' &&
    key.length > 0 &&
    key.length <= rateLimiterDefaults.keyLengthMax &&
    key !== '__proto__' &&
    key !== 'constructor'
  );
}
