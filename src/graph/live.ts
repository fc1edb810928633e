import {
  getStateNodes,
  type AnyStateMachine,
  type AnyStateNode,
  type StateValue,
} from 'xstate';
import { ConfigError, EntityError } from '../errors.js';
import type { PendingTimer } from '../persistence/types.js';
import type { GraphLive, GraphSnapshot } from './types.js';

/**
 * Reads where an entity is from any snapshot form a user may hold, and
 * resolves it against the machine with XState's own `getStateNodes`, so the
 * highlighted configuration is exactly the one XState would restore.
 */

/** What every accepted snapshot form boils down to. */
interface SnapshotParts {
  value: StateValue;
  status?: string;
  /** History node id -> remembered nodes (live: StateNode, persisted: `{ id }`). */
  historyValue?: Record<string, readonly { id?: unknown }[]>;
  /** Child actor ids (invoked or spawned) present in the snapshot. */
  children: string[];
  timers?: readonly PendingTimer[];
  seq?: number;
  at?: number;
}

/**
 * The live overlay of a graph: active node ids (ancestors included),
 * history values, pending timers and the ids of running children.
 *
 * @example
 * ```ts
 * const live = resolveLive(orderMachine, actor.getPersistedSnapshot());
 * live.active; // ['order', 'order.paused']
 * ```
 *
 * @internal
 */
export function resolveLive(
  machine: AnyStateMachine,
  snapshot: GraphSnapshot,
  timers?: readonly PendingTimer[],
): GraphLive & { children: readonly string[] } {
  const parts = readSnapshot(snapshot);
  let nodes: AnyStateNode[];
  try {
    nodes = getStateNodes(machine.root, parts.value);
  } catch (cause) {
    throw new EntityError(
      'SNAPSHOT_INVALID',
      `The snapshot's state value ${JSON.stringify(parts.value)} does not fit machine "${machine.id}": pass a snapshot taken from this machine (or a compatible version of it).`,
      { cause, details: { value: parts.value, machine: machine.id } },
    );
  }
  const active = new Set<string>();
  for (const node of nodes) {
    for (let n: AnyStateNode | undefined = node; n; n = n.parent) {
      active.add(n.id);
    }
  }
  const history: Record<string, string[]> = {};
  for (const [historyId, remembered] of Object.entries(
    parts.historyValue ?? {},
  )) {
    if (!Array.isArray(remembered)) continue;
    const ids: string[] = [];
    for (const item of remembered as readonly unknown[]) {
      const id = isRecord(item) ? item.id : undefined;
      if (typeof id === 'string') ids.push(id);
    }
    if (ids.length > 0) history[historyId] = ids;
  }
  return {
    // Document order, so output does not depend on how the value was written.
    active: orderedIds(machine.root).filter((id) => active.has(id)),
    ...(parts.status === undefined ? {} : { status: parts.status }),
    timers: timers ?? parts.timers ?? [],
    history,
    ...(parts.seq === undefined ? {} : { seq: parts.seq }),
    ...(parts.at === undefined ? {} : { at: parts.at }),
    children: parts.children,
  };
}

/** Every node id, depth first in document order. @internal */
export function orderedIds(root: AnyStateNode): string[] {
  const ids: string[] = [];
  const walk = (node: AnyStateNode): void => {
    ids.push(node.id);
    for (const child of Object.values(node.states)) walk(child);
  };
  walk(root);
  return ids;
}

function readSnapshot(snapshot: unknown): SnapshotParts {
  if (!isRecord(snapshot)) throw notASnapshot(snapshot);
  // A Shardchart stored snapshot wraps the XState persisted one.
  if (snapshot.v === 1 && 'state' in snapshot && 'seq' in snapshot) {
    const inner = readSnapshot(snapshot.state);
    return {
      ...inner,
      timers: Array.isArray(snapshot.timers)
        ? (snapshot.timers as PendingTimer[])
        : inner.timers,
      ...(typeof snapshot.seq === 'number' ? { seq: snapshot.seq } : {}),
      ...(typeof snapshot.at === 'number' ? { at: snapshot.at } : {}),
    };
  }
  if (!isStateValue(snapshot.value)) throw notASnapshot(snapshot);
  const parts: SnapshotParts = {
    value: snapshot.value,
    children: isRecord(snapshot.children) ? Object.keys(snapshot.children) : [],
  };
  if (typeof snapshot.status === 'string') parts.status = snapshot.status;
  if (isRecord(snapshot.historyValue)) {
    parts.historyValue = snapshot.historyValue as SnapshotParts['historyValue'];
  }
  // An entity state from `ref.snapshot()` has a seq of its own.
  if (typeof snapshot.seq === 'number') parts.seq = snapshot.seq;
  return parts;
}

function notASnapshot(value: unknown): ConfigError {
  const shown =
    isRecord(value) ? `an object with keys ${Object.keys(value).slice(0, 8).join(', ') || '(none)'}` : typeof value;
  return new ConfigError(
    `The snapshot option expects an XState snapshot (actor.getSnapshot() or actor.getPersistedSnapshot()), a Shardchart stored snapshot or an entity state; got ${shown}.`,
    { details: { received: typeof value } },
  );
}

function isStateValue(value: unknown): value is StateValue {
  return typeof value === 'string' || isRecord(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
