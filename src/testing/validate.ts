/**
 * Argument checks shared by getTestPaths and checkMachine: a wrong option
 * is a programmer error, reported at once with the value that arrived.
 *
 * @internal
 */
import type { AnyStateMachine } from 'xstate';
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
