export { batchDefaults, createBatchMachine } from './batch-machine.js';
export type {
  Batch,
  BatchContext,
  BatchEmitted,
  BatchEvent,
  BatchMachineOptions,
  BatchReason,
} from './batch-machine.js';
