import type { RecordedError } from './errors.js';
import type { StepKind } from './types.js';

/**
 * The internal events of a workflow actor. Their types start with
 * `xstate.`, which the system refuses from callers (EVENT_INVALID): only
 * the workflow's own runner, its action actors and its timers produce
 * them, so no sender can forge a step result. Each is journaled like an
 * invoke result in a machine, and the pure transition rebuilds the step
 * log from them.
 */

/** The runner reached new steps (`from` is the index of the first). */
export const STEPS = 'xstate.workflow.steps';
/** The timer of a sleep or a wait timeout fired. */
export const TIMER = 'xstate.workflow.timer';
/** A predicate wait accepted the inbox entry numbered `n` (or its predicate threw). */
export const TAKE = 'xstate.workflow.take';
/** The function returned. */
export const RETURN = 'xstate.workflow.return';
/** The function threw, or replay diverged. */
export const THROW = 'xstate.workflow.throw';
/** Ids of the actors that run pending actions: `workflow.action.<step>`. */
export const ACTION_ACTOR = 'workflow.action.';
/** The done event XState sends for an action actor. */
export const ACTION_DONE = `xstate.done.actor.${ACTION_ACTOR}`;
/** The error event XState sends for an action actor that rejected (a bug: it never should). */
export const ACTION_ERROR = `xstate.error.actor.${ACTION_ACTOR}`;

/** A step as the runner announces it. `value` is the result of a step that completes at once. */
export interface StepCall {
  kind: StepKind;
  name: string;
  value?: unknown;
  params?: unknown;
  types?: string[];
  ms?: number;
  /** For a timer: the clock time the call was made, from which its deadline counts. */
  at?: number;
  /** The scope of a call made in a branch (see scopes.ts); absent for the function itself. */
  scope?: string;
  /** An action's step id (its scope and position), which its idempotency key names. */
  id?: string;
  /** An action's params hash (see runner.ts paramsHash). */
  ph?: string;
}

export interface StepsEvent {
  type: typeof STEPS;
  from: number;
  steps: StepCall[];
}

export interface TimerEvent {
  type: typeof TIMER;
  step: number;
  /** The deadline this link was scheduled for. */
  due?: number;
}

export type TakeEvent =
  | { type: typeof TAKE; step: number; n: number }
  | { type: typeof TAKE; step: number; error: RecordedError };

export interface ReturnEvent {
  type: typeof RETURN;
  output: unknown;
}

export interface ThrowEvent {
  type: typeof THROW;
  error: RecordedError;
}

/** Id of the scheduler entry of step `step`'s timer (per root actor). */
export function timerId(step: number): string {
  return `workflow.timer.${step}`;
}

/**
 * The longest delay handed to the scheduler at once. Timers take 32-bit
 * delays (about 24.8 days); a longer sleep runs as a chain of links, each
 * journaled and each due from the sleep's deadline, so a 90-day sleep
 * neither fires early nor drifts.
 */
export const TIMER_CHUNK_MS = 2_147_483_647;
