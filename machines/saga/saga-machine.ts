import { assign, setup, type AnyEventObject } from 'xstate';
import { ConfigError } from '../../src/errors.js';
import { seedFrom } from '../retry/backoff.js';
import { checkFunction, checkStepId } from '../shared/options.js';
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
} from './compensation.js';

/** What a saga step's `run` receives. */
export interface SagaStepInput<TInput = unknown> {
  /** The saga's input. */
  input: TInput;
  /** Results of the steps completed so far, by id. */
  results: Record<string, unknown>;
}

/** One step: an action and, optionally, the action that undoes it. */
export interface SagaStep<TInput = unknown> {
  /** Letters, digits, `_` or `-`; unique in the saga. */
  id: string;
  run: Task<SagaStepInput<TInput>, unknown>;
  /** Undoes a completed `run`. A step without one has nothing to undo (a read, say). */
  compensate?: Task<CompensateInput<TInput>, unknown>;
}

/** Steps that run at the same time; the saga goes on when all have finished. */
export interface SagaParallelGroup<TInput = unknown> {
  parallel: SagaStep<TInput>[];
}

export interface SagaMachineOptions<TInput> {
  /** Run in order; a group runs its steps in parallel. 1..100 steps in all. */
  steps: (SagaStep<TInput> | SagaParallelGroup<TInput>)[];
  compensation?: CompensationOptions;
  /** Machine id. Default `'saga'`. */
  id?: string;
}

/** How the saga ended; each is a final state of the same name. */
export type SagaOutcome = 'completed' | 'compensated' | 'compensationFailed';

/** A step's state in context. */
export interface SagaStepState {
  status: 'pending' | 'succeeded' | 'failed';
  result: unknown;
  error: SerializedError | null;
  /** Set for completed steps with a `compensate` once compensation starts. */
  compensation: CompensationRecord | null;
}

/** Plain data only, so the saga can be an entity. */
export interface SagaContext<TInput = unknown> {
  input: TInput | null;
  steps: Record<string, SagaStepState>;
  /** Ids of the completed steps, in the order they completed. */
  completed: string[];
  /** The first step that failed. */
  failedStep: string | null;
  compensation: CompensationProgress;
  /** Set on reaching a final state. */
  outcome: SagaOutcome | null;
}

/** One step in the output. */
export interface SagaStepReport {
  id: string;
  /** `'notRun'`: an earlier step failed first. */
  status: 'succeeded' | 'failed' | 'notRun';
  result?: unknown;
  error?: SerializedError;
  compensation?: CompensationRecord;
}

/** The saga's output. */
export interface SagaOutput {
  outcome: SagaOutcome;
  /** Every step, in definition order (groups flattened). */
  steps: SagaStepReport[];
  failedStep?: string;
  /** Completed steps whose undo succeeded, in the order they were undone. */
  undone: string[];
  /** Completed steps with a `compensate` that were not undone (it gave up, or `onGiveUp: 'stop'` skipped them). */
  notUndone: string[];
}

/** Machine input. */
export interface SagaInput<TInput = unknown> {
  input?: TInput;
  /** Seed for jittered compensation backoff; default derived from the input. */
  seed?: number;
}

/**
 * Bounds of the saga's options.
 *
 * @example
 * ```ts
 * if (steps.length > sagaLimits.stepsMax) splitIntoChildSagas(steps);
 * ```
 */
export const sagaLimits = { stepsMax: 100 } as const;

const factory = 'createSagaMachine';

type Stage<TInput> =
  | { kind: 'single'; step: SagaStep<TInput>; key: string }
  | { kind: 'group'; steps: SagaStep<TInput>[]; key: string };

