import { fromPromise } from 'xstate';
import {
  isSerializedError,
  serialiseError,
  type SerializedError,
} from './serialise-error.js';

/**
 * How the machines in this folder and its siblings run user code: a task is a
 * promise-creator, wrapped with `fromPromise` so it can be invoked (with an
 * explicit invoke id, which is what lets a persisted entity restore it).
 */

/** Extra arguments a task receives besides its input. */
export interface TaskOptions {
  /** Aborted when the invoking state is left (deadline passed, machine stopped). */
  signal: AbortSignal;
  /** 1 for the first attempt of this task, 2 for its first retry, … */
  attempt: number;
}

/**
 * User code a machine invokes. The resolved value becomes part of an event
 * (and, in most machines, of context), so when the machine runs as an
 * entity it must be plain JSON-safe data.
 */
export type Task<TInput = unknown, TResult = unknown> = (
  input: TInput,
  options: TaskOptions,
) => Promise<TResult>;

/** What a wrapped task resolves with: the result and, when a clock is known, when it started. */
export interface TaskDone<TResult> {
  result: TResult;
  startedAt?: number;
}

/**
 * What a wrapped task rejects with: plain data, so the invoke error event can
 * be journaled. `retryable` is decided here, on the original error (so an
 * `isRetryable` may use `instanceof`), and the decision is journaled with it:
 * replay reads the answer instead of asking again.
 */
export interface TaskFailure {
  error: SerializedError;
  retryable: boolean;
  startedAt?: number;
}

/** Input the wrapper expects from the invoking state. */
export interface TaskInput<TInput> {
  input: TInput;
  attempt: number;
}

/** Options of {@link fromTask}. @internal */
export interface FromTaskOptions {
  /** Clock for `startedAt`; default: the actor system's clock when it has `now()`, else none. */
  now?: (() => number) | undefined;
  /** Default: every error is retryable. */
  isRetryable?: ((error: unknown, attempt: number) => boolean) | undefined;
}

/**
 * Wraps a task as promise actor logic whose rejection is a plain
 * {@link TaskFailure}.
 * @internal
 */
export function fromTask<TInput, TResult>(
  task: Task<TInput, TResult>,
  options: FromTaskOptions = {},
) {
  return fromPromise<TaskDone<TResult>, TaskInput<TInput>>(
    async ({ input, signal, system }) => {
      const startedAt = readNow(options.now, system);
      try {
        const result = await task(input.input, {
          signal,
          attempt: input.attempt,
        });
        return startedAt === undefined ? { result } : { result, startedAt };
      } catch (error) {
        let retryable: boolean;
        try {
          retryable = options.isRetryable
            ? options.isRetryable(error, input.attempt) === true
            : true;
        } catch {
          // A predicate that throws cannot vouch for a retry; stop instead of looping.
          retryable = false;
        }
        const failure: TaskFailure = {
          error: serialiseError(error),
          retryable,
        };
        if (startedAt !== undefined) failure.startedAt = startedAt;
        // The rejection reaches the machine as an event that an entity
        // journals, so it has to be plain data rather than an Error.
        // eslint-disable-next-line @typescript-eslint/only-throw-error
        throw failure;
      }
    },
  );
}

/**
 * Reads an invoke error event's payload as a {@link TaskFailure}. Anything
 * else (an actor that rejected without going through {@link fromTask}) is
 * serialised and counted as retryable.
 * @internal
 */
export function toTaskFailure(error: unknown): TaskFailure {
  if (
    typeof error === 'object' &&
    error !== null &&
    isSerializedError((error as { error?: unknown }).error)
  ) {
    const f = error as TaskFailure;
    const out: TaskFailure = {
      error: serialiseError(f.error),
      retryable: f.retryable !== false,
    };
    if (typeof f.startedAt === 'number') out.startedAt = f.startedAt;
    return out;
  }
  return { error: serialiseError(error), retryable: true };
}

/**
 * The time for `startedAt`: the given clock, else the actor system's clock
 * when it can tell time (Shardchart's clock and XState's SimulatedClock
 * can; XState's default clock cannot, and then `startedAt` is left out).
 * This runs inside the promise, a side effect whose result is journaled, so
 * reading a clock here does not make replay non-deterministic.
 */
function readNow(
  now: (() => number) | undefined,
  system: unknown,
): number | undefined {
  if (now) return now();
  const clock = (system as { _clock?: { now?: unknown } } | undefined)?._clock;
  if (clock && typeof clock.now === 'function') {
    const t: unknown = (clock.now as () => unknown).call(clock);
    if (typeof t === 'number' && Number.isFinite(t)) return t;
  }
  return undefined;
}

/**
 * The result carried by an invoke done event of a {@link fromTask} actor;
 * null when the event has none (graph tools send bare done events).
 * @internal
 */
export function taskResult(event: object): unknown {
  const output = (event as { output?: unknown }).output as
    { result?: unknown } | null | undefined;
  return output?.result ?? null;
}
