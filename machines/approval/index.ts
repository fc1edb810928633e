export { approvalDefaults, createApprovalMachine } from './approval-machine.js';
export type {
  ApprovalContext,
  ApprovalDecisionEvent,
  ApprovalEmitted,
  ApprovalError,
  ApprovalErrorCode,
  ApprovalInput,
  ApprovalMachineOptions,
  ApprovalOutput,
} from './approval-machine.js';
export type { FieldError } from './payload-schema.js';
