import { EntityError, ShardchartError, TimeoutError } from '../errors.js';
import type { PlainDataProblem } from '../codec/plain-data.js';
import type { EntityKey } from '../persistence/types.js';

/**
 * The errors an entity host answers callers with. Each says what happened
 * to which entity and what to do next; kept here so the host reads as the
 * flow of a send rather than as the wording of its failures.
 */

type AnyEvent = { type: string };

function name(key: EntityKey): string {
  return `${key.type}/${key.id}`;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function mailboxFull(key: EntityKey, mailboxDepthMax: number): EntityError {
  return new EntityError(
    'MAILBOX_FULL',
    `The mailbox of ${name(key)} holds ${mailboxDepthMax} events (mailboxDepthMax); slow down or retry later.`,
    { retryable: true, details: { key, mailboxDepthMax } },
  );
}

export function entityStopped(key: EntityKey, value: unknown, seq: number): EntityError {
  return new EntityError(
    'ENTITY_STOPPED',
    `${name(key)} reached a final state (${JSON.stringify(value)}) and accepts no more events; use a new entity id.`,
    { details: { key, seq } },
  );
}

/** The answer to a send whose event threw: the machine's own coded error, or EVENT_FAILED. */
export function eventFailed(key: EntityKey, event: AnyEvent, eventId: string | undefined, cause: unknown): ShardchartError {
  if (cause instanceof ShardchartError) return cause;
  return new EntityError(
    'EVENT_FAILED',
    `Applying "${event.type}" to ${name(key)} threw: ${errorMessage(cause)}. The event was not applied and went to dead letters; fix the machine or the event and send it again.`,
    { cause, details: { key, eventType: event.type, eventId } },
  );
}

export function eventRejected(key: EntityKey, event: AnyEvent, value: unknown): EntityError {
  return new EntityError(
    'EVENT_REJECTED',
    `${name(key)} in state ${JSON.stringify(value)} does not accept "${event.type}"; send an event the current state handles.`,
    { details: { key, eventType: event.type, value } },
  );
}

export function contextNotSerializable(key: EntityKey, event: AnyEvent, problem: PlainDataProblem): EntityError {
  return new EntityError(
    'CONTEXT_NOT_SERIALIZABLE',
    `Applying "${event.type}" to ${name(key)} would leave context ${problem.path} that cannot be persisted: ${problem.reason} The event was not applied.`,
    { details: { key, eventType: event.type, path: problem.path, kind: problem.kind } },
  );
}

export function internalEventNotSerializable(key: EntityKey, event: AnyEvent, problem: PlainDataProblem): EntityError {
  return new EntityError(
    'CONTEXT_NOT_SERIALIZABLE',
    `${name(key)} received internal event "${event.type}" holding ${problem.path} that cannot be persisted: ${problem.reason} Make invoked actors resolve with plain data.`,
    { details: { key, eventType: event.type, path: problem.path } },
  );
}

/** Starting the actor (or firing an overdue timer at activation) threw. */
export function startFailed(key: EntityKey, seq: number, error: unknown): ShardchartError {
  if (error instanceof ShardchartError) return error;
  return new EntityError('EVENT_FAILED', `Starting ${name(key)} at seq ${seq} threw: ${errorMessage(error)}.`, {
    cause: error,
    details: { key, seq },
  });
}

/** Callers whose events were applied but not yet durable when the entity failed. */
export function failedBeforeDurable(key: EntityKey, cause: unknown): EntityError {
  return new EntityError('EVENT_FAILED', `${name(key)} failed before this event became durable; send it again.`, {
    retryable: true,
    cause,
  });
}

export function parked(key: EntityKey, attemptsMax: number, seq: number, cause?: unknown): EntityError {
  return new EntityError(
    'ENTITY_FAILED',
    `${name(key)} failed ${attemptsMax} times in a row and is parked; inspect system.deadLetters(), fix the cause, then call ref.restart().`,
    { cause, details: { key, seq } },
  );
}

export function sendTimedOut(key: EntityKey, ms: number): TimeoutError {
  return new TimeoutError(`${name(key)} did not answer within ${ms} ms; the event may still be applied. Retry with the same eventId to be safe.`, {
    details: { key, timeoutMs: ms },
  });
}
