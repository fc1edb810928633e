/**
 * The retry machine: run a task until it succeeds, with capped exponential
 * backoff, jitter that replays identically, and a deadline.
 */
export { createRetryMachine, retryLimits } from './retry-machine.js';
export type {
  RetryAttempt,
  RetryContext,
  RetryInput,
  RetryMachineOptions,
  RetryOutcome,
  RetryOutput,
} from './retry-machine.js';
export {
  backoffDefaults,
  backoffDelay,
  seedFrom,
  xorshift32,
} from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { serialiseError, isSerializedError } from './serialise-error.js';
export type { SerializedError } from './serialise-error.js';
export type { Task, TaskOptions } from './task.js';
