/**
 * `shardchart/machines`: reusable statecharts for resilience and workflow
 * patterns. Each factory returns a plain XState v5 machine that runs as an
 * entity type in `createActorSystem` (its `after` timers then durable),
 * invoked as a child of another machine, or as a plain XState actor.
 *
 * The public surface is this hand-written list (STYLE.md item 3); each
 * folder's README shows the machine's diagram and its tested invariants.
 */
export { createRetryMachine, retryLimits } from './retry/index.js';
export type {
  RetryAttempt,
  RetryContext,
  RetryInput,
  RetryMachineOptions,
  RetryOutcome,
  RetryOutput,
  BackoffOptions,
  SerializedError,
  Task,
  TaskOptions,
} from './retry/index.js';
export {
  backoffDefaults,
  backoffDelay,
  isSerializedError,
  serialiseError,
} from './retry/index.js';

export {
  breakerLimits,
  callThroughBreaker,
  createCircuitBreakerMachine,
  decisionFor,
} from './circuit-breaker/index.js';
export type {
  BreakerAnswer,
  BreakerCallResult,
  BreakerContext,
  BreakerDecision,
  BreakerEvent,
  BreakerMachineOptions,
  BreakerRefLike,
  BreakerState,
} from './circuit-breaker/index.js';

export { createSagaMachine, sagaLimits } from './saga/index.js';
export type {
  CompensateInput,
  CompensationOptions,
  CompensationProgress,
  CompensationRecord,
  SagaContext,
  SagaInput,
  SagaMachineOptions,
  SagaOutcome,
  SagaOutput,
  SagaParallelGroup,
  SagaStep,
  SagaStepInput,
  SagaStepReport,
  SagaStepState,
} from './saga/index.js';

export { batchDefaults, createBatchMachine } from './batch/index.js';
export type {
  Batch,
  BatchContext,
  BatchEmitted,
  BatchEvent,
  BatchMachineOptions,
  BatchReason,
} from './batch/index.js';

export {
  createRateLimiterMachine,
  rateLimiterDefaults,
} from './rate-limiter/index.js';
export type {
  Bucket,
  RateLimitAnswer,
  RateLimitDecision,
  RateLimiterContext,
  RateLimiterMachineOptions,
  RateLimitRejection,
  RateLimitRequest,
} from './rate-limiter/index.js';

export { approvalDefaults, createApprovalMachine } from './approval/index.js';
export type {
  ApprovalContext,
  ApprovalDecisionEvent,
  ApprovalEmitted,
  ApprovalError,
  ApprovalErrorCode,
  ApprovalInput,
  ApprovalMachineOptions,
  ApprovalOutput,
  FieldError,
} from './approval/index.js';

export { createDagMachine, dagLimits, executionPlan } from './dag/index.js';
export type {
  DagContext,
  DagErrorStrategy,
  DagInput,
  DagMachineOptions,
  DagOutcome,
  DagOutput,
  DagRetryOptions,
  DagStep,
  DagStepInput,
  DagStepReport,
  DagStepState,
  PlanStep,
} from './dag/index.js';
