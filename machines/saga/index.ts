/**
 * The saga machine: steps in order (or in parallel groups), undone in
 * reverse order when one fails.
 */
export { createSagaMachine, sagaLimits } from './saga-machine.js';
export type {
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
} from './saga-machine.js';
export type {
  CompensateInput,
  CompensationOptions,
  CompensationProgress,
  CompensationRecord,
} from './compensation.js';
