import { and, assign, enqueueActions, setup, type AnyActorRef } from 'xstate';
import { checkInteger, timerMsMax } from '../shared/options.js';

/** The breaker's three states. */
export type BreakerState = 'closed' | 'open' | 'halfOpen';

/** The answer to one `CALL`. */
export interface BreakerDecision {
  correlationId: string;
  decision: 'ALLOWED' | 'REJECTED';
  /** The state the breaker was in when it decided. */
  state: BreakerState;
  /**
   * When rejected while open: how long until the breaker half-opens, by the
   * times the events carried (at least this long, see the README).
   */
  retryAfterMs?: number;
}

/** What the breaker emits, and sends to a `replyTo` actor, for each `CALL`. */
export interface BreakerAnswer {
  type: 'ALLOWED' | 'REJECTED';
  correlationId: string;
  state: BreakerState;
  retryAfterMs?: number;
}

/**
 * Events the breaker accepts. `at` is the sender's clock reading in ms: the
 * breaker takes time only from events (see {@link BreakerContext.now}).
 */
export type BreakerEvent =
  | {
      type: 'CALL';
      correlationId: string;
      at: number;
      /** An actor to answer with `sendTo` (plain XState only: an entity's events must be plain data). */
      replyTo?: AnyActorRef;
    }
  | { type: 'SUCCESS'; correlationId: string; at: number }
  | { type: 'FAILURE'; correlationId: string; at: number };

/** Plain data only, so the breaker can be an entity. */
export interface BreakerContext {
  /**
   * The breaker's notion of now: the largest `at` seen, or a timer's exact
   * deadline. Time never comes from a clock read inside the machine, so a
   * replay of the journal computes the same window and the same answers.
   */
  now: number;
  /** `at` of the failures inside the window while closed, oldest first (fewer than `failureThreshold`). */
  failures: number[];
  /** When the breaker last opened; null while closed. */
  openedAt: number | null;
  /** Correlation ids allowed in the current half-open episode (at most `halfOpenProbesMax`). */
  probes: string[];
  /** Probes of this episode that reported SUCCESS. */
  probesSucceeded: string[];
  /** The answer to the latest CALL. */
  lastDecision: BreakerDecision | null;
  /** The latest `decisionsMax` answers, oldest first, one per correlation id. */
  decisions: BreakerDecision[];
  /** Times the breaker opened. */
  trips: number;
}

export interface BreakerMachineOptions {
  /** Failures inside `windowMs` that open a closed breaker. 1..10 000. */
  failureThreshold: number;
  /** Length of the sliding failure window, in ms. */
  windowMs: number;
  /** Time an open breaker rejects calls before half-opening, in ms (an `after` timer). */
  resetTimeoutMs: number;
  /** Calls let through while half-open; that many successes close the breaker, one failure re-opens it. 1..1 000. */
  halfOpenProbesMax: number;
  /** Time half-open waits for its probes' results before re-opening, in ms. Default `resetTimeoutMs`. */
  probeTimeoutMs?: number;
  /** Answers kept in `context.decisions`, for callers that look theirs up (retried sends). Default 32, 0..1 000. */
  decisionsMax?: number;
  /** Machine id. Default `'circuitBreaker'`. */
  id?: string;
}

/**
 * Defaults and bounds of the breaker's options.
 *
 * @example
 * ```ts
 * createCircuitBreakerMachine({ ...options, decisionsMax: breakerLimits.decisionsMaxDefault * 2 });
 * ```
 */
export const breakerLimits = {
  failureThresholdMax: 10_000,
  halfOpenProbesMax: 1_000,
  decisionsMaxDefault: 32,
  decisionsMax: 1_000,
} as const;

const factory = 'createCircuitBreakerMachine';

/**
 * Creates a circuit breaker: `closed` lets every `CALL` through and counts
 * `FAILURE`s in a sliding `windowMs`; at `failureThreshold` it opens and
 * rejects every call for `resetTimeoutMs`; then it half-opens and lets
 * `halfOpenProbesMax` probe calls through — that many successes close it,
 * one failure (or `probeTimeoutMs` without all results) opens it again.
 *
 * Each `CALL { correlationId, at }` is answered three ways at once: an
 * emitted `ALLOWED`/`REJECTED` event (`actor.on(...)`), `sendTo` the
 * event's `replyTo` actor when it has one, and `context.lastDecision` (plus
 * the recent `context.decisions`), which is what an entity's `send` result
 * carries — see {@link callThroughBreaker} for the entity pattern. Callers
 * report the outcome with `SUCCESS`/`FAILURE { correlationId, at }`.
 *
 * Time comes only from the events' `at` and from the breaker's own `after`
 * timers (durable when it runs as an entity), so replay is deterministic.
 *
 * @example
 * ```ts
 * import { createActor } from 'xstate';
 * import { createCircuitBreakerMachine } from 'shardchart/machines';
 *
 * const breaker = createActor(
 *   createCircuitBreakerMachine({ failureThreshold: 5, windowMs: 10_000, resetTimeoutMs: 30_000, halfOpenProbesMax: 1 }),
 * ).start();
 * breaker.on('REJECTED', (a) => console.log(`${a.correlationId}: retry in ${a.retryAfterMs} ms`));
 * breaker.send({ type: 'CALL', correlationId: 'c-1', at: Date.now() });
 * breaker.getSnapshot().context.lastDecision; // { correlationId: 'c-1', decision: 'ALLOWED', state: 'closed' }
 * breaker.send({ type: 'FAILURE', correlationId: 'c-1', at: Date.now() });
 * ```
 */
