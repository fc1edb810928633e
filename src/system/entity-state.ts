import type { AnyActorRef, AnyMachineSnapshot } from 'xstate';
import type { EntityState } from './types.js';

/**
 * Pure readings of an entity's XState snapshot: the answer callers get, and
 * the questions the host asks before journaling or passivating.
 */

type SnapshotWithChildren = { children?: Record<string, AnyActorRef> };

/** The shape every send, read and time-travel answer has. */
export function toEntityState(snap: AnyMachineSnapshot, seq: number, changed: boolean, duplicate = false): EntityState {
  const state: EntityState = { seq, value: snap.value as EntityState['value'], context: snap.context as never, status: snap.status, changed };
  if (duplicate) state.duplicate = true;
  if (snap.status === 'done') state.output = snap.output;
  return state;
}

/** Whether `event` takes a transition in `snap` (one with actions only counts). */
export function isHandled(snap: AnyMachineSnapshot, event: { type: string }): boolean {
  try {
    return snap.machine.getTransitionData(snap as never, event).length > 0;
  } catch {
    return false;
  }
}

/** True when an invoked promise or callback actor is running somewhere below `snap`. */
export function hasInvocationInFlight(snap: SnapshotWithChildren | undefined): boolean {
  for (const child of Object.values(snap?.children ?? {})) {
    const s = child.getSnapshot() as { status: string; value?: unknown } & SnapshotWithChildren;
    if (s.status !== 'active') continue;
    if (!('value' in s)) return true;
    if (hasInvocationInFlight(s)) return true;
  }
  return false;
}

/** Whether the snapshot has any child actor. */
export function hasChildActors(snap: SnapshotWithChildren | undefined): boolean {
  const children = snap?.children;
  if (children === undefined) return false;
  for (const _ in children) return true;
  return false;
}