/**
 * Creates a saga: steps run in order (a `{ parallel: [...] }` group runs
 * its steps at the same time); when a step fails, the completed steps are
 * undone with their `compensate`, in reverse order of completion. A failing
 * undo is retried with backoff; when it gives up, the saga ends in
 * `compensationFailed` and the output says what was and was not undone.
 * Final states: `completed`, `compensated`, `compensationFailed`.
 *
 * The statechart has one state per step (a parallel state per group) and
 * one `undo-<id>` state per step that can be undone, so the diagram shows
 * the saga. Steps are invoked with ids `run-<id>` and `compensate-<id>`;
 * when the saga is an entity, a step in flight at a restore runs again (at
 * least once), so steps and undos should be idempotent — pass the saga's
 * input (an order id, say) to the downstream service as the idempotency key.
 *
 * @example
 * ```ts
 * import { createActor, toPromise } from 'xstate';
 * import { createSagaMachine } from 'shardchart/machines';
 *
 * const booking = createSagaMachine<{ tripId: string }>({
 *   steps: [
 *     { id: 'flight', run: ({ input }) => flights.book(input.tripId), compensate: ({ result }) => flights.cancel(result) },
 *     {
 *       parallel: [
 *         { id: 'hotel', run: ({ input }) => hotels.book(input.tripId), compensate: ({ result }) => hotels.cancel(result) },
 *         { id: 'car', run: ({ input }) => cars.book(input.tripId), compensate: ({ result }) => cars.cancel(result) },
 *       ],
 *     },
 *     { id: 'charge', run: ({ input }) => payments.charge(input.tripId) },
 *   ],
 *   compensation: { attemptsMax: 5, backoff: { initialMs: 1_000, maxMs: 60_000 } },
 * });
 * const output = await toPromise(createActor(booking, { input: { input: { tripId: 't-1' } } }).start());
 * // output.outcome: 'completed' | 'compensated' | 'compensationFailed'
 * ```
 */
export function createSagaMachine<TInput = unknown>(
  options: SagaMachineOptions<TInput>,
) {
  const id = options.id ?? 'saga';
  const stages = checkSteps(options.steps);
  const flat = stages.flatMap((s) =>
    s.kind === 'single' ? [s.step] : s.steps,
  );
  const compensation = resolveCompensation(factory, options.compensation);
  const comp = buildCompensation(
    flat as { id: string; compensate?: Task<CompensateInput, unknown> }[],
    compensation,
    { done: `#${id}.compensated`, failed: `#${id}.compensationFailed` },
  );

  type Args = { context: SagaContext<TInput>; event: AnyEventObject };
  const runInput = ({ context }: { context: SagaContext<TInput> }) => ({
    input: {
      input: context.input as TInput,
      results: Object.fromEntries(
        context.completed.map((c) => [c, context.steps[c]!.result]),
      ),
    },
    attempt: 1,
  });
  const runInvoke = (stepId: string, onDone: object, onError: object) => ({
    id: `run-${stepId}`,
    src: `run-${stepId}`,
    input: runInput,
    onDone: {
      ...onDone,
      actions: { type: 'stepSucceeded', params: { id: stepId } },
    },
    onError: {
      ...onError,
      actions: { type: 'stepFailed', params: { id: stepId } },
    },
  });

  const stageStates: Record<string, object> = {};
  stages.forEach((stage, i) => {
    const next =
      i + 1 < stages.length ? stages[i + 1]!.key : `#${id}.completed`;
    if (stage.kind === 'single') {
      stageStates[stage.key] = {
        invoke: runInvoke(
          stage.step.id,
          { target: next },
          { target: `#${id}.compensating` },
        ),
      };
      return;
    }
    stageStates[stage.key] = {
      type: 'parallel',
      states: Object.fromEntries(
        stage.steps.map((s) => [
          s.id,
          {
            initial: 'running',
            states: {
              running: {
                invoke: runInvoke(
                  s.id,
                  { target: 'succeeded' },
                  { target: 'failed' },
                ),
              },
              succeeded: { type: 'final' },
              failed: { type: 'final' },
            },
          },
        ]),
      ),
      // All steps of the group have settled: only then is it known which
      // of them completed and must be undone.
      onDone: [
        { guard: 'anyStepFailed', target: `#${id}.compensating` },
        { target: next },
      ],
    };
  });

  return setup({
    types: {
      context: {} as SagaContext<TInput>,
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- XState's idiom; `{}` fits an all-optional input
      input: {} as SagaInput<TInput> | undefined,
      output: {} as SagaOutput,
    },
    actors: {
      ...Object.fromEntries(flat.map((s) => [`run-${s.id}`, fromTask(s.run)])),
      ...comp.actors,
    },
    delays: comp.delays,
    guards: {
      ...comp.guards,
      anyStepFailed: ({ context }: Args) => context.failedStep !== null,
    },
    actions: {
      // Built outside this setup, so their actor type parameter differs;
      // they touch only context, and the names are what the config uses.
      ...(comp.actions as unknown as Record<keyof typeof comp.actions, never>),
      // Params are typed `unknown` here (XState cannot infer them through
      // the generic context) and read as the `{ id }` the config passes.
      finish: assign((_: Args, params: unknown) => ({
        outcome: (params as { outcome: SagaOutcome }).outcome,
      })),
      stepSucceeded: assign(({ context, event }: Args, params: unknown) => {
        const { id: stepId } = params as { id: string };
        return {
          steps: {
            ...context.steps,
            [stepId]: {
              ...context.steps[stepId]!,
              status: 'succeeded' as const,
              result: taskResult(event),
            },
          },
          completed: [...context.completed, stepId],
        };
      }),
      stepFailed: assign(({ context, event }: Args, params: unknown) => {
        const { id: stepId } = params as { id: string };
        return {
          steps: {
            ...context.steps,
            [stepId]: {
              ...context.steps[stepId]!,
              status: 'failed' as const,
              error: toTaskFailure(event.error).error,
            },
          },
          failedStep: context.failedStep ?? stepId,
        };
      }),
    },
  }).createMachine({
    id,
    context: ({ input }) => ({
      input: input?.input ?? null,
      steps: Object.fromEntries(
        flat.map((s) => [
          s.id,
          { status: 'pending', result: null, error: null, compensation: null },
        ]),
      ),
      completed: [],
      failedStep: null,
      compensation: {
        queue: [],
        attempt: 0,
        nextDelayMs: 0,
        rng: seedFrom(input?.seed ?? input ?? null),
      },
      outcome: null,
    }),
    initial: 'running',
    ...({
      states: {
        running: { initial: stages[0]!.key, states: stageStates },
        compensating: comp.state,
        completed: {
          type: 'final',
          entry: { type: 'finish', params: { outcome: 'completed' } },
        },
        compensated: {
          type: 'final',
          entry: { type: 'finish', params: { outcome: 'compensated' } },
        },
        compensationFailed: {
          type: 'final',
          entry: { type: 'finish', params: { outcome: 'compensationFailed' } },
        },
      },
    } as object),
    output: ({ context }) => {
      const out: SagaOutput = {
        outcome: context.outcome ?? 'completed',
        steps: flat.map((s) => report(s.id, context.steps[s.id]!)),
        ...compensationSummary(context),
      };
      if (context.failedStep !== null) out.failedStep = context.failedStep;
      return out;
    },
  });
}

