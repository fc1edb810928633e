import type { Logger } from 'pino';
import { checkPlainData, type PlainDataLimits } from '../codec/plain-data.js';
import { WorkflowError } from '../errors.js';
import type { Clock } from '../system/clock.js';
import type {
  ActionContext,
  BackoffPolicy,
  ResolvedAction,
} from './actions.js';
import { describeError, recordError, type RecordedError } from './errors.js';

/**
 * Running one action call to the end of its policy: attempts, per-attempt
 * timeouts and backoff on the system's clock, and the outcome as plain
 * data the journal can hold.
 */

/** How one call ended: its result, or the error the workflow will see. */
export type ActionOutcome =
  { ok: true; result: unknown } | { ok: false; error: RecordedError };

/** One call of an action, as the runner hands it over. @internal */
export interface ActionCall {
  readonly action: ResolvedAction;
  readonly params: unknown;
  readonly idempotencyKey: string;
  readonly tenant: string | undefined;
  readonly workflow: ActionContext['workflow'];
  readonly logger: Logger;
}

/**
 * Runs one call to the end of its retry policy. Resolves with the outcome,
 * or undefined when `signal` aborted it (the workflow stopped: nothing is
 * recorded, and the call runs again on the next activation). Never rejects.
 * @internal
 */
export async function executeAction(
  call: ActionCall,
  clock: Clock,
  signal: AbortSignal,
  resultLimits: PlainDataLimits,
): Promise<ActionOutcome | undefined> {
  const { action } = call;
  const failed = (error: WorkflowError): ActionOutcome => ({
    ok: false,
    error: recordError(error),
  });
  if (
    action.isolation === 'tenant' &&
    (typeof call.tenant !== 'string' || call.tenant.length === 0)
  ) {
    return failed(
      new WorkflowError(
        'TENANT_INVALID',
        `Action "${action.name}" has isolation 'tenant' but the workflow has no tenant; start the workflow with a trigger event that carries a non-empty string "tenant".`,
        { details: { action: action.name, step: call.workflow.stepId } },
      ),
    );
  }
  let last: unknown;
  let timedOut = false;
  let attempt = 0;
  while (attempt < action.attemptsMax) {
    attempt++;
    if (signal.aborted) return undefined;
    const attemptSignal = new AbortController();
    const onAbort = (): void => attemptSignal.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    let timer: unknown;
    try {
      const actx: ActionContext = {
        idempotencyKey: call.idempotencyKey,
        attempt,
        signal: attemptSignal.signal,
        tenant: call.tenant,
        workflow: call.workflow,
        logger: call.logger,
      };
      const timeout = new Promise<never>((_, reject) => {
        timer = clock.setTimeout(() => {
          const err = new WorkflowError(
            'ACTION_TIMEOUT',
            `Action "${action.name}" did not finish within ${action.timeoutMs} ms (attempt ${attempt} of ${action.attemptsMax}).`,
          );
          attemptSignal.abort(err);
          reject(err);
        }, action.timeoutMs);
      });
      // A synchronous throw from run is a failed attempt like any other.
      const result = await Promise.race([
        Promise.resolve().then(() => action.run(call.params, actx)),
        timeout,
      ]);
      if (signal.aborted) return undefined;
      const { problem } = checkPlainData(result, resultLimits);
      if (problem) {
        return failed(
          new WorkflowError(
            'ACTION_FAILED',
            `Action "${action.name}" resolved with a result that cannot be journaled: ${problem.path}: ${problem.reason} Return plain data (and a reference instead of large data).`,
            {
              details: {
                action: action.name,
                step: call.workflow.stepId,
                attempts: attempt,
                idempotencyKey: call.idempotencyKey,
                path: problem.path,
              },
            },
          ),
        );
      }
      return { ok: true, result };
    } catch (err) {
      if (signal.aborted) return undefined;
      last = err;
      timedOut =
        err instanceof WorkflowError &&
        err.code === 'ACTION_TIMEOUT' &&
        attemptSignal.signal.reason === err;
      let retryable: boolean;
      try {
        retryable = action.isRetryable(err);
      } catch (checkErr) {
        call.logger.error(
          { err: checkErr, action: action.name },
          'isRetryable threw; the error is treated as not retryable',
        );
        retryable = false;
      }
      if (!retryable || attempt >= action.attemptsMax) break;
      const delay = backoffMs(action.backoff, attempt);
      call.logger.warn(
        { action: action.name, attempt, delayMs: delay, err },
        'action attempt failed; retrying',
      );
      if (!(await sleep(clock, delay, signal))) return undefined;
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (timer !== undefined) clock.clearTimeout(timer);
    }
  }
  const details = {
    action: action.name,
    step: call.workflow.stepId,
    attempts: attempt,
    idempotencyKey: call.idempotencyKey,
    cause: describeError(last),
  };
  if (timedOut) {
    return failed(
      new WorkflowError(
        'ACTION_TIMEOUT',
        `Action "${action.name}" did not finish within ${action.timeoutMs} ms, ${attempt} attempt(s) in all; raise its timeoutMs or make it answer faster (it may still have run: use the idempotency key).`,
        { details: { ...details, timeoutMs: action.timeoutMs } },
      ),
    );
  }
  return failed(
    new WorkflowError(
      'ACTION_FAILED',
      `Action "${action.name}" failed after ${attempt} attempt(s): ${describeError(last).message}. Widen its retry policy, or catch this error in the workflow.`,
      { details },
    ),
  );
}

/** The delay before attempt `attempt + 1`. @internal */
export function backoffMs(
  policy: Required<BackoffPolicy>,
  attempt: number,
): number {
  return Math.min(
    policy.maxMs,
    Math.round(policy.initialMs * policy.multiplier ** (attempt - 1)),
  );
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(
  clock: Clock,
  ms: number,
  signal: AbortSignal,
): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const onAbort = (): void => {
      clock.clearTimeout(timer);
      resolve(false);
    };
    const timer = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
