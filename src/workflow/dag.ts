import { ConfigError } from '../errors.js';
import {
  recordError,
  WorkflowStoppedError,
  type RecordedError,
} from './errors.js';
import { executionPlan } from './plan.js';
import { branchScope, type Scopes } from './scopes.js';
import type { StepRecord } from './types.js';

/**
 * `ctx.parallel` and `ctx.dag`: branches of a workflow function that run at
 * the same time. Each branch is numbered in its own scope (scopes.ts), so
 * replay does not depend on which branch finished first. Where the order
 * matters to what the function does next (a DAG starts, skips, halts and
 * undoes steps by the order they finish), it is recorded as a step of the
 * DAG's own scope, and a replay takes finishes in the recorded order.
 *
 * The strategies are those of the DAG machine (machines/dag), and the same
 * planner checks the graph, so a workflow and a machine read one step
 * graph the same way.
 */

/** What happens when a DAG step fails (as in machines/dag). */
export type WorkflowDagErrorStrategy =
  'stop' | 'continue' | 'retry' | 'compensate';

/** One step of `ctx.dag`. */
export interface WorkflowDagStep<TResult = unknown> {
  /** Letters, digits, `_` or `-`; unique in the DAG. */
  id: string;
  /** Steps that must succeed before this one starts. */
  dependsOn?: readonly string[];
  /** The step's work (ctx calls inside are its steps); gets its dependencies' results by id. */
  run: (results: Record<string, unknown>) => Promise<TResult>;
  /**
   * - `'stop'` (default): no further step starts; running steps finish; the DAG ends `failed`.
   * - `'continue'`: the steps that depend on it are skipped, the others go on; ends `completedWithFailures`.
   * - `'retry'`: runs again after a durable backoff (`retry`), then does what `retry.then` says.
   * - `'compensate'`: no further step starts; once running steps finish, completed steps are undone
   *   with their `compensate`, in reverse order of completion; ends `compensated` or `compensationFailed`.
   */
  onError?: WorkflowDagErrorStrategy;
  retry?: {
    /** Attempts in all, the first included. Default 3, at most 100. */
    attemptsMax?: number;
    /** Delay before the second attempt. Default 1_000. */
    backoffMs?: number;
    /** Factor per further attempt. Default 2. */
    multiplier?: number;
    /** Largest delay. Default 60_000. */
    maxMs?: number;
    /** What to do when the attempts run out. Default `'stop'`. */
    then?: 'stop' | 'continue' | 'compensate';
  };
  /** Undoes a completed `run` when a `'compensate'` failure unwinds the DAG. */
  compensate?: (result: TResult) => Promise<unknown>;
}

export interface WorkflowDagOptions {
  /** Steps running at once, at most. Default: all that are ready. */
  concurrencyMax?: number;
}

/** How a DAG ended (as in machines/dag). */
export type WorkflowDagOutcome =
  | 'completed'
  | 'completedWithFailures'
  | 'failed'
  | 'compensated'
  | 'compensationFailed';

export interface WorkflowDagStepReport {
  id: string;
  /** `'skipped'`: never started (a dependency failed, or the DAG halted). */
  status: 'succeeded' | 'failed' | 'skipped';
  attempts: number;
  result?: unknown;
  /** The last attempt's error. */
  error?: RecordedError;
  /** After a `'compensate'` failure: whether its `compensate` ran, and how it ended. */
  undo?: { ok: true } | { ok: false; error: RecordedError };
}

/** What `ctx.dag` resolves with. */
export interface WorkflowDagResult {
  outcome: WorkflowDagOutcome;
  /** Every step, in definition order. */
  steps: WorkflowDagStepReport[];
  /** Results of the steps that succeeded, by id. */
  results: Record<string, unknown>;
  /** Ids in the order they started. */
  started: string[];
  /** Ids in the order they succeeded. */
  completed: string[];
  /** Ids of the steps that failed (after their retries). */
  failed: string[];
  /** Completed steps undone, in the order undone. */
  undone: string[];
  /** Completed steps with a `compensate` whose undo failed. */
  notUndone: string[];
}

/** What branches need from the runner. @internal */
export interface BranchHost {
  readonly scopes: Scopes;
  mark(kind: 'parallel' | 'dag' | 'dag.settle', name: string): string;
  peekRecorded(): StepRecord | undefined;
  sleep(ms: number): Promise<void>;
}

/** Bounds of `ctx.parallel` and `ctx.dag`. */
export const branchLimits = {
  branchesMax: 1_000,
  dagStepsMax: 200,
  attemptsMax: 100,
} as const;

const stepIdPattern = /^[A-Za-z0-9_-]+$/;

/**
 * Runs `branches` at the same time, each in its own scope. Resolves with
 * their results in order once all have finished; if any failed, rejects
 * with the error of the first failed branch by position (not by time, which
 * a replay would not reproduce), after all have finished.
 * @internal
 */
