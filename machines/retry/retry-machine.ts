import { assign, setup, stateIn } from 'xstate';
import {
  backoffDelay,
  resolveBackoff,
  seedFrom,
  type BackoffOptions,
} from './backoff.js';
import { checkFunction, checkInteger, timerMsMax } from '../shared/options.js';
import type { SerializedError } from './serialise-error.js';
import { fromTask, taskResult, toTaskFailure, type Task } from './task.js';

/** How a retry run ended; each is a final state of the same name. */
export type RetryOutcome =
  'succeeded' | 'notRetryable' | 'attemptsExhausted' | 'deadlineExceeded';

/** One failed attempt. */
export interface RetryAttempt {
  /** 1-based attempt number. */
  attempt: number;
  error: SerializedError;
  /** When the attempt started, by the clock in use (absent when there is none). */
  startedAt?: number;
  /**
   * The wait planned after this attempt before the next one: 0 when the run
   * ended with this attempt; when the deadline passed during the wait, the
   * wait that was planned.
   */
  delayMs: number;
}

/** The machine's output. */
export interface RetryOutput<TResult = unknown> {
  outcome: RetryOutcome;
  /** The task's result, only when `outcome` is `'succeeded'`. */
  result?: TResult;
  /** Every failed attempt, in order. */
  attempts: RetryAttempt[];
  /** Attempts started, the successful one included. */
  attemptsMade: number;
}

/** Machine input: the task's input and, optionally, the jitter seed. */
export interface RetryInput<TInput = unknown> {
  input?: TInput;
  /** Seed of the jitter generator; default: derived from the whole input. */
  seed?: number;
}

/** Plain data only, so the machine can be an entity. */
export interface RetryContext<TInput = unknown, TResult = unknown> {
  input: TInput | null;
  /** xorshift32 state for jitter (see backoff.ts). */
  rng: number;
  attempts: RetryAttempt[];
  /** Attempts started so far. */
  attemptsMade: number;
  /** The wait before the next attempt, set when an attempt fails. */
  nextDelayMs: number;
  outcome: RetryOutcome | null;
  result: TResult | null;
}

export interface RetryMachineOptions<TInput, TResult> {
  /** The work to run; called with the machine input's `input`. */
  task: Task<TInput, TResult>;
  /** Attempts in total, the first included. 1..1 000. */
  attemptsMax: number;
  /** Default `{ initialMs: 100, factor: 2, maxMs: 30_000, jitter: 'full' }`. */
  backoff?: Partial<BackoffOptions>;
  /**
   * Decides on the original error whether another attempt may help. Runs
   * inside the invoked promise, and its answer is journaled with the error.
   * Default: every error is retryable.
   */
  isRetryable?: (error: unknown, attempt: number) => boolean;
  /** Time budget for the whole run from the machine's start, in ms; an `after` on the running state. */
  deadlineMs?: number;
  /** Clock for `startedAt`; default: the actor system's clock when it has `now()`. */
  now?: () => number;
  /** Machine id. Default `'retry'`. */
  id?: string;
}

/**
 * Bounds of the retry options (they bound what context holds).
 *
 * @example
 * ```ts
 * createRetryMachine({ task, attemptsMax: Math.min(wanted, retryLimits.attemptsMax) });
 * ```
 */
export const retryLimits = {
  attemptsMax: 1_000,
} as const;

const factory = 'createRetryMachine';

/**
 * Creates a machine that runs `task` until it succeeds, fails with an error
 * `isRetryable` rejects, has used `attemptsMax` attempts, or `deadlineMs`
 * has passed — whichever comes first — waiting a capped exponential backoff
 * (with optional full jitter) between attempts. The final state and the
 * output's `outcome` say which; the output lists every failed attempt's
 * error as plain data.
 *
 * The waits and the deadline are XState `after` timers, so as a Shardchart
 * entity they are durable across passivation and restarts. Jitter is drawn
 * from a seeded generator kept in context, so replaying the journal yields
 * the same waits. The task is invoked with id `attempt`; an attempt in
 * flight when an entity is restored runs again (at least once).
 *
 * @example
 * ```ts
 * import { createActor, toPromise } from 'xstate';
 * import { createRetryMachine } from 'shardchart/machines';
 *
 * const fetchQuote = createRetryMachine({
 *   task: async (symbol: string, { signal }) => (await fetch(`https://quotes.example/${symbol}`, { signal })).json(),
 *   attemptsMax: 5,
 *   backoff: { initialMs: 200, factor: 2, maxMs: 5_000, jitter: 'full' },
 *   isRetryable: (err) => !(err instanceof TypeError),
 *   deadlineMs: 30_000,
 * });
 * const output = await toPromise(createActor(fetchQuote, { input: { input: 'ACME' } }).start());
 * if (output.outcome === 'succeeded') console.log(output.result);
 * ```
 */
