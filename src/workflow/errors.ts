import { EntityError, ShardchartError, WorkflowError } from '../errors.js';
import type { PlainDataProblem } from '../codec/plain-data.js';
import type { ParamsIssue } from './schema.js';

/**
 * The errors a workflow function sees, and their journaled form. An error
 * that ends a step is recorded as plain data and rebuilt from the record,
 * live and in replay alike, so the function catches the same thing both
 * times (the original error object does not survive a restart, so relying
 * on it live would make replay take another path).
 */

/** An error as a step records it: plain data. */
export interface RecordedError {
  name: string;
  message: string;
  /** A ShardchartError code, when it is one. */
  code?: string;
  details?: Record<string, unknown>;
}

type WorkflowErrorCode = ConstructorParameters<typeof WorkflowError>[0];

const workflowCodes: ReadonlySet<string> = new Set<WorkflowErrorCode>([
  'ACTION_UNKNOWN',
  'ACTION_PARAMS_INVALID',
  'ACTION_TIMEOUT',
  'ACTION_FAILED',
  'WORKFLOW_DIVERGED',
  'WORKFLOW_STEPS_EXCEEDED',
  'TASK_NOT_FOUND',
  'TASK_ALREADY_COMPLETED',
  'TEMPLATE_FIELD_MISSING',
  'TENANT_INVALID',
]);

/** The name and message of any thrown value, as plain data. */
export function describeError(err: unknown): {
  name: string;
  message: string;
  code?: string;
} {
  if (err instanceof ShardchartError)
    return { name: err.name, message: err.message, code: err.code };
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string'
      ? { name: err.name, message: err.message, code }
      : { name: err.name, message: err.message };
  }
  return { name: 'Error', message: String(err) };
}

/** Records `err` as plain data. */
export function recordError(err: unknown): RecordedError {
  const base = describeError(err);
  const details = err instanceof ShardchartError ? err.details : undefined;
  return details === undefined ? base : { ...base, details: { ...details } };
}

/** Rebuilds a recorded error: a WorkflowError when it carries one of its codes. */
export function rebuildError(rec: RecordedError): Error {
  const cause = rec.details?.cause as
    { name?: string; message?: string } | undefined;
  const causeError =
    cause !== undefined && typeof cause.message === 'string'
      ? Object.assign(new Error(cause.message), { name: cause.name ?? 'Error' })
      : undefined;
  if (rec.code !== undefined && workflowCodes.has(rec.code)) {
    return new WorkflowError(rec.code as WorkflowErrorCode, rec.message, {
      ...(causeError ? { cause: causeError } : {}),
      ...(rec.details ? { details: rec.details } : {}),
    });
  }
  const err = new Error(rec.message);
  err.name = rec.name;
  if (rec.code !== undefined)
    (err as Error & { code?: string }).code = rec.code;
  return err;
}

export function actionUnknown(
  name: string,
  known: readonly string[],
): WorkflowError {
  return new WorkflowError(
    'ACTION_UNKNOWN',
    `Action "${name}" is not in the action registry (registered: ${known.length === 0 ? 'none' : known.map((n) => `"${n}"`).join(', ')}); register it with createActionRegistry().register("${name}", …) and pass the registry as "actions" to createActorSystem, or fix the name.`,
    { details: { action: name, registered: [...known] } },
  );
}

export function paramsInvalid(
  name: string,
  issues: readonly ParamsIssue[],
): WorkflowError {
  const list = issues
    .map((i) => `${i.path === '' ? '(params)' : i.path}: ${i.message}`)
    .join('; ');
  return new WorkflowError(
    'ACTION_PARAMS_INVALID',
    `The params of action "${name}" are invalid: ${list}. Fix these fields; the action was not run.`,
    { details: { action: name, issues: issues.map((i) => ({ ...i })) } },
  );
}

export function paramsNotPlain(
  name: string,
  problem: PlainDataProblem,
): WorkflowError {
  return paramsInvalid(name, [
    {
      path: problem.path.replace(/^\$/, '').replaceAll('.', '/'),
      message: problem.reason,
    },
  ]);
}

export function diverged(
  step: string,
  recorded: { kind: string; name: string },
  called: { kind: string; name: string },
): WorkflowError {
  return new WorkflowError(
    'WORKFLOW_DIVERGED',
    `Replaying the workflow took a different step than its journal recorded at step ${step}: the journal has ${describeStep(recorded)}, the code now calls ${describeStep(called)}. Deploy the change under a new workflow name (or version), or let running instances finish on the old code; the journal was not touched.`,
    { details: { step, recorded: { ...recorded }, called: { ...called } } },
  );
}

export function paramsDiverged(step: string, name: string): WorkflowError {
  return new WorkflowError(
    'WORKFLOW_DIVERGED',
    `Replaying the workflow reached action "${name}" at step ${step} with other params than its journal recorded. Either the code changed incompatibly, or steps that run at the same time were not put in ctx.parallel / ctx.dag branches (their order then depends on timing). Deploy the change under a new workflow name, or run concurrent sequences as branches; the journal was not touched.`,
    { details: { step, action: name } },
  );
}

export function finishedEarly(steps: number, recorded: number): WorkflowError {
  return new WorkflowError(
    'WORKFLOW_DIVERGED',
    `Replaying the workflow returned after ${steps} steps, but its journal recorded ${recorded}: the code changed incompatibly. Deploy the change under a new workflow name (or version), or let running instances finish on the old code; the journal was not touched.`,
    { details: { step: steps, recordedSteps: recorded } },
  );
}

export function stepsExceeded(stepsMax: number): WorkflowError {
  return new WorkflowError(
    'WORKFLOW_STEPS_EXCEEDED',
    `The workflow recorded ${stepsMax} steps (stepsMax), and each one is kept for replay. Raise "stepsMax" in defineWorkflow's options, or split the work: end this workflow and start a new one with its state as input.`,
    { details: { stepsMax } },
  );
}

export function dataNotPlain(
  key: string,
  problem: PlainDataProblem,
): EntityError {
  return new EntityError(
    'CONTEXT_NOT_SERIALIZABLE',
    `ctx.data.set("${key}", …): the value holds ${problem.path} that cannot be persisted: ${problem.reason}`,
    { details: { key, path: problem.path, kind: problem.kind } },
  );
}

function describeStep(s: { kind: string; name: string }): string {
  return s.name === ''
    ? `a "${s.kind}" step`
    : `a "${s.kind}" step "${s.name}"`;
}

/**
 * Thrown into a function whose actor stopped (passivation, a restart): that
 * run is abandoned where it stands and resumes by replay. Nobody sees it.
 * @internal
 */
export class WorkflowStoppedError extends Error {
  constructor() {
    super(
      'The workflow actor stopped; this run of the function is abandoned and resumes by replay.',
    );
    this.name = 'WorkflowStoppedError';
  }
}
