import { assign, type AnyEventObject } from 'xstate';
import { ConfigError } from '../../src/errors.js';
import {
  backoffDelay,
  resolveBackoff,
  type BackoffOptions,
} from '../retry/backoff.js';
import { checkInteger } from '../shared/options.js';
import type { SerializedError } from '../retry/serialise-error.js';
import { fromTask, toTaskFailure, type Task } from '../retry/task.js';

/**
 * Undoing completed steps, shared by the saga and the DAG machines: one
 * state per step that can be undone (`undo-<id>`, invoking
 * `compensate-<id>`), one wait state per step for the retry backoff, and a
 * transient `next` state that picks the step at the head of the queue. The
 * queue is the completed steps in reverse order of completion, fixed when
 * compensation starts.
 */

/** What a compensation function receives. */
export interface CompensateInput<TInput = unknown> {
  /** The machine's input. */
  input: TInput;
  /** What this step's `run` returned. */
  result: unknown;
  /** Results of every step completed when compensation started, by id. */
  results: Record<string, unknown>;
}

/** How a completed step's undo went. */
export interface CompensationRecord {
  status: 'pending' | 'compensated' | 'failed' | 'skipped';
  /** Failed undo attempts, in order (a successful one is not listed). */
  attempts: { attempt: number; error: SerializedError; delayMs: number }[];
}

/** Progress of the compensation run, kept in context. */
export interface CompensationProgress {
  /** Step ids still to undo, head first. */
  queue: string[];
  /** Undo attempts made for the head step. */
  attempt: number;
  nextDelayMs: number;
  /** xorshift32 state for jittered backoff. */
  rng: number;
}

/** Options of compensation retries. */
export interface CompensationOptions {
  /** Attempts per step's undo, the first included. Default 3, 1..100. */
  attemptsMax?: number;
  /** Backoff between undo attempts. Default `{ initialMs: 1_000, factor: 2, maxMs: 30_000, jitter: 'none' }`. */
  backoff?: Partial<BackoffOptions>;
  /**
   * When an undo gives up: `'continue'` (default) still undoes the steps
   * before it; `'stop'` leaves them as they are (`skipped`), for sagas whose
   * earlier undos are only safe after the later ones.
   */
  onGiveUp?: 'continue' | 'stop';
}

/** @internal */
export interface ResolvedCompensation {
  attemptsMax: number;
  backoff: BackoffOptions;
  onGiveUp: 'continue' | 'stop';
}

/** @internal */
export const compensationDefaults = {
  attemptsMax: 3,
  attemptsMaxLimit: 100,
  backoff: {
    initialMs: 1_000,
    factor: 2,
    maxMs: 30_000,
    jitter: 'none',
  } as BackoffOptions,
} as const;

/** @internal */
export function resolveCompensation(
  factory: string,
  options: CompensationOptions | undefined,
): ResolvedCompensation {
  const attemptsMax = options?.attemptsMax ?? compensationDefaults.attemptsMax;
  checkInteger(
    factory,
    'compensation.attemptsMax',
    attemptsMax,
    1,
    compensationDefaults.attemptsMaxLimit,
  );
  const onGiveUp = options?.onGiveUp ?? 'continue';
  if (onGiveUp !== 'continue' && onGiveUp !== 'stop') {
    throw new ConfigError(
      `${factory}: compensation.onGiveUp must be 'continue' or 'stop'; got ${JSON.stringify(onGiveUp)}.`,
      {
        details: { option: 'compensation.onGiveUp', value: onGiveUp },
      },
    );
  }
  return {
    attemptsMax,
    onGiveUp,
    backoff: resolveBackoff(
      factory,
      options?.backoff,
      compensationDefaults.backoff,
    ),
  };
}

/** The context fields compensation reads and writes. @internal */
export interface CompensableContext {
  input: unknown;
  steps: Record<
    string,
    { status: string; result: unknown; compensation: CompensationRecord | null }
  >;
  completed: string[];
  compensation: CompensationProgress;
}

/** A step that can be undone. @internal */
export interface Compensable {
  id: string;
  compensate?: Task<CompensateInput, unknown> | undefined;
}

/**
 * The actors, actions, guards and delays compensation needs, to merge into
 * a machine's `setup`, and the `compensating` state to place in its config.
 * `doneTarget` and `failedTarget` are the final states it ends in.
 * @internal
 */
