/**
 * `shardchart/testing`: model-based and property tests for your own
 * machines. {@link getTestPaths} lists paths through a machine's graph;
 * {@link checkMachine} runs generated event sequences through a plain
 * XState actor and a Shardchart entity side by side, with passivations,
 * restarts and clock jumps injected, and checks invariants and agreement.
 *
 * @module
 */
export { CheckFailedError } from '../errors.js';
export { checkMachine } from './check.js';
export { getTestPaths } from './paths.js';
export type {
  CheckEvents,
  CheckFailure,
  CheckMachineOptions,
  CheckReport,
  CheckState,
  CheckStep,
  EventSamples,
  Invariant,
  InvariantContext,
  TestPath,
  TestPathsOptions,
  TestStep,
} from './types.js';
