/**
 * Comparing a plain actor's state with an entity's.
 *
 * Equality is structural over plain data, as `toEqual` in test runners: a
 * key holding `undefined` equals a missing key (a persisted context does
 * not keep them), `NaN` equals `NaN`, and `0` equals `-0`. Anything else
 * must match exactly, so a context that does not survive persistence shows
 * up as a difference.
 *
 * @internal
 */
import type { AnyMachineSnapshot } from 'xstate';
import type { EntityState } from '../system/types.js';
import type { CheckState } from './types.js';

/** The fields compared: value, context, status, and output when done. */
export function viewOf(s: AnyMachineSnapshot | EntityState): CheckState {
  const context: unknown = s.context;
  const view: CheckState = { value: s.value as CheckState['value'], context, status: s.status };
  if (s.status === 'done') view.output = s.output;
  return view;
}

/** Where `a` and `b` first differ (`''` at the root), or undefined when equal. */
export function firstDifference(a: unknown, b: unknown, path = ''): string | undefined {
  if (a === b) return undefined;
  if (typeof a === 'number' && typeof b === 'number') {
    return Number.isNaN(a) && Number.isNaN(b) ? undefined : path || '(root)';
  }
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return path || '(root)';
  if (Array.isArray(a) !== Array.isArray(b)) return path || '(root)';
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return `${path}.length`;
    for (let i = 0; i < a.length; i++) {
      const d = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return `${path || '(root)'} (prototype)`;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
  for (const k of [...keys].sort()) {
    const d = firstDifference(ra[k], rb[k], path ? `${path}.${k}` : k);
    if (d !== undefined) return d;
  }
  return undefined;
}

/** Compact JSON for messages; cut at `max` characters. */
export function show(value: unknown, max = 400): string {
  let text: string;
  try {
    text = JSON.stringify(value, (_k, v: unknown) => (v === undefined ? '<undefined>' : typeof v === 'bigint' ? `${v}n` : v)) ?? 'undefined';
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