export function createCircuitBreakerMachine(options: BreakerMachineOptions) {
  checkInteger(
    factory,
    'failureThreshold',
    options.failureThreshold,
    1,
    breakerLimits.failureThresholdMax,
  );
  checkInteger(factory, 'windowMs', options.windowMs, 1, timerMsMax);
  checkInteger(
    factory,
    'resetTimeoutMs',
    options.resetTimeoutMs,
    1,
    timerMsMax,
  );
  checkInteger(
    factory,
    'halfOpenProbesMax',
    options.halfOpenProbesMax,
    1,
    breakerLimits.halfOpenProbesMax,
  );
  const probeTimeoutMs = options.probeTimeoutMs ?? options.resetTimeoutMs;
  checkInteger(factory, 'probeTimeoutMs', probeTimeoutMs, 1, timerMsMax);
  const decisionsMax =
    options.decisionsMax ?? breakerLimits.decisionsMaxDefault;
  checkInteger(
    factory,
    'decisionsMax',
    decisionsMax,
    0,
    breakerLimits.decisionsMax,
  );
  const { failureThreshold, windowMs, resetTimeoutMs, halfOpenProbesMax } =
    options;

  const inWindow = (failures: number[], now: number) =>
    failures.filter((t) => t > now - windowMs);
  const eventTime = (context: BreakerContext, event: BreakerEvent) =>
    Math.max(context.now, event.at);
  const decide = (
    context: BreakerContext,
    decision: BreakerDecision,
  ): Partial<BreakerContext> => ({
    lastDecision: decision,
    decisions:
      decisionsMax === 0
        ? []
        : [
            ...context.decisions.filter(
              (d) => d.correlationId !== decision.correlationId,
            ),
            decision,
          ].slice(-decisionsMax),
  });

  return setup({
    types: {
      context: {} as BreakerContext,
      events: {} as BreakerEvent,
      emitted: {} as BreakerAnswer,
    },
    delays: { resetTimeout: resetTimeoutMs, probeTimeout: probeTimeoutMs },
    guards: {
      // Events are checked here rather than trusted: a CALL without a
      // correlation id or a finite time is not accepted (an entity with
      // `rejectUnhandled` refuses it with EVENT_REJECTED).
      wellFormed: ({ event }) =>
        typeof event.correlationId === 'string' &&
        event.correlationId !== '' &&
        typeof event.at === 'number' &&
        Number.isFinite(event.at),
      reachesThreshold: ({ context, event }) =>
        inWindow(context.failures, eventTime(context, event)).length + 1 >=
        failureThreshold,
      isProbe: ({ context, event }) =>
        context.probes.includes(event.correlationId),
      probeSlotFree: ({ context }) => context.probes.length < halfOpenProbesMax,
      lastProbeSucceeds: ({ context, event }) =>
        new Set([...context.probesSucceeded, event.correlationId]).size >=
        halfOpenProbesMax,
    },
    actions: {
      observeTime: assign({
        now: ({ context, event }) => eventTime(context, event),
      }),
      recordFailure: assign({
        failures: ({ context, event }) => [
          ...inWindow(context.failures, context.now),
          event.at,
        ],
      }),
      trip: assign(({ context }) => ({
        failures: [],
        openedAt: context.now,
        trips: context.trips + 1,
        probes: [],
        probesSucceeded: [],
      })),
      /** The reset timer fired: exactly `resetTimeoutMs` after opening. */
      halfOpen: assign(({ context }) => ({
        now: Math.max(
          context.now,
          (context.openedAt ?? context.now) + resetTimeoutMs,
        ),
        probes: [],
        probesSucceeded: [],
      })),
      /** The probe timer fired: exactly `probeTimeoutMs` after half-opening. */
      reopenAfterProbeTimeout: assign(({ context }) => {
        const at =
          (context.openedAt ?? context.now) + resetTimeoutMs + probeTimeoutMs;
        const now = Math.max(context.now, at);
        return {
          now,
          failures: [],
          openedAt: now,
          trips: context.trips + 1,
          probes: [],
          probesSucceeded: [],
        };
      }),
      close: assign({
        failures: [],
        openedAt: null,
        probes: [],
        probesSucceeded: [],
      }),
      addProbe: assign({
        probes: ({ context, event }) => [
          ...context.probes,
          event.correlationId,
        ],
      }),
      addProbeSuccess: assign({
        probesSucceeded: ({ context, event }) =>
          context.probesSucceeded.includes(event.correlationId)
            ? context.probesSucceeded
            : [...context.probesSucceeded, event.correlationId],
      }),
      allow: assign(({ context, event }, params: { state: BreakerState }) =>
        decide(context, {
          correlationId: event.correlationId,
          decision: 'ALLOWED',
          state: params.state,
        }),
      ),
      reject: assign(({ context, event }, params: { state: BreakerState }) => {
        const decision: BreakerDecision = {
          correlationId: event.correlationId,
          decision: 'REJECTED',
          state: params.state,
        };
        if (params.state === 'open' && context.openedAt !== null) {
          decision.retryAfterMs = Math.max(
            0,
            context.openedAt + resetTimeoutMs - context.now,
          );
        }
        return decide(context, decision);
      }),
      /** Emits the decision, and sends it to `replyTo` when the CALL named one. */
      answer: enqueueActions(({ context, event, enqueue }) => {
        const d = context.lastDecision;
        if (event.type !== 'CALL' || d === null) return;
        const reply: BreakerAnswer = {
          type: d.decision,
          correlationId: d.correlationId,
          state: d.state,
        };
        if (d.retryAfterMs !== undefined) reply.retryAfterMs = d.retryAfterMs;
        enqueue.emit(reply);
        if (event.replyTo) enqueue.sendTo(event.replyTo, reply);
      }),
    },
  }).createMachine({
    id: options.id ?? 'circuitBreaker',
    context: {
      now: 0,
      failures: [],
      openedAt: null,
      probes: [],
      probesSucceeded: [],
      lastDecision: null,
      decisions: [],
      trips: 0,
    },
    initial: 'closed',
    states: {
      closed: {
        on: {
          CALL: {
            guard: 'wellFormed',
            actions: [
              'observeTime',
              { type: 'allow', params: { state: 'closed' } },
              'answer',
            ],
          },
          FAILURE: [
            {
              guard: and(['wellFormed', 'reachesThreshold']),
              target: 'open',
              actions: ['observeTime', 'trip'],
            },
            { guard: 'wellFormed', actions: ['observeTime', 'recordFailure'] },
          ],
          SUCCESS: { guard: 'wellFormed', actions: 'observeTime' },
        },
      },
      open: {
        after: { resetTimeout: { target: 'halfOpen', actions: 'halfOpen' } },
        on: {
          CALL: {
            guard: 'wellFormed',
            actions: [
              'observeTime',
              { type: 'reject', params: { state: 'open' } },
              'answer',
            ],
          },
          // Results of calls allowed before the breaker opened change nothing.
          FAILURE: { guard: 'wellFormed', actions: 'observeTime' },
          SUCCESS: { guard: 'wellFormed', actions: 'observeTime' },
        },
      },
      halfOpen: {
        after: {
          probeTimeout: { target: 'open', actions: 'reopenAfterProbeTimeout' },
        },
        on: {
          CALL: [
            // A repeated CALL of a probe (a retried send) gets the same answer and no second slot.
            {
              guard: and(['wellFormed', 'isProbe']),
              actions: [
                'observeTime',
                { type: 'allow', params: { state: 'halfOpen' } },
                'answer',
              ],
            },
            {
              guard: and(['wellFormed', 'probeSlotFree']),
              actions: [
                'observeTime',
                'addProbe',
                { type: 'allow', params: { state: 'halfOpen' } },
                'answer',
              ],
            },
            {
              guard: 'wellFormed',
              actions: [
                'observeTime',
                { type: 'reject', params: { state: 'halfOpen' } },
                'answer',
              ],
            },
          ],
          SUCCESS: [
            {
              guard: and(['wellFormed', 'isProbe', 'lastProbeSucceeds']),
              target: 'closed',
              actions: ['observeTime', 'close'],
            },
            {
              guard: and(['wellFormed', 'isProbe']),
              actions: ['observeTime', 'addProbeSuccess'],
            },
            { guard: 'wellFormed', actions: 'observeTime' },
          ],
          FAILURE: [
            {
              guard: and(['wellFormed', 'isProbe']),
              target: 'open',
              actions: ['observeTime', 'trip'],
            },
            { guard: 'wellFormed', actions: 'observeTime' },
          ],
        },
      },
    },
  });
}
