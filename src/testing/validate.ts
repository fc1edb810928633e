/**
 * Argument checks shared by getTestPaths and checkMachine: a wrong option
 * is a programmer error, reported at once with the value that arrived.
 *
 * @internal
 */
import type { AnyStateMachine } from 'xstate';
import type { CheckStep } from './types.js';
import { ConfigError, DefinitionError } from '../errors.js';

/** Throws MACHINE_INVALID unless `value` is an XState v5 machine. */
export function assertMachine(value: unknown, fn: string): asserts value is AnyStateMachine {
  const m = value as { root?: unknown; transition?: unknown; getInitialSnapshot?: unknown } | null;
  if (
    typeof m !== 'object' ||
    m === null ||
    typeof m.root !== 'object' ||
    typeof m.transition !== 'function' ||
    typeof m.getInitialSnapshot !== 'function'
  ) {
    throw new DefinitionError(
      'MACHINE_INVALID',
      `${fn} expects an XState v5 machine (createMachine or setup().createMachine); got ${describe(value)}.`,
      { details: { got: describe(value) } },
    );
  }
}

/** An integer option within [min, max], or its default when absent. */
export function intOption(
  fn: string,
  name: string,
  value: number | undefined,
  fallback: number,
  min = 1,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `${fn}: option ${name} must be an integer from ${min} to ${max}; got ${describe(value)}.`,
      { details: { option: name, got: value } },
    );
  }
  return value;
}

/** Short, quoted description of any value for messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint' || value === undefined) return String(value);
  return typeof value;
}

/** Throws CONFIG_INVALID unless every step of every example is a well-formed CheckStep. */
export function assertExamples(fn: string, examples: unknown): asserts examples is readonly (readonly CheckStep[])[] | undefined {
  if (examples === undefined) return;
  if (!Array.isArray(examples)) throw new ConfigError(`${fn}: option examples must be an array of step lists; got ${describe(examples)}.`);
  examples.forEach((list: unknown, i) => {
    if (!Array.isArray(list)) throw new ConfigError(`${fn}: examples[${i}] must be an array of steps; got ${describe(list)}.`);
    list.forEach((step: unknown, j) => {
      if (!isStep(step)) {
        throw new ConfigError(
          `${fn}: examples[${i}][${j}] must be a step: { kind: 'send', event: { type } }, { kind: 'advance', ms }, { kind: 'passivate', force } or { kind: 'restart' }; got ${JSON.stringify(step) ?? describe(step)}.`,
          { details: { example: i, step: j } },
        );
      }
    });
  });
}

function isStep(s: unknown): s is CheckStep {
  if (typeof s !== 'object' || s === null) return false;
  const step = s as { kind?: unknown; event?: { type?: unknown } | null; ms?: unknown; force?: unknown };
  switch (step.kind) {
    case 'send':
      return typeof step.event === 'object' && step.event !== null && typeof step.event.type === 'string';
    case 'advance':
      return Number.isSafeInteger(step.ms) && (step.ms as number) >= 0;
    case 'passivate':
      return typeof step.force === 'boolean';
    case 'restart':
      return true;
    default:
      return false;
  }
}