export async function runParallel(
  host: BranchHost,
  branches: readonly (() => Promise<unknown>)[],
): Promise<unknown[]> {
  // Checked as unknown: a caller without types may pass anything.
  const given: unknown = branches;
  if (
    !Array.isArray(given) ||
    given.some((b) => typeof b !== 'function') ||
    given.length > branchLimits.branchesMax
  ) {
    throw new ConfigError(
      `ctx.parallel expects an array of at most ${branchLimits.branchesMax} functions () => Promise.`,
    );
  }
  const id = host.mark('parallel', String(branches.length));
  const settled = await Promise.allSettled(
    branches.map((branch, k) =>
      host.scopes.run(branchScope(id, k), () =>
        Promise.resolve().then(() => branch()),
      ),
    ),
  );
  const failure = settled.find((s) => s.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value);
}

interface StepState {
  status: 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped';
  attempts: number;
  result?: unknown;
  error?: RecordedError;
  undo?: WorkflowDagStepReport['undo'];
}

type Finish =
  { ok: true; value: unknown } | { ok: false; error: RecordedError };

/** Runs a step graph (see {@link WorkflowDagStep}). @internal */
export async function runDag(
  host: BranchHost,
  steps: readonly WorkflowDagStep[],
  options: WorkflowDagOptions = {},
): Promise<WorkflowDagResult> {
  checkSteps(steps);
  executionPlan(
    steps.map((s) => ({ id: s.id, dependsOn: [...(s.dependsOn ?? [])] })),
  );
  const concurrencyMax = options.concurrencyMax ?? steps.length;
  if (!Number.isSafeInteger(concurrencyMax) || concurrencyMax < 1) {
    throw new ConfigError(
      `ctx.dag: concurrencyMax must be an integer >= 1; got ${JSON.stringify(options.concurrencyMax)}.`,
    );
  }
  const dagId = host.mark('dag', steps.map((s) => s.id).join(','));
  return host.scopes.run(dagId, () =>
    schedule(host, dagId, steps, concurrencyMax),
  );
}

async function schedule(
  host: BranchHost,
  dagId: string,
  steps: readonly WorkflowDagStep[],
  concurrencyMax: number,
): Promise<WorkflowDagResult> {
  const state = new Map<string, StepState>(
    steps.map((s) => [s.id, { status: 'pending', attempts: 0 }]),
  );
  const running = new Map<string, Promise<Finish>>();
  const started: string[] = [];
  const completed: string[] = [];
  const failed: string[] = [];
  let halt: 'stop' | 'compensate' | undefined;
  for (;;) {
    skipUnreachable(steps, state);
    if (halt === undefined) {
      for (const s of steps) {
        if (running.size >= concurrencyMax) break;
        const st = state.get(s.id)!;
        const deps = s.dependsOn ?? [];
        if (
          st.status !== 'pending' ||
          !deps.every((d) => state.get(d)!.status === 'succeeded')
        )
          continue;
        st.status = 'running';
        started.push(s.id);
        const results = Object.fromEntries(
          deps.map((d) => [d, state.get(d)!.result]),
        );
        const run = host.scopes.run(branchScope(dagId, s.id), () =>
          runStep(host, s, results, st),
        );
        // Rejects only when the run is abandoned (stopped, or failed by a
        // divergence); whoever awaits it sees that, and the rest must not
        // surface as unhandled.
        run.catch(() => undefined);
        running.set(s.id, run);
      }
    }
    if (running.size === 0) break;
    // Which step finished next: the recorded one on replay, else the first to settle now.
    const rec = host.peekRecorded();
    const next =
      rec?.kind === 'dag.settle' && running.has(rec.name)
        ? rec.name
        : rec !== undefined
          ? [...running.keys()][0]! // diverged: mark() below reports it
          : await Promise.race(
              [...running].map(([id, p]) =>
                p.then(
                  () => id,
                  () => id,
                ),
              ),
            );
    host.mark('dag.settle', next);
    const finish = await running.get(next)!;
    running.delete(next);
    const st = state.get(next)!;
    if (finish.ok) {
      st.status = 'succeeded';
      st.result = finish.value;
      completed.push(next);
      continue;
    }
    st.status = 'failed';
    st.error = finish.error;
    failed.push(next);
    const step = steps.find((s) => s.id === next)!;
    const strategy =
      step.onError === 'retry'
        ? (step.retry?.then ?? 'stop')
        : (step.onError ?? 'stop');
    if (strategy === 'compensate') halt = 'compensate';
    else if (strategy === 'stop') halt ??= 'stop';
  }
  for (const st of state.values())
    if (st.status === 'pending') st.status = 'skipped';
  const undone: string[] = [];
  const notUndone: string[] = [];
  if (halt === 'compensate') {
    for (const id of [...completed].reverse()) {
      const step = steps.find((s) => s.id === id)!;
      if (step.compensate === undefined) continue;
      const st = state.get(id)!;
      try {
        await host.scopes.run(branchScope(dagId, `${id}~undo`), () =>
          Promise.resolve().then(() => step.compensate!(st.result)),
        );
        st.undo = { ok: true };
        undone.push(id);
      } catch (err) {
        if (err instanceof WorkflowStoppedError) throw err;
        st.undo = { ok: false, error: recordError(err) };
        notUndone.push(id);
      }
    }
  }
  const outcome: WorkflowDagOutcome =
    halt === 'compensate'
      ? notUndone.length > 0
        ? 'compensationFailed'
        : 'compensated'
      : halt === 'stop'
        ? 'failed'
        : failed.length > 0
          ? 'completedWithFailures'
          : 'completed';
  return {
    outcome,
    steps: steps.map((s) => report(s.id, state.get(s.id)!)),
    results: Object.fromEntries(
      completed.map((id) => [id, state.get(id)!.result]),
    ),
    started,
    completed,
    failed,
    undone,
    notUndone,
  };
}

