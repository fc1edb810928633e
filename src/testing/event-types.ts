/**
 * Which events to try, derived from the machine's own transitions.
 *
 * Internal event types are never sent from outside: `xstate.done.state.*`
 * is raised by XState itself when a region finishes, and `xstate.after.*`
 * is a timer (the graph model fires timers by letting time pass, see
 * timed-logic.ts). Invoked actors' `xstate.done.actor.<id>`,
 * `xstate.error.actor.<id>` and `xstate.snapshot.<id>` are offered only
 * while the child `<id>` exists, since only then can it answer. Wildcard
 * descriptors (`*`, `order.*`) are tried with the listed samples that match
 * them, never with a made-up event.
 *
 * @internal
 */
import type { AnyEventObject, AnyMachineSnapshot, AnyStateMachine, AnyStateNode } from 'xstate';

const CHILD_EVENT = /^xstate\.(done\.actor|error\.actor|snapshot)\.(.+)$/;

function isWildcard(descriptor: string): boolean {
  return descriptor === '*' || descriptor.endsWith('.*');
}

function matchesWildcard(descriptor: string, type: string): boolean {
  if (descriptor === '*') return true;
  return type.startsWith(descriptor.slice(0, -1));
}

/** Every event descriptor of the machine. */
function rootEvents(machine: AnyStateMachine): string[] {
  const events = (machine.root as AnyStateNode).events as readonly string[];
  return [...events];
}

/** Event descriptors of the states active in `snapshot`, in document order. */
function acceptedDescriptors(snapshot: AnyMachineSnapshot): string[] {
  const nodes = (snapshot as unknown as { _nodes?: readonly AnyStateNode[] })._nodes;
  if (!nodes) return rootEvents(snapshot.machine);
  return [...new Set(nodes.flatMap((n) => n.ownEvents as string[]))];
}

/** True when an event of this type may be sent from outside the machine. */
function isExternalType(type: string, snapshot: AnyMachineSnapshot): boolean {
  if (!type.startsWith('xstate.')) return true;
  const child = CHILD_EVENT.exec(type);
  return child !== null && child[2]! in (snapshot.children ?? {});
}

/**
 * The events to try in `snapshot`: every accepted external type, with its
 * samples or as `{ type }`, plus samples matched only by a wildcard.
 */
export function eventsFor(
  snapshot: AnyMachineSnapshot,
  samples: readonly AnyEventObject[] | undefined,
  sampleTypes: ReadonlySet<string>,
): AnyEventObject[] {
  const byType = new Map<string, AnyEventObject[]>();
  for (const e of samples ?? []) {
    const list = byType.get(e.type);
    if (list) list.push(e);
    else byType.set(e.type, [e]);
  }
  const out: AnyEventObject[] = [];
  const explicit = new Set<string>();
  const wildcards: string[] = [];
  for (const d of acceptedDescriptors(snapshot)) {
    if (isWildcard(d)) {
      wildcards.push(d);
      continue;
    }
    if (!isExternalType(d, snapshot)) continue;
    explicit.add(d);
    if (sampleTypes.has(d)) out.push(...(byType.get(d) ?? []));
    else out.push({ type: d });
  }
  if (wildcards.length > 0) {
    for (const [type, list] of byType) {
      if (explicit.has(type) || !isExternalType(type, snapshot)) continue;
      if (wildcards.some((w) => matchesWildcard(w, type))) out.push(...list);
    }
  }
  return out;
}

/** Every external event type the machine handles anywhere (no wildcards). */
export function machineEventTypes(machine: AnyStateMachine): string[] {
  return rootEvents(machine).filter((t) => !isWildcard(t) && !t.startsWith('xstate.'));
}

/** Every delay (in ms) the machine's `after` transitions can resolve to without a context. */
export function machineDelays(machine: AnyStateMachine): number[] {
  const delays = new Set<number>();
  const named = (machine.implementations.delays ?? {}) as Record<string, unknown>;
  const walk = (node: AnyStateNode): void => {
    for (const t of node.after) {
      const d: unknown = t.delay;
      if (typeof d === 'number') delays.add(d);
      else if (typeof d === 'string' && typeof named[d] === 'number') delays.add(named[d]);
    }
    for (const child of Object.values(node.states ?? {})) walk(child);
  };
  walk(machine.root);
  return [...delays].sort((a, b) => a - b);
}

/**
 * A coarse state identity for graph exploration: the value, the status and
 * which of the events to try would be taken. Two carts in `shopping` with
 * different items are one state, unless one of them can `CHECKOUT` and the
 * other cannot.
 */
export function behaviourKey(
  snapshot: AnyMachineSnapshot,
  samples: readonly AnyEventObject[] | undefined,
  sampleTypes: ReadonlySet<string>,
): string {
  const enabled = eventsFor(snapshot, samples, sampleTypes)
    .filter((e) => {
      try {
        return snapshot.can(e);
      } catch {
        return true; // a throwing guard: the transition ends the path
      }
    })
    .map((e) => JSON.stringify(e));
  return JSON.stringify([snapshot.value, snapshot.status, enabled]);
}
