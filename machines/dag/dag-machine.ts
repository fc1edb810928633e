import { assign, setup, type AnyEventObject } from 'xstate';
import { ConfigError } from '../../src/errors.js';
import {
  backoffDelay,
  resolveBackoff,
  seedFrom,
  type BackoffOptions,
} from '../retry/backoff.js';
import { checkFunction, checkInteger, checkStepId } from '../shared/options.js';
import type { SerializedError } from '../retry/serialise-error.js';
import {
  fromTask,
  taskResult,
  toTaskFailure,
  type Task,
} from '../retry/task.js';
import {
  buildCompensation,
  compensationSummary,
  resolveCompensation,
  type CompensateInput,
  type CompensationOptions,
  type CompensationProgress,
  type CompensationRecord,
} from '../saga/compensation.js';
import { executionPlan } from './plan.js';

/** What a DAG step's `run` receives. */
export interface DagStepInput<TInput = unknown> {
  /** The DAG's input. */
  input: TInput;
  /** Results of this step's dependencies, by id. */
  results: Record<string, unknown>;
}

/**
 * What happens when a step fails:
 * - `'stop'` (default): no further step starts, steps waiting to retry give up, steps already running finish; the DAG ends `failed`.
 * - `'continue'`: the steps that depend on it are skipped; the others go on; the DAG ends `completedWithFailures`.
 * - `'retry'`: the step runs again with backoff (`retry`), then does what `retry.then` says.
 * - `'compensate'`: no further step starts; once running steps finish, the completed ones are undone
 *   in reverse order of completion; the DAG ends `compensated` or `compensationFailed`.
 */
export type DagErrorStrategy = 'stop' | 'continue' | 'retry' | 'compensate';

/** Retry settings of a step with `onError: 'retry'`. */
export interface DagRetryOptions {
  /** Attempts in total, the first included. Default 3, 1..1 000. */
  attemptsMax?: number;
  /** Default `{ initialMs: 1_000, factor: 2, maxMs: 30_000, jitter: 'full' }`. */
  backoff?: Partial<BackoffOptions>;
  /** What to do when the attempts run out. Default `'stop'`. */
  then?: 'stop' | 'continue' | 'compensate';
}

/** One step of the graph. */
export interface DagStep<TInput = unknown> {
  /** Letters, digits, `_` or `-`; unique in the DAG. */
  id: string;
  /** Steps that must succeed before this one starts. */
  dependsOn?: string[];
  run: Task<DagStepInput<TInput>, unknown>;
  onError?: DagErrorStrategy;
  retry?: DagRetryOptions;
  /** Undoes a completed `run` when a `'compensate'` failure unwinds the DAG. */
  compensate?: Task<CompensateInput<TInput>, unknown>;
}

export interface DagMachineOptions<TInput> {
  /** 1..200 steps. */
  steps: DagStep<TInput>[];
  /** Steps running (or waiting to retry) at once, at most. 1..1 000. */
  concurrencyMax: number;
  /** Retries of undos, for `'compensate'` failures. */
  compensation?: CompensationOptions;
  /** Machine id. Default `'dag'`. */
  id?: string;
}

/** How the DAG ended; each is a final state of the same name. */
export type DagOutcome =
  | 'completed'
  | 'completedWithFailures'
  | 'failed'
  | 'compensated'
  | 'compensationFailed';

/** A step's state in context. `running` and `retrying` hold a concurrency slot. */
export interface DagStepState {
  status:
    'pending' | 'running' | 'retrying' | 'succeeded' | 'failed' | 'skipped';
  /** Attempts started. */
  attempts: number;
  result: unknown;
  /** Every failed attempt's error, in order. */
  errors: { attempt: number; error: SerializedError; delayMs: number }[];
  nextDelayMs: number;
  compensation: CompensationRecord | null;
}

/** Plain data only, so the DAG can be an entity. */
export interface DagContext<TInput = unknown> {
  input: TInput | null;
  steps: Record<string, DagStepState>;
  /** Ids in the order they started (first attempt). */
  started: string[];
  /** Ids in the order they succeeded. */
  completed: string[];
  /** Set by a `'stop'` or `'compensate'` failure: no further step starts. */
  halt: 'stop' | 'compensate' | null;
  /** xorshift32 state for retry jitter. */
  rng: number;
  compensation: CompensationProgress;
  outcome: DagOutcome | null;
}

