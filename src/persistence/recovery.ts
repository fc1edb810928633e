import {
  createActor,
  initialTransition,
  transition,
  type AnyMachineSnapshot,
  type AnyStateMachine,
} from 'xstate';
import { EntityError, InvalidInputError, StoreError } from '../errors.js';
import type { EntityKey, JournalEntry, OutboxMessage, PendingOutboxMessage, PendingTimer, Store, StoredSnapshot } from './types.js';

/**
 * Recovery: the latest snapshot plus a pure replay of the journal tail with
 * XState's `transition`, which computes the next snapshot without running a
 * single action, so no side effect repeats during replay.
 */

/** What an entity resumes from. */
export interface RecoveredState {
  /** Persisted XState snapshot to start the actor from; undefined: brand new. */
  state: unknown;
  seq: number;
  /** Seq of the stored snapshot (0 when none). */
  snapshotSeq: number;
  /** Clock time of the last durable entry or snapshot (0 for a new entity). */
  at: number;
  timers: readonly PendingTimer[];
  eventIds: string[];
  /** The run that wrote the snapshot, if recorded. */
  run: string | undefined;
  /**
   * Published messages that may not have been delivered: those the snapshot
   * kept plus those of every entry replayed after it, in order.
   */
  outbox: PendingOutboxMessage[];
  /** The snapshot or a replayed entry has an outbox: the timer index may be due for it. */
  outboxSeen: boolean;
}

/** Refuses a loaded snapshot that is not one of ours (pairs with the write side). */
export function assertStoredSnapshot(key: EntityKey, snap: StoredSnapshot): void {
  const ok =
    snap.v === 1 &&
    Number.isSafeInteger(snap.seq) &&
    snap.seq >= 0 &&
    typeof snap.state === 'object' &&
    snap.state !== null &&
    Array.isArray(snap.timers) &&
    Array.isArray(snap.eventIds) &&
    (snap.outbox === undefined || (Array.isArray(snap.outbox) && snap.outbox.every(isPendingOutboxMessage)));
  if (!ok) {
    throw new EntityError(
      'SNAPSHOT_INVALID',
      `The stored snapshot of ${key.type}/${key.id} is not a Shardchart v1 snapshot; restore the store from a backup or delete this entity's snapshot to rebuild it from the journal.`,
      { details: { key, seq: (snap as { seq?: unknown }).seq } },
    );
  }
}

function isOutboxMessage(m: unknown): boolean {
  if (typeof m !== 'object' || m === null) return false;
  const { subject, headers } = m as { subject?: unknown; headers?: unknown };
  return typeof subject === 'string' && (headers === undefined || (typeof headers === 'object' && headers !== null));
}

function isPendingOutboxMessage(m: unknown): boolean {
  if (!isOutboxMessage(m)) return false;
  const { seq, index, at } = m as { seq?: unknown; index?: unknown; at?: unknown };
  return Number.isSafeInteger(seq) && (seq as number) >= 0 && Number.isSafeInteger(index) && (index as number) >= 0 && typeof at === 'number';
}

/** The published messages of a replayed entry, numbered for delivery. */
function outboxOf(key: EntityKey, entry: JournalEntry, into: PendingOutboxMessage[]): void {
  const outbox = entry.outbox as unknown;
  if (!Array.isArray(outbox) || !outbox.every(isOutboxMessage)) {
    throw new StoreError(
      'STORE_CORRUPT',
      `The journal entry of ${key.type}/${key.id} at seq ${entry.seq} has an outbox that is not a list of published messages; restore the store from a backup.`,
      { details: { key, seq: entry.seq } },
    );
  }
  const messages = outbox as readonly OutboxMessage[];
  for (let index = 0; index < messages.length; index++) into.push({ ...messages[index]!, seq: entry.seq, index, at: entry.at });
}

/** Rebuilds a live-usable machine snapshot from a persisted one, without starting anything. */
export function restoreMachineSnapshot(
  machine: AnyStateMachine,
  persisted: unknown,
  input: unknown,
  key: EntityKey,
): AnyMachineSnapshot {
  let snap: AnyMachineSnapshot;
  try {
    snap = createActor(machine, { snapshot: persisted as never, input }).getSnapshot() as AnyMachineSnapshot;
  } catch (cause) {
    throw snapshotInvalid(key, cause);
  }
  if ((snap.status as string) === 'error' && !snap.machine) throw snapshotInvalid(key, snap.error);
  return snap;
}

function snapshotInvalid(key: EntityKey, cause: unknown): EntityError {
  return new EntityError(
    'SNAPSHOT_INVALID',
    `The stored snapshot of ${key.type}/${key.id} does not fit the current machine; deploy a machine version compatible with the stored states, or migrate the snapshot.`,
    { cause, details: { key } },
  );
}

