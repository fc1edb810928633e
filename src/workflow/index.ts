/**
 * Durable workflow functions: async TypeScript functions run as XState
 * actor logic, so each instance is an entity like any other (journaled,
 * passivated, supervised, clustered) and replays deterministically.
 */
export { defineWorkflow, isWorkflowDefinition } from './define.js';
export type { WorkflowDefinition } from './define.js';
export { createActionRegistry, actionDefaults } from './actions.js';
export type {
  ActionContext,
  ActionDefinition,
  ActionMap,
  ActionRegistry,
  ActionSignature,
  ActionsProxy,
  BackoffPolicy,
  RetryPolicy,
} from './actions.js';
export type { JsonSchema, ParamsIssue, StandardSchemaV1 } from './schema.js';
export type { WorkflowEntityConfig } from './entity.js';
export { routingDefaults } from './routing-machines.js';
export { workflowInstanceId } from './routing.js';
export type {
  Attachment,
  AttachInput,
  Delivery,
  PublishedEvent,
  PublishEventInput,
  PublishEventResult,
} from './routing.js';
export { taskDefaults } from './task-machines.js';
export type { TaskOrigin, TaskSummary } from './task-machines.js';
export type {
  HumanTask,
  SystemTasks,
  TaskCompletion,
  TaskSpec,
  WorkflowTasks,
} from './tasks.js';
export type {
  WorkflowDagErrorStrategy,
  WorkflowDagOptions,
  WorkflowDagOutcome,
  WorkflowDagResult,
  WorkflowDagStep,
  WorkflowDagStepReport,
} from './dag.js';
export type { WorkflowLogic } from './logic.js';
export { workflowDefaults } from './types.js';
export type {
  InboxEntry,
  Register,
  RegisteredActions,
  StepKind,
  StepRecord,
  WaitForOptions as WorkflowWaitForOptions,
  WorkflowContext,
  WorkflowData,
  WorkflowEvent,
  WorkflowEvents,
  WorkflowOptions,
  WorkflowSnapshot,
  WorkflowSnapshotContext,
} from './types.js';