/** One step in the output. */
export interface DagStepReport {
  id: string;
  /** `'skipped'`: never started (a dependency failed, or the DAG halted). */
  status: 'succeeded' | 'failed' | 'skipped';
  attempts: number;
  result?: unknown;
  errors?: DagStepState['errors'];
  compensation?: CompensationRecord;
}

/** The DAG's output. */
export interface DagOutput {
  outcome: DagOutcome;
  /** Every step, in definition order. */
  steps: DagStepReport[];
  /** Ids in the order they started. */
  started: string[];
  /** Steps that failed (after their retries). */
  failed: string[];
  /** Completed steps undone, in the order undone (after a `'compensate'` failure). */
  undone: string[];
  /** Completed steps with a `compensate` that were not undone. */
  notUndone: string[];
}

/** Machine input. */
export interface DagInput<TInput = unknown> {
  input?: TInput;
  /** Seed for retry and undo jitter; default derived from the input. */
  seed?: number;
}

/**
 * Bounds of the DAG's options.
 *
 * @example
 * ```ts
 * createDagMachine({ steps, concurrencyMax: Math.min(workers, dagLimits.concurrencyMax) });
 * ```
 */
export const dagLimits = {
  stepsMax: 200,
  concurrencyMax: 1_000,
  retryAttemptsMax: 1_000,
} as const;

const factory = 'createDagMachine';
const retryDefaults: BackoffOptions = {
  initialMs: 1_000,
  factor: 2,
  maxMs: 30_000,
  jitter: 'full',
};

interface ResolvedStep<TInput> {
  step: DagStep<TInput>;
  deps: string[];
  onError: DagErrorStrategy;
  attemptsMax: number;
  backoff: BackoffOptions;
  then: 'stop' | 'continue' | 'compensate';
}

/**
 * Creates a machine that runs a dependency graph of steps: a step starts
 * once every step it depends on has succeeded, at most `concurrencyMax`
 * run at once, and each step's `onError` decides what its failure does
 * (`stop`, `continue`, `retry`, `compensate`; see {@link DagErrorStrategy}).
 * A cycle or an unknown dependency is refused at creation
 * (`DefinitionError` `DAG_CYCLE` / `DAG_DEPENDENCY_MISSING`).
 *
 * The statechart is one parallel region per step (pending → running →
 * succeeded | failed | skipped, with a retry wait), so the diagram shows
 * the graph's steps side by side. Which pending steps start is decided by
 * one `schedule` action over context, in plan order, after every change:
 * a region's eventless transition only follows that decision, so the
 * concurrency bound holds even when several steps become ready in the same
 * instant. Steps are invoked with ids `run-<id>`; retry waits are `after`
 * timers, durable when the DAG is an entity.
 *
 * @example
 * ```ts
 * import { createActor, toPromise } from 'xstate';
 * import { createDagMachine } from 'shardchart/machines';
 *
 * const pipeline = createDagMachine<{ url: string }>({
 *   concurrencyMax: 2,
 *   steps: [
 *     { id: 'fetch', run: ({ input }) => download(input.url), onError: 'retry', retry: { attemptsMax: 5 } },
 *     { id: 'thumbnail', dependsOn: ['fetch'], run: ({ results }) => resize(results.fetch) },
 *     { id: 'scan', dependsOn: ['fetch'], run: ({ results }) => virusScan(results.fetch), onError: 'continue' },
 *     { id: 'publish', dependsOn: ['thumbnail', 'scan'], run: ({ results }) => publish(results) },
 *   ],
 * });
 * const output = await toPromise(createActor(pipeline, { input: { input: { url: 'https://example.com/a.png' } } }).start());
 * // output.outcome: 'completed' | 'completedWithFailures' | 'failed' | 'compensated' | 'compensationFailed'
 * ```
 */