/** Applies one journaled event purely; a throw means the journal and machine disagree. */
export function replayStep(
  machine: AnyStateMachine,
  snap: AnyMachineSnapshot,
  event: { type: string },
  key: EntityKey,
  seq: number,
): AnyMachineSnapshot {
  let next: AnyMachineSnapshot;
  try {
    next = transition(machine, snap, event as never)[0] as AnyMachineSnapshot;
  } catch (cause) {
    throw diverged(key, seq, event, cause);
  }
  if ((next.status as string) === 'error') throw diverged(key, seq, event, next.error);
  return next;
}

function diverged(key: EntityKey, seq: number, event: { type: string }, cause: unknown): EntityError {
  return new EntityError(
    'REPLAY_DIVERGED',
    `Replaying ${key.type}/${key.id} failed at seq ${seq} (event "${event.type}"): the machine no longer accepts its own journal. Deploy the machine version that wrote it, or migrate the entity.`,
    { cause, details: { key, seq, eventType: event.type } },
  );
}

/** Loads snapshot + journal tail and replays it into a persisted snapshot. */
export async function recover(
  store: Store,
  machine: AnyStateMachine,
  key: EntityKey,
  input: unknown,
  dedupeWindow: number,
): Promise<RecoveredState> {
  const stored = await store.snapshots.load(key);
  if (stored) assertStoredSnapshot(key, stored);
  const eventIds = stored ? stored.eventIds.slice(-dedupeWindow) : [];
  let seq = stored?.seq ?? 0;
  let at = stored?.at ?? 0;
  let timers: readonly PendingTimer[] = stored?.timers ?? [];
  let snap: AnyMachineSnapshot | undefined;
  const outbox: PendingOutboxMessage[] = stored?.outbox ? [...stored.outbox] : [];
  let outboxSeen = stored?.outbox !== undefined;
  for await (const entry of store.journal.read(key, seq + 1)) {
    if (entry.seq !== seq + 1) {
      throw diverged(key, entry.seq, entry.event, new Error(`journal gap: expected seq ${seq + 1}, found ${entry.seq}`));
    }
    snap ??= stored
      ? restoreMachineSnapshot(machine, stored.state, input, key)
      : (initialTransition(machine, input)[0] as AnyMachineSnapshot);
    snap = replayStep(machine, snap, entry.event, key, entry.seq);
    seq = entry.seq;
    at = entry.at;
    if (entry.timers) timers = entry.timers;
    if (entry.outbox !== undefined) {
      outboxOf(key, entry, outbox);
      outboxSeen = true;
    }
    if (entry.eventId !== undefined) {
      eventIds.push(entry.eventId);
      if (eventIds.length > dedupeWindow) eventIds.shift();
    }
  }
  const state = snap ? machine.getPersistedSnapshot(snap) : stored?.state;
  return { state, seq, snapshotSeq: stored?.seq ?? 0, at, timers, eventIds, run: stored?.run, outbox, outboxSeen };
}

/** Time travel: the state right after `seq`, rebuilt from the journal. */
export async function stateAt(
  store: Store,
  machine: AnyStateMachine,
  key: EntityKey,
  input: unknown,
  seq: number,
): Promise<{ snapshot: AnyMachineSnapshot; seq: number }> {
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw new InvalidInputError('SEQ_OUT_OF_RANGE', `stateAt expects a seq >= 0, got ${String(seq)}.`, { details: { key, seq } });
  }
  const stored = await store.snapshots.load(key);
  if (stored) assertStoredSnapshot(key, stored);
  const fromSnapshot = stored !== undefined && stored.seq <= seq;
  let snap: AnyMachineSnapshot = fromSnapshot
    ? restoreMachineSnapshot(machine, stored.state, input, key)
    : (initialTransition(machine, input)[0] as AnyMachineSnapshot);
  let at = fromSnapshot ? stored.seq : 0;
  if (at < seq) {
    for await (const entry of store.journal.read(key, at + 1, seq)) {
      snap = replayStep(machine, snap, entry.event, key, entry.seq);
      at = entry.seq;
    }
  }
  if (at !== seq) {
    const last = await store.journal.lastSeq(key);
    throw new InvalidInputError(
      'SEQ_OUT_OF_RANGE',
      `${key.type}/${key.id} has no state at seq ${seq}: its journal ends at seq ${last}${at > 0 && at < seq ? '' : ''}. Ask for a seq between 0 and ${last}.`,
      { details: { key, seq, lastSeq: last } },
    );
  }
  return { snapshot: snap, seq: at };
}