/** One step with its retries; resolves with how it finished, never rejects (but for a stopped run). */
async function runStep(
  host: BranchHost,
  step: WorkflowDagStep,
  results: Record<string, unknown>,
  st: StepState,
): Promise<Finish> {
  const retry = step.retry ?? {};
  const attemptsMax = step.onError === 'retry' ? (retry.attemptsMax ?? 3) : 1;
  for (let attempt = 1; ; attempt++) {
    st.attempts = attempt;
    try {
      return { ok: true, value: await step.run(results) };
    } catch (err) {
      if (err instanceof WorkflowStoppedError) throw err;
      if (attempt >= attemptsMax) return { ok: false, error: recordError(err) };
      const delay = Math.min(
        retry.maxMs ?? 60_000,
        Math.round(
          (retry.backoffMs ?? 1_000) * (retry.multiplier ?? 2) ** (attempt - 1),
        ),
      );
      // A durable timer: a retry due while the process is down still comes.
      await host.sleep(delay);
    }
  }
}

/** Marks pending steps skipped when a dependency failed or was skipped (transitively). */
function skipUnreachable(
  steps: readonly WorkflowDagStep[],
  state: Map<string, StepState>,
): void {
  for (let changed = true; changed;) {
    changed = false;
    for (const s of steps) {
      const st = state.get(s.id)!;
      if (st.status !== 'pending') continue;
      if (
        (s.dependsOn ?? []).some((d) =>
          ['failed', 'skipped'].includes(state.get(d)!.status),
        )
      ) {
        st.status = 'skipped';
        changed = true;
      }
    }
  }
}

function report(id: string, st: StepState): WorkflowDagStepReport {
  const out: WorkflowDagStepReport = {
    id,
    status: st.status as WorkflowDagStepReport['status'],
    attempts: st.attempts,
  };
  if (st.status === 'succeeded') out.result = st.result;
  if (st.error !== undefined) out.error = st.error;
  if (st.undo !== undefined) out.undo = st.undo;
  return out;
}

function checkSteps(steps: readonly WorkflowDagStep[]): void {
  // Checked as unknown: a caller without types may pass anything.
  const given: unknown = steps;
  if (
    !Array.isArray(given) ||
    steps.length === 0 ||
    steps.length > branchLimits.dagStepsMax
  ) {
    throw new ConfigError(
      `ctx.dag expects an array of 1 to ${branchLimits.dagStepsMax} steps { id, dependsOn?, run }.`,
    );
  }
  for (const s of steps) {
    const where = `ctx.dag step ${JSON.stringify((s as { id?: unknown } | null)?.id)}`;
    if (
      typeof s !== 'object' ||
      s === null ||
      typeof s.id !== 'string' ||
      !stepIdPattern.test(s.id)
    ) {
      throw new ConfigError(
        `${where}: the id must be letters, digits, "_" or "-".`,
      );
    }
    if (typeof s.run !== 'function')
      throw new ConfigError(
        `${where}: "run" must be a function (results) => Promise.`,
      );
    if (s.compensate !== undefined && typeof s.compensate !== 'function')
      throw new ConfigError(`${where}: "compensate" must be a function.`);
    if (
      s.onError !== undefined &&
      !['stop', 'continue', 'retry', 'compensate'].includes(s.onError)
    ) {
      throw new ConfigError(
        `${where}: onError is 'stop', 'continue', 'retry' or 'compensate'; got ${JSON.stringify(s.onError)}.`,
      );
    }
    const attempts = s.retry?.attemptsMax;
    if (
      attempts !== undefined &&
      (!Number.isSafeInteger(attempts) ||
        attempts < 1 ||
        attempts > branchLimits.attemptsMax)
    ) {
      throw new ConfigError(
        `${where}: retry.attemptsMax must be an integer from 1 to ${branchLimits.attemptsMax}.`,
      );
    }
  }
}
