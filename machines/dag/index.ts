/**
 * The DAG machine, and its planner (usable without XState).
 */
export { createDagMachine, dagLimits } from './dag-machine.js';
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
} from './dag-machine.js';
export { executionPlan } from './plan.js';
export type { PlanStep } from './plan.js';