export function createRetryMachine<TInput = unknown, TResult = unknown>(
  options: RetryMachineOptions<TInput, TResult>,
) {
  checkFunction(factory, 'task', options.task);
  checkInteger(
    factory,
    'attemptsMax',
    options.attemptsMax,
    1,
    retryLimits.attemptsMax,
  );
  const backoff = resolveBackoff(factory, options.backoff);
  if (options.deadlineMs !== undefined)
    checkInteger(factory, 'deadlineMs', options.deadlineMs, 1, timerMsMax);
  if (options.isRetryable !== undefined)
    checkFunction(factory, 'isRetryable', options.isRetryable);
  if (options.now !== undefined) checkFunction(factory, 'now', options.now);
  const { attemptsMax, deadlineMs } = options;
  const id = options.id ?? 'retry';

  const machine = setup({
    types: {
      context: {} as RetryContext<TInput, TResult>,
      // XState's idiom for declaring a type; the linter sees that `{}` fits
      // an all-optional input and calls the assertion unnecessary.
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
      input: {} as RetryInput<TInput> | undefined,
      output: {} as RetryOutput<TResult>,
    },
    actors: {
      attempt: fromTask(options.task, {
        now: options.now,
        isRetryable: options.isRetryable,
      }),
    },
    delays: {
      backoff: ({ context }) => context.nextDelayMs,
      deadline: deadlineMs ?? timerMsMax,
    },
    guards: {
      notRetryable: ({ event }) =>
        !toTaskFailure((event as { error?: unknown }).error).retryable,
      attemptsLeft: ({ context }) => context.attemptsMade < attemptsMax,
    },
    actions: {
      /** Records the failed attempt; `delay` says whether a wait follows. */
      recordFailure: assign(({ context, event }, params: { wait: boolean }) => {
        const failure = toTaskFailure((event as { error?: unknown }).error);
        const { delayMs, rng } = params.wait
          ? backoffDelay(backoff, context.attempts.length + 1, context.rng)
          : { delayMs: 0, rng: context.rng };
        const record: RetryAttempt = {
          attempt: context.attemptsMade,
          error: failure.error,
          delayMs,
        };
        if (failure.startedAt !== undefined)
          record.startedAt = failure.startedAt;
        return {
          attempts: [...context.attempts, record],
          rng,
          nextDelayMs: delayMs,
        };
      }),
      recordInFlightAtDeadline: assign(({ context }) => ({
        attempts: [
          ...context.attempts,
          {
            attempt: context.attemptsMade,
            error: {
              name: 'DeadlineExceeded',
              message: `The deadline of ${deadlineMs} ms passed while attempt ${context.attemptsMade} was running; it was aborted.`,
              code: 'DEADLINE_EXCEEDED',
            },
            delayMs: 0,
          },
        ],
      })),
      setOutcome: assign((_, params: { outcome: RetryOutcome }) => ({
        outcome: params.outcome,
      })),
    },
  }).createMachine({
    id,
    context: ({ input }) => ({
      input: input?.input ?? null,
      rng: seedFrom(input?.seed ?? input ?? null),
      attempts: [],
      attemptsMade: 0,
      nextDelayMs: 0,
      outcome: null,
      result: null,
    }),
    initial: 'running',
    states: {
      running: {
        initial: 'attempting',
        // The deadline covers the whole run: an `after` on the parent state
        // outlives every attempt and wait inside it, and leaving the state
        // (to any final state) cancels it.
        ...(deadlineMs === undefined
          ? {}
          : {
              after: {
                deadline: [
                  {
                    guard: stateIn(`#${id}.running.attempting`),
                    target: 'deadlineExceeded',
                    actions: [
                      'recordInFlightAtDeadline',
                      {
                        type: 'setOutcome',
                        params: { outcome: 'deadlineExceeded' },
                      },
                    ],
                  },
                  {
                    target: 'deadlineExceeded',
                    actions: {
                      type: 'setOutcome',
                      params: { outcome: 'deadlineExceeded' },
                    },
                  },
                ],
              },
            }),
        states: {
          attempting: {
            // Counted on entry, before the invoke reads it for the task's
            // `attempt` argument (assign actions run before invocations start).
            entry: assign({
              attemptsMade: ({ context }) => context.attemptsMade + 1,
            }),
            invoke: {
              id: 'attempt',
              src: 'attempt',
              input: ({ context }) => ({
                input: context.input as TInput,
                attempt: context.attemptsMade,
              }),
              onDone: {
                target: `#${id}.succeeded`,
                actions: assign({
                  result: ({ event }) => taskResult(event) as TResult,
                  outcome: 'succeeded',
                }),
              },
              onError: [
                {
                  guard: 'notRetryable',
                  target: `#${id}.notRetryable`,
                  actions: [
                    { type: 'recordFailure', params: { wait: false } },
                    { type: 'setOutcome', params: { outcome: 'notRetryable' } },
                  ],
                },
                {
                  guard: 'attemptsLeft',
                  target: 'waiting',
                  actions: { type: 'recordFailure', params: { wait: true } },
                },
                {
                  target: `#${id}.attemptsExhausted`,
                  actions: [
                    { type: 'recordFailure', params: { wait: false } },
                    {
                      type: 'setOutcome',
                      params: { outcome: 'attemptsExhausted' },
                    },
                  ],
                },
              ],
            },
          },
          waiting: { after: { backoff: 'attempting' } },
        },
      },
      succeeded: { type: 'final' },
      notRetryable: { type: 'final' },
      attemptsExhausted: { type: 'final' },
      deadlineExceeded: { type: 'final' },
    },
    output: ({ context }) => {
      const out: RetryOutput<TResult> = {
        outcome: context.outcome ?? 'attemptsExhausted',
        attempts: context.attempts,
        attemptsMade: context.attemptsMade,
      };
      if (context.outcome === 'succeeded')
        out.result = context.result as TResult;
      return out;
    },
  });
  return machine;
}
