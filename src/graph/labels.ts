import type { GraphEdgeKind } from './types.js';

/**
 * Turns XState's transition parts (guards, actions, delays, event
 * descriptors) into the short text a reader expects on a diagram:
 * `CHECKOUT [hasItems] / assign(items)`, `after 5s`, `always [!isPaid]`.
 * XState keeps implementations as functions tagged with a `type`; only
 * their names and declared shape are read, nothing is ever called.
 */

/** Names a function gets from its property when written inline; not worth showing. */
const inlineNames = new Set([
  '',
  'anonymous',
  'actions',
  'entry',
  'exit',
  'guard',
]);

/** Names XState's guard combinators give their functions. */
interface GuardFunction {
  (...args: never[]): unknown;
  guards?: readonly unknown[];
  stateValue?: unknown;
}

/**
 * The guard as an expression: `hasItems`, `!isPaid`, `a && (b || c)`,
 * `in(#order.paid)`. `depth` stops a malformed, self-referencing guard from
 * recursing forever.
 *
 * @internal
 */
export function describeGuard(guard: unknown, depth = 0): string {
  if (depth > 16) return '…';
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const fn = guard as GuardFunction;
    if (fn.stateValue !== undefined) {
      return `in(${typeof fn.stateValue === 'string' ? fn.stateValue : JSON.stringify(fn.stateValue)})`;
    }
    if (Array.isArray(fn.guards)) {
      const parts = fn.guards.map((g) => {
        const text = describeGuard(g, depth + 1);
        // Parenthesise combinations so `a && (b || c)` keeps its meaning.
        return /\s(&&|\|\|)\s/.test(text) ? `(${text})` : text;
      });
      if (fn.name === 'not') return `!${parts[0] ?? ''}`;
      if (fn.name === 'and') return parts.join(' && ');
      if (fn.name === 'or') return parts.join(' || ');
    }
    return inlineNames.has(fn.name) ? '(inline)' : fn.name;
  }
  if (isTyped(guard)) return guard.type;
  return '(unknown)';
}

/** XState's built-in actions carry these extra fields; see xstate's actions/*.ts. */
interface ActionFunction {
  (...args: never[]): unknown;
  type?: unknown;
  assignment?: unknown;
  event?: unknown;
  id?: unknown;
  sendId?: unknown;
}

/**
 * The action as a short name: `countTimer`, `assign(items, paid)`,
 * `raise(RETRY)`, `(inline)`. Returns undefined for the entry and exit
 * actions XState adds itself to schedule and cancel `after` timers: the
 * diagram shows those as delayed transitions already.
 *
 * @internal
 */
export function describeAction(action: unknown): string | undefined {
  if (typeof action === 'string') return action;
  if (typeof action === 'function') {
    const fn = action as ActionFunction;
    if (typeof fn.type === 'string' && fn.type.startsWith('xstate.')) {
      const name = fn.type.slice('xstate.'.length);
      if (name === 'raise' && isAfterId(fn.id)) return undefined;
      if (name === 'cancel' && isAfterId(fn.sendId)) return undefined;
      if (name === 'assign' && isPlainRecord(fn.assignment)) {
        return `assign(${Object.keys(fn.assignment).join(', ')})`;
      }
      if (name === 'raise' && isTyped(fn.event)) {
        return `raise(${fn.event.type})`;
      }
      return name;
    }
    return inlineNames.has(fn.name) ? '(inline)' : fn.name;
  }
  if (isTyped(action)) return action.type;
  return '(unknown)';
}

/** Actions as names, dropping XState's own timer bookkeeping. @internal */
export function describeActions(actions: readonly unknown[]): string[] {
  const names: string[] = [];
  for (const action of actions) {
    const name = describeAction(action);
    if (name !== undefined) names.push(name);
  }
  return names;
}

/** `400ms`, `5s`, `1.5s`, `2min`, `1h`; a named delay as is. @internal */
export function formatDelay(delay: number | string): string {
  if (typeof delay === 'string') return delay;
  if (delay >= 3_600_000 && delay % 3_600_000 === 0) {
    return `${delay / 3_600_000}h`;
  }
  if (delay >= 60_000 && delay % 60_000 === 0) return `${delay / 60_000}min`;
  if (delay >= 1_000 && delay % 100 === 0) return `${delay / 1_000}s`;
  return `${delay}ms`;
}

/** The kind of trigger behind an XState event descriptor. @internal */
export function edgeKind(event: string, delayed: boolean): GraphEdgeKind {
  if (delayed) return 'delayed';
  if (event === '') return 'eventless';
  if (event.startsWith('xstate.done.state.')) return 'done';
  if (event.startsWith('xstate.done.actor.')) return 'invokeDone';
  if (event.startsWith('xstate.error.actor.')) return 'invokeError';
  if (event.startsWith('xstate.snapshot.')) return 'invokeSnapshot';
  return 'event';
}

/** The trigger part of a label: the event, `after 5s`, `always`, `done`, `error: pay`. @internal */
export function triggerText(
  kind: GraphEdgeKind,
  event: string,
  delay: number | string | undefined,
): string {
  switch (kind) {
    case 'delayed':
      return `after ${formatDelay(delay ?? 0)}`;
    case 'eventless':
      return 'always';
    case 'done':
      return 'done';
    case 'invokeDone':
      return `done: ${event.slice('xstate.done.actor.'.length)}`;
    case 'invokeError':
      return `error: ${event.slice('xstate.error.actor.'.length)}`;
    case 'invokeSnapshot':
      return `snapshot: ${event.slice('xstate.snapshot.'.length)}`;
    case 'event':
      return event;
  }
}

/** `TRIGGER [guard] / a, b`: the UML transition label. @internal */
export function edgeLabel(
  trigger: string,
  guard: string | undefined,
  actions: readonly string[],
): string {
  let label = trigger;
  if (guard !== undefined) label += ` [${guard}]`;
  if (actions.length > 0) label += ` / ${actions.join(', ')}`;
  return label;
}

/** The invoke source as a reader knows it; XState names inline logic itself. @internal */
export function describeSource(src: unknown): string {
  if (typeof src !== 'string') return '(inline)';
  return src.startsWith('xstate.invoke.') ? '(inline)' : src;
}

/** `12:00:00.400Z`: enough to tell timers apart on a diagram. @internal */
export function formatDue(dueAt: number): string {
  const iso = new Date(dueAt).toISOString();
  return iso.slice(11);
}

function isAfterId(id: unknown): boolean {
  return typeof id === 'string' && id.startsWith('xstate.after.');
}

function isTyped(value: unknown): value is { type: string } {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { type?: unknown }).type === 'string'
  );
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.getPrototypeOf(value) === Object.prototype
  );
}