function report(id: string, s: SagaStepState): SagaStepReport {
  const r: SagaStepReport = {
    id,
    status: s.status === 'pending' ? 'notRun' : s.status,
  };
  if (s.status === 'succeeded') r.result = s.result;
  if (s.error) r.error = s.error;
  if (s.compensation) r.compensation = s.compensation;
  return r;
}

function checkSteps<TInput>(
  steps: SagaMachineOptions<TInput>['steps'],
): Stage<TInput>[] {
  if (!Array.isArray(steps) || steps.length === 0) {
    throw new ConfigError(
      `${factory}: steps must be a non-empty array of steps and { parallel: [...] } groups.`,
      { details: { option: 'steps' } },
    );
  }
  const seen = new Set<string>();
  const checkOne = (s: SagaStep<TInput>) => {
    if (typeof s !== 'object' || s === null) {
      throw new ConfigError(
        `${factory}: each step must be an object { id, run, compensate? }; got ${String(s)}.`,
        { details: { option: 'steps' } },
      );
    }
    checkStepId(factory, s.id);
    if (seen.has(s.id))
      throw new ConfigError(
        `${factory}: step id "${s.id}" is used twice; step ids must be unique.`,
        { details: { option: 'steps', id: s.id } },
      );
    seen.add(s.id);
    checkFunction(factory, `steps["${s.id}"].run`, s.run);
    if (s.compensate !== undefined)
      checkFunction(factory, `steps["${s.id}"].compensate`, s.compensate);
  };
  const stages = steps.map((entry): Stage<TInput> => {
    if (typeof entry === 'object' && entry !== null && 'parallel' in entry) {
      const group = entry.parallel;
      if (
        !Array.isArray(group) ||
        group.length === 0 ||
        group.some(
          (g) => typeof g === 'object' && g !== null && 'parallel' in g,
        )
      ) {
        throw new ConfigError(
          `${factory}: a parallel group must list one or more plain steps (groups do not nest).`,
          { details: { option: 'steps' } },
        );
      }
      group.forEach(checkOne);
      return {
        kind: 'group',
        steps: group,
        key: group.map((g) => g.id).join('+'),
      };
    }
    checkOne(entry);
    return { kind: 'single', step: entry, key: entry.id };
  });
  if (seen.size > sagaLimits.stepsMax) {
    throw new ConfigError(
      `${factory}: a saga holds at most ${sagaLimits.stepsMax} steps; got ${seen.size}. Split it into sagas that invoke each other.`,
      {
        details: { option: 'steps', count: seen.size },
      },
    );
  }
  return stages;
}
