import { ConfigError, InvalidInputError } from '../errors.js';
import { plainDataProblem, type PlainDataLimits } from '../codec/plain-data.js';
import { defaults } from './runtime.js';
import { describe } from '../describe.js';

/**
 * Input checks at the edge of the system: everything a caller hands us is
 * checked before it reaches a mailbox, so a bad event is refused with a
 * typed error and never half-applied.
 */

export type AnyEvent = { type: string; [key: string]: unknown };

export function checkEntityId(type: string, id: unknown): asserts id is string {
  if (typeof id !== 'string' || id.length === 0 || id.length > defaults.entityIdLengthMax) {
    throw new InvalidInputError(
      'ENTITY_ID_INVALID',
      `Entity ids are non-empty strings of at most ${defaults.entityIdLengthMax} characters; got ${describe(id)} for type "${type}".`,
      { details: { type, id: typeof id === 'string' ? id.slice(0, 64) : typeof id } },
    );
  }
}

export function checkEvent(event: unknown, limits: PlainDataLimits): asserts event is AnyEvent {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new InvalidInputError(
      'EVENT_INVALID',
      `An event must be a plain object with a string "type", like { type: 'PAY' }; got ${describe(event)}.`,
    );
  }
  const type = (event as { type?: unknown }).type;
  if (typeof type !== 'string' || type.length === 0) {
    throw new InvalidInputError(
      'EVENT_INVALID',
      `An event needs a non-empty string "type"; got type ${describe(type)}.`,
    );
  }
  if (type.startsWith('xstate.') || type === '*') {
    throw new InvalidInputError(
      'EVENT_INVALID',
      `Event type "${type}" is reserved for XState's internal events; choose another type.`,
      { details: { eventType: type } },
    );
  }
  const problem = plainDataProblem(event, limits);
  if (problem) {
    const { kind, path, reason } = problem;
    if (kind === 'too-large' || kind === 'too-deep') {
      throw new InvalidInputError(
        'EVENT_TOO_LARGE',
        `Event "${type}" is over the limit (${kind === 'too-large' ? `${limits.bytesMax} bytes, eventBytesMax` : `${limits.depthMax} levels deep`}) at ${path}; send a reference to the data instead of the data.`,
        { details: { eventType: type, path, kind } },
      );
    }
    throw new InvalidInputError(
      'EVENT_NOT_SERIALIZABLE',
      `Event "${type}" holds ${path} that cannot be persisted: ${reason}`,
      { details: { eventType: type, path, kind } },
    );
  }
}

export function checkEventId(eventId: unknown): asserts eventId is string | undefined {
  if (eventId === undefined) return;
  if (typeof eventId !== 'string' || eventId.length === 0 || eventId.length > 256) {
    throw new InvalidInputError(
      'EVENT_INVALID',
      `An eventId is a non-empty string of at most 256 characters; got ${describe(eventId)}.`,
    );
  }
}

export function positiveInt(name: string, value: unknown, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(`Option "${name}" must be an integer >= ${min}; got ${describe(value)}.`, {
      details: { option: name, value },
    });
  }
  return value;
}

