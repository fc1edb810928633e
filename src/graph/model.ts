import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { DefinitionError } from '../errors.js';
import {
  describeActions,
  describeGuard,
  describeSource,
  edgeKind,
  edgeLabel,
  triggerText,
} from './labels.js';
import { resolveLive } from './live.js';
import type {
  GraphEdge,
  GraphLive,
  GraphModel,
  GraphNode,
  GraphOptions,
  GraphPendingTimer,
} from './types.js';

/** The parts of an XState transition definition read here. */
interface TransitionLike {
  eventType: string;
  target?: readonly AnyStateNode[];
  guard?: unknown;
  actions: readonly unknown[];
  reenter?: boolean;
  delay?: number | string;
  description?: string;
}

/**
 * The machine as plain JSON: every state node (root included) with its
 * type, initial child, history kind, entry/exit actions and invocations,
 * and every transition with its trigger, guard, delay and actions. With
 * `{ snapshot }` the active configuration, history values and pending
 * timers are marked too. The result is what `toMermaid`, `toDot` and
 * `toSvg` draw, and it survives `JSON.stringify` unchanged.
 *
 * @throws DefinitionError `MACHINE_INVALID` when `machine` is not an XState v5 machine.
 * @throws ConfigError `CONFIG_INVALID` when `snapshot` is not a snapshot.
 * @throws EntityError `SNAPSHOT_INVALID` when the snapshot's state is not in the machine.
 *
 * @example
 * ```ts
 * import { toGraph } from 'shardchart/graph';
 * const graph = toGraph(orderMachine);
 * graph.nodes.find((n) => n.id === 'order.processing')?.type; // 'parallel'
 * graph.edges.find((e) => e.event === 'CHECKOUT')?.label; // 'CHECKOUT [hasItems]'
 * const live = toGraph(orderMachine, { snapshot: actor.getPersistedSnapshot() });
 * live.live?.active; // ['order', 'order.cart']
 * ```
 */
export function toGraph(
  machine: AnyStateMachine,
  options: GraphOptions = {},
): GraphModel {
  assertMachine(machine);
  const live =
    options.snapshot === undefined
      ? undefined
      : resolveLive(machine, options.snapshot, options.timers);
  const active = new Set(live?.active ?? []);
  const running = new Set(live?.children ?? []);
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];

  const visit = (node: AnyStateNode): void => {
    nodes.push(
      describeNode(node, live && {
        active: active.has(node.id),
        remembers: live.history[node.id],
        running,
      }),
    );
    for (const t of transitionsOf(node)) {
      edges.push(describeEdge(`e${edges.length}`, node, t, live));
    }
    for (const child of Object.values(node.states)) visit(child);
  };
  visit(machine.root);

  const graph: GraphModel = {
    v: 1,
    id: machine.id,
    root: machine.root.id,
    nodes,
    edges,
  };
  if (live === undefined) return graph;
  const { children: _children, ...overlay } = live;
  return { ...graph, live: overlay };
}

/**
 * Refuses anything that is not an XState v5 machine, with the reason. Used
 * by every export and by the `shardchart graph` command.
 *
 * @example
 * ```ts
 * assertMachine(imported.orderMachine); // throws DefinitionError MACHINE_INVALID if not a machine
 * ```
 */
export function assertMachine(
  value: unknown,
  name = 'The value given',
): asserts value is AnyStateMachine {
  const m = value as Partial<AnyStateMachine> | null | undefined;
  const ok =
    typeof m === 'object' &&
    m !== null &&
    typeof m.transition === 'function' &&
    typeof m.getInitialSnapshot === 'function' &&
    typeof m.root === 'object' &&
    m.root !== null &&
    typeof m.root.id === 'string' &&
    typeof m.root.states === 'object';
  if (!ok) {
    const got =
      m === null
        ? 'null'
        : Array.isArray(m)
          ? 'an array'
          : typeof m === 'object'
          ? `an object with keys ${Object.keys(m).slice(0, 8).join(', ') || '(none)'}`
          : typeof m;
    throw new DefinitionError(
      'MACHINE_INVALID',
      `${name} is not an XState v5 machine (got ${got}). Pass the result of createMachine(...) or setup(...).createMachine(...).`,
      { details: { received: typeof value } },
    );
  }
}

