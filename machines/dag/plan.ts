/**
 * The DAG planner lives in the core (src/workflow/plan.ts), which workflow
 * functions share with the DAG machine; this module keeps its place in
 * `shardchart/machines`.
 */
export { executionPlan } from '../../src/workflow/plan.js';
export type { PlanStep } from '../../src/workflow/plan.js';