export function createDagMachine<TInput = unknown>(
  options: DagMachineOptions<TInput>,
) {
  const id = options.id ?? 'dag';
  checkInteger(
    factory,
    'concurrencyMax',
    options.concurrencyMax,
    1,
    dagLimits.concurrencyMax,
  );
  const concurrencyMax = options.concurrencyMax;
  const resolved = resolveSteps(options.steps);
  // In plan order, so the scheduler looks at a step after its dependencies.
  const planOrder = executionPlan(options.steps).flat();
  const byId = new Map(resolved.map((r) => [r.step.id, r]));
  const compensation = resolveCompensation(factory, options.compensation);
  const comp = buildCompensation(
    resolved.map((r) => r.step) as {
      id: string;
      compensate?: Task<CompensateInput, unknown>;
    }[],
    compensation,
    { done: `#${id}.compensated`, failed: `#${id}.compensationFailed` },
  );

  type Args = { context: DagContext<TInput>; event: AnyEventObject };
  const idOf = (params: unknown) => (params as { id: string }).id;
  const withStep = (
    context: DagContext<TInput>,
    stepId: string,
    change: Partial<DagStepState>,
  ) => ({
    ...context.steps,
    [stepId]: { ...context.steps[stepId]!, ...change },
  });

  const regions = Object.fromEntries(
    resolved.map((r) => {
      const sid = r.step.id;
      const p = { id: sid };
      return [
        sid,
        {
          initial: 'pending',
          states: {
            pending: {
              always: [
                {
                  guard: {
                    type: 'statusIs',
                    params: { id: sid, status: 'running' },
                  },
                  target: 'running',
                },
                {
                  guard: {
                    type: 'statusIs',
                    params: { id: sid, status: 'skipped' },
                  },
                  target: 'skipped',
                },
              ],
            },
            running: {
              entry: { type: 'countAttempt', params: p },
              invoke: {
                id: `run-${sid}`,
                src: `run-${sid}`,
                input: ({ context }: { context: DagContext<TInput> }) => ({
                  input: {
                    input: context.input as TInput,
                    results: Object.fromEntries(
                      r.deps.map((d) => [d, context.steps[d]!.result]),
                    ),
                  },
                  attempt: context.steps[sid]!.attempts,
                }),
                onDone: {
                  target: 'succeeded',
                  actions: [{ type: 'stepSucceeded', params: p }, 'schedule'],
                },
                onError: [
                  ...(r.onError === 'retry'
                    ? [
                        {
                          guard: { type: 'canRetry', params: p },
                          target: 'retrying',
                          actions: { type: 'stepRetrying', params: p },
                        },
                      ]
                    : []),
                  {
                    target: 'failed',
                    actions: [{ type: 'stepFailed', params: p }, 'schedule'],
                  },
                ],
              },
            },
            ...(r.onError === 'retry'
              ? {
                  retrying: {
                    // A halt elsewhere ends the wait: no new attempt starts
                    // once the DAG is stopping or unwinding.
                    always: {
                      guard: 'haltedAny',
                      target: 'failed',
                      actions: [
                        { type: 'abandonRetry', params: p },
                        'schedule',
                      ],
                    },
                    after: { [`backoff-${sid}`]: 'running' },
                  },
                }
              : {}),
            succeeded: { type: 'final' },
            failed: { type: 'final' },
            skipped: { type: 'final' },
          },
        },
      ];
    }),
  );

  const finish = (outcome: DagOutcome) => ({
    type: 'final',
    entry: { type: 'finish', params: { outcome } },
  });

  return setup({
    types: {
      context: {} as DagContext<TInput>,
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- XState's idiom; `{}` fits an all-optional input
      input: {} as DagInput<TInput> | undefined,
      output: {} as DagOutput,
    },
    actors: {
      ...Object.fromEntries(
        resolved.map((r) => [`run-${r.step.id}`, fromTask(r.step.run)]),
      ),
      ...comp.actors,
    },
    delays: {
      ...comp.delays,
      ...Object.fromEntries(
        resolved.map((r) => [
          `backoff-${r.step.id}`,
          ({ context }: { context: DagContext<TInput> }) =>
            context.steps[r.step.id]!.nextDelayMs,
        ]),
      ),
    },
    guards: {
      ...comp.guards,
      statusIs: ({ context }: Args, params: unknown) => {
        const { id: sid, status } = params as { id: string; status: string };
        return context.steps[sid]!.status === status;
      },
      canRetry: ({ context, event }: Args, params: unknown) => {
        const r = byId.get(idOf(params))!;
        return (
          r.onError === 'retry' &&
          context.halt === null &&
          toTaskFailure(event.error).retryable &&
          context.steps[r.step.id]!.attempts < r.attemptsMax
        );
      },
      halted: ({ context }: Args) => context.halt === 'stop',
      haltedAny: ({ context }: Args) => context.halt !== null,
      compensating: ({ context }: Args) => context.halt === 'compensate',
      anyFailed: ({ context }: Args) =>
        Object.values(context.steps).some((s) => s.status === 'failed'),
    },
    actions: {
      // Built outside this setup, so their actor type parameter differs;
      // they touch only context, and the names are what the config uses.
      ...(comp.actions as unknown as Record<keyof typeof comp.actions, never>),
      finish: assign((_: Args, params: unknown) => ({
        outcome: (params as { outcome: DagOutcome }).outcome,
      })),
      /**
       * The one place that starts steps: walks pending steps in plan order
       * and marks as `running` those whose dependencies all succeeded, while
       * slots are free; marks as `skipped` those that can no longer run.
       */
      schedule: assign(({ context }: Args) => {
        const steps = { ...context.steps };
        const started = [...context.started];
        let active = Object.values(steps).filter(
          (s) => s.status === 'running' || s.status === 'retrying',
        ).length;
        for (const sid of planOrder) {
          const s = steps[sid]!;
          if (s.status !== 'pending') continue;
          const deps = byId.get(sid)!.deps.map((d) => steps[d]!.status);
          if (
            context.halt !== null ||
            deps.some((st) => st === 'failed' || st === 'skipped')
          ) {
            steps[sid] = { ...s, status: 'skipped' };
          } else if (
            deps.every((st) => st === 'succeeded') &&
            active < concurrencyMax
          ) {
            steps[sid] = { ...s, status: 'running' };
            started.push(sid);
            active++;
          }
        }
        return { steps, started };
      }),
      countAttempt: assign(({ context }: Args, params: unknown) => {
        const sid = idOf(params);
        return {
          steps: withStep(context, sid, {
            status: 'running',
            attempts: context.steps[sid]!.attempts + 1,
          }),
        };
      }),
      stepSucceeded: assign(({ context, event }: Args, params: unknown) => {
        const sid = idOf(params);
        return {
          steps: withStep(context, sid, {
            status: 'succeeded',
            result: taskResult(event),
          }),
          completed: [...context.completed, sid],
        };
      }),
      stepRetrying: assign(({ context, event }: Args, params: unknown) => {
        const r = byId.get(idOf(params))!;
        const s = context.steps[r.step.id]!;
        const { delayMs, rng } = backoffDelay(
          r.backoff,
          s.attempts,
          context.rng,
        );
        return {
          rng,
          steps: withStep(context, r.step.id, {
            status: 'retrying',
            nextDelayMs: delayMs,
            errors: [
              ...s.errors,
              {
                attempt: s.attempts,
                error: toTaskFailure(event.error).error,
                delayMs,
              },
            ],
          }),
        };
      }),
      abandonRetry: assign(({ context }: Args, params: unknown) => ({
        steps: withStep(context, idOf(params), { status: 'failed' }),
      })),
      stepFailed: assign(({ context, event }: Args, params: unknown) => {
        const r = byId.get(idOf(params))!;
        const s = context.steps[r.step.id]!;
        const strategy = r.onError === 'retry' ? r.then : r.onError;
        const halt: DagContext['halt'] =
          context.halt === 'compensate' || strategy === 'compensate'
            ? 'compensate'
            : strategy === 'stop'
              ? 'stop'
              : context.halt;
        return {
          halt,
          steps: withStep(context, r.step.id, {
            status: 'failed',
            errors: [
              ...s.errors,
              {
                attempt: s.attempts,
                error: toTaskFailure(event.error).error,
                delayMs: 0,
              },
            ],
          }),
        };
      }),
    },
  }).createMachine({
    id,
    context: ({ input }) => ({
      input: input?.input ?? null,
      steps: Object.fromEntries(
        resolved.map((r) => [
          r.step.id,
          {
            status: 'pending',
            attempts: 0,
            result: null,
            errors: [],
            nextDelayMs: 0,
            compensation: null,
          },
        ]),
      ),
      started: [],
      completed: [],
      halt: null,
      rng: seedFrom(input?.seed ?? input ?? null),
      compensation: {
        queue: [],
        attempt: 0,
        nextDelayMs: 0,
        rng: seedFrom(['compensation', input?.seed ?? input ?? null]),
      },
      outcome: null,
    }),
    initial: 'running',
    ...({
      states: {
        running: {
          type: 'parallel',
          entry: 'schedule',
          states: regions,
          // Every step is final (succeeded, failed or skipped): decide how the run ends.
          onDone: [
            { guard: 'compensating', target: 'compensating' },
            { guard: 'halted', target: 'failed' },
            { guard: 'anyFailed', target: 'completedWithFailures' },
            { target: 'completed' },
          ],
        },
        compensating: comp.state,
        completed: finish('completed'),
        completedWithFailures: finish('completedWithFailures'),
        failed: finish('failed'),
        compensated: finish('compensated'),
        compensationFailed: finish('compensationFailed'),
      },
    } as object),
    output: ({ context }) => ({
      outcome: context.outcome ?? 'failed',
      steps: resolved.map((r) => report(r.step.id, context.steps[r.step.id]!)),
      started: context.started,
      failed: resolved
        .filter((r) => context.steps[r.step.id]!.status === 'failed')
        .map((r) => r.step.id),
      ...compensationSummary(context as never),
    }),
  });
}