export function buildCompensation(
  steps: readonly Compensable[],
  options: ResolvedCompensation,
  targets: { done: string; failed: string },
) {
  const undoable = steps.filter((s) => s.compensate !== undefined);
  const actors = Object.fromEntries(
    undoable.map((s) => [`compensate-${s.id}`, fromTask(s.compensate!)]),
  );

  type Args = { context: CompensableContext; event: AnyEventObject };
  const withRecord = (
    context: CompensableContext,
    id: string,
    change: Partial<CompensationRecord>,
  ) => ({
    ...context.steps,
    [id]: {
      ...context.steps[id]!,
      compensation: { ...context.steps[id]!.compensation!, ...change },
    },
  });

  const actions = {
    /** Fixes the queue: completed steps that can be undone, last completed first. */
    startCompensation: assign(({ context }: Args) => {
      const queue = [...context.completed]
        .reverse()
        .filter((id) => undoable.some((s) => s.id === id));
      const stepsState = { ...context.steps };
      for (const id of queue)
        stepsState[id] = {
          ...stepsState[id]!,
          compensation: { status: 'pending', attempts: [] },
        };
      return {
        steps: stepsState,
        compensation: {
          ...context.compensation,
          queue,
          attempt: 0,
          nextDelayMs: 0,
        },
      };
    }),
    countUndoAttempt: assign(({ context }: Args) => ({
      compensation: {
        ...context.compensation,
        attempt: context.compensation.attempt + 1,
      },
    })),
    undone: assign(({ context }: Args, params: { id: string }) => ({
      steps: withRecord(context, params.id, { status: 'compensated' }),
      compensation: {
        ...context.compensation,
        queue: context.compensation.queue.slice(1),
        attempt: 0,
      },
    })),
    undoFailed: assign(
      ({ context, event }: Args, params: { id: string; wait: boolean }) => {
        const { error } = toTaskFailure(event.error);
        const { delayMs, rng } = params.wait
          ? backoffDelay(
              options.backoff,
              context.compensation.attempt,
              context.compensation.rng,
            )
          : { delayMs: 0, rng: context.compensation.rng };
        const record = context.steps[params.id]!.compensation!;
        const attempts = [
          ...record.attempts,
          { attempt: context.compensation.attempt, error, delayMs },
        ];
        if (params.wait) {
          return {
            steps: withRecord(context, params.id, { attempts }),
            compensation: {
              ...context.compensation,
              nextDelayMs: delayMs,
              rng,
            },
          };
        }
        // Giving up on this step: with 'stop', the rest of the queue is left as is.
        let stepsState = withRecord(context, params.id, {
          status: 'failed',
          attempts,
        });
        const rest = context.compensation.queue.slice(1);
        if (options.onGiveUp === 'stop') {
          for (const id of rest) {
            stepsState = {
              ...stepsState,
              [id]: {
                ...stepsState[id]!,
                compensation: { status: 'skipped', attempts: [] },
              },
            };
          }
        }
        return {
          steps: stepsState,
          compensation: {
            ...context.compensation,
            queue: options.onGiveUp === 'stop' ? [] : rest,
            attempt: 0,
            rng,
          },
        };
      },
    ),
  };

  const guards = {
    undoAttemptsLeft: ({ context }: Args) =>
      context.compensation.attempt < options.attemptsMax,
    queueHeadIs: ({ context }: Args, params: { id: string }) =>
      context.compensation.queue[0] === params.id,
    anyUndoFailed: ({ context }: Args) =>
      Object.values(context.steps).some(
        (s) =>
          s.compensation?.status === 'failed' ||
          s.compensation?.status === 'skipped',
      ),
  };

  const delays = {
    compensationBackoff: ({ context }: { context: CompensableContext }) =>
      context.compensation.nextDelayMs,
  };

  const state = {
    entry: 'startCompensation',
    initial: 'next',
    states: {
      next: {
        always: [
          ...undoable.map((s) => ({
            guard: { type: 'queueHeadIs', params: { id: s.id } },
            target: `undo-${s.id}`,
          })),
          { guard: 'anyUndoFailed', target: targets.failed },
          { target: targets.done },
        ],
      },
      ...Object.fromEntries<object>(
        undoable.flatMap((s) => [
          [
            `undo-${s.id}`,
            {
              entry: 'countUndoAttempt',
              invoke: {
                id: `compensate-${s.id}`,
                src: `compensate-${s.id}`,
                input: ({ context }: { context: CompensableContext }) => ({
                  input: {
                    input: context.input,
                    result: context.steps[s.id]!.result,
                    results: Object.fromEntries(
                      context.completed.map((id) => [
                        id,
                        context.steps[id]!.result,
                      ]),
                    ),
                  },
                  attempt: context.compensation.attempt,
                }),
                onDone: {
                  target: 'next',
                  actions: { type: 'undone', params: { id: s.id } },
                },
                onError: [
                  {
                    guard: 'undoAttemptsLeft',
                    target: `wait-${s.id}`,
                    actions: {
                      type: 'undoFailed',
                      params: { id: s.id, wait: true },
                    },
                  },
                  {
                    target: 'next',
                    actions: {
                      type: 'undoFailed',
                      params: { id: s.id, wait: false },
                    },
                  },
                ],
              },
            },
          ],
          [`wait-${s.id}`, { after: { compensationBackoff: `undo-${s.id}` } }],
        ]),
      ),
    },
  };

  return { actors, actions, guards, delays, state };
}

/** The steps undone and not undone, from the records. @internal */
export function compensationSummary(context: CompensableContext): {
  undone: string[];
  notUndone: string[];
} {
  const undone: string[] = [];
  const notUndone: string[] = [];
  for (const id of [...context.completed].reverse()) {
    const c = context.steps[id]!.compensation;
    if (!c) continue;
    if (c.status === 'compensated') undone.push(id);
    else notUndone.push(id);
  }
  return { undone, notUndone };
}
