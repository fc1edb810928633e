/**
 * The circuit breaker machine, and the helpers for sharing one breaker
 * entity between many workflow entities.
 */
export {
  createCircuitBreakerMachine,
  breakerLimits,
} from './breaker-machine.js';
export type {
  BreakerAnswer,
  BreakerContext,
  BreakerDecision,
  BreakerEvent,
  BreakerMachineOptions,
  BreakerState,
} from './breaker-machine.js';
export { callThroughBreaker, decisionFor } from './call.js';
export type { BreakerCallResult, BreakerRefLike } from './call.js';