function report(id: string, s: DagStepState): DagStepReport {
  const r: DagStepReport = {
    id,
    status:
      s.status === 'succeeded' || s.status === 'failed' ? s.status : 'skipped',
    attempts: s.attempts,
  };
  if (s.status === 'succeeded') r.result = s.result;
  if (s.errors.length > 0) r.errors = s.errors;
  if (s.compensation) r.compensation = s.compensation;
  return r;
}

function resolveSteps<TInput>(
  steps: DagStep<TInput>[],
): ResolvedStep<TInput>[] {
  if (!Array.isArray(steps) || steps.length === 0) {
    throw new ConfigError(
      `${factory}: steps must be a non-empty array of { id, dependsOn?, run, onError? }.`,
      { details: { option: 'steps' } },
    );
  }
  if (steps.length > dagLimits.stepsMax) {
    throw new ConfigError(
      `${factory}: a DAG holds at most ${dagLimits.stepsMax} steps; got ${steps.length}. Split it into DAGs that invoke each other.`,
      {
        details: { option: 'steps', count: steps.length },
      },
    );
  }
  return steps.map((step) => {
    if (typeof step !== 'object' || step === null) {
      throw new ConfigError(
        `${factory}: each step must be an object { id, dependsOn?, run, onError? }; got ${String(step)}.`,
        { details: { option: 'steps' } },
      );
    }
    checkStepId(factory, step.id);
    checkFunction(factory, `steps["${step.id}"].run`, step.run);
    if (step.compensate !== undefined)
      checkFunction(factory, `steps["${step.id}"].compensate`, step.compensate);
    const onError = step.onError ?? 'stop';
    if (!['stop', 'continue', 'retry', 'compensate'].includes(onError)) {
      throw new ConfigError(
        `${factory}: steps["${step.id}"].onError must be 'stop', 'continue', 'retry' or 'compensate'; got ${JSON.stringify(onError)}.`,
        {
          details: { option: 'onError', id: step.id },
        },
      );
    }
    const attemptsMax = step.retry?.attemptsMax ?? 3;
    checkInteger(
      factory,
      `steps["${step.id}"].retry.attemptsMax`,
      attemptsMax,
      1,
      dagLimits.retryAttemptsMax,
    );
    const then = step.retry?.then ?? 'stop';
    if (!['stop', 'continue', 'compensate'].includes(then)) {
      throw new ConfigError(
        `${factory}: steps["${step.id}"].retry.then must be 'stop', 'continue' or 'compensate'; got ${JSON.stringify(then)}.`,
        {
          details: { option: 'retry.then', id: step.id },
        },
      );
    }
    return {
      step,
      deps: [...new Set(step.dependsOn ?? [])],
      onError,
      attemptsMax,
      backoff: resolveBackoff(factory, step.retry?.backoff, retryDefaults),
      then,
    };
  });
}