function describeNode(
  node: AnyStateNode,
  live:
    | { active: boolean; remembers: readonly string[] | undefined; running: ReadonlySet<string> }
    | undefined,
): GraphNode {
  const children = Object.values(node.states).map((c) => c.id);
  const initial =
    node.type === 'compound'
      ? (node.initial.target as readonly AnyStateNode[] | undefined)?.[0]?.id
      : undefined;
  const history =
    node.type === 'history' ? (node.history === 'deep' ? 'deep' : 'shallow') : undefined;
  const historyTarget =
    node.type === 'history' ? historyDefault(node) : undefined;
  return {
    id: node.id,
    key: node.key,
    parent: node.parent?.id ?? null,
    type: node.type,
    children,
    ...(initial === undefined ? {} : { initial }),
    ...(history === undefined ? {} : { history }),
    ...(historyTarget === undefined ? {} : { historyTarget }),
    entry: describeActions(node.entry),
    exit: describeActions(node.exit),
    invoke: node.invoke.map((inv) => ({
      id: inv.id,
      src: describeSource(inv.src),
      ...(live?.active ? { running: live.running.has(inv.id) } : {}),
    })),
    tags: [...node.tags],
    ...(node.description === undefined ? {} : { description: node.description }),
    ...(live === undefined ? {} : { active: live.active }),
    ...(live?.remembers === undefined ? {} : { remembers: live.remembers }),
  };
}

/** Transitions in document order: `on`, `onDone`, invoke results, `after`, then `always`. */
function transitionsOf(node: AnyStateNode): TransitionLike[] {
  const list: TransitionLike[] = [];
  for (const group of node.transitions.values()) {
    list.push(...(group as unknown as TransitionLike[]));
  }
  list.push(...((node.always ?? []) as unknown as TransitionLike[]));
  return list;
}

function describeEdge(
  id: string,
  node: AnyStateNode,
  t: TransitionLike,
  live: GraphLive | undefined,
): GraphEdge {
  const delayed = t.delay !== undefined;
  const kind = edgeKind(t.eventType, delayed);
  const guard = t.guard === undefined ? undefined : describeGuard(t.guard);
  const actions = describeActions(t.actions);
  const pending = delayed ? pendingTimer(t.eventType, live) : undefined;
  return {
    id,
    source: node.id,
    targets: (t.target ?? []).map((target) => target.id),
    event: t.eventType,
    kind,
    ...(guard === undefined ? {} : { guard }),
    ...(delayed ? { delay: t.delay } : {}),
    actions,
    reenter: t.reenter === true,
    ...(t.description === undefined ? {} : { description: t.description }),
    label: edgeLabel(triggerText(kind, t.eventType, t.delay), guard, actions),
    ...(pending === undefined ? {} : { pending }),
  };
}

/**
 * The entity's own timer for this delayed event. Timers scheduled by or for
 * child actors have another source or target and belong to no edge here.
 */
function pendingTimer(
  eventType: string,
  live: GraphLive | undefined,
): GraphPendingTimer | undefined {
  const timer = live?.timers.find(
    (t) => t.event.type === eventType && t.source === '' && t.target === '',
  );
  return timer && { dueAt: timer.dueAt, delayMs: timer.delayMs };
}

/** The history node's declared default target ids, if it declares one. */
function historyDefault(node: AnyStateNode): string[] | undefined {
  const raw = (node.config as { target?: unknown }).target;
  if (raw === undefined) return undefined;
  const targets = Array.isArray(raw) ? raw : [raw];
  const ids: string[] = [];
  for (const target of targets) {
    if (typeof target !== 'string') continue;
    const resolved = resolveRelative(node, target);
    if (resolved) ids.push(resolved.id);
  }
  return ids.length > 0 ? ids : undefined;
}

function resolveRelative(
  node: AnyStateNode,
  target: string,
): AnyStateNode | undefined {
  try {
    if (target.startsWith('#')) return node.machine.getStateNodeById(target);
  } catch {
    return undefined;
  }
  let cur: AnyStateNode | undefined = node.parent;
  for (const key of target.split('.')) {
    cur = cur?.states[key];
  }
  return cur;
}
