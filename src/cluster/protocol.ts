/**
 * Messages between the nodes of a cluster. Every message is an envelope of
 * the codec (`encodeEnvelope`: a version byte, then msgpack) and is decoded
 * with the node's decode limits; anything malformed becomes a `ClusterError`
 * `MESSAGE_INVALID` that the receiver counts and answers (when it can) and
 * never throws past its handler.
 */
import {
  decodeEnvelope,
  encodeEnvelope,
  type DecodeLimits,
} from '../codec/index.js';
import {
  ClusterError,
  isShardchartError,
  ShardchartError,
  type ErrorCode,
} from '../errors.js';
import type { EntityState } from '../system/types.js';

type AnyEvent = { type: string; [key: string]: unknown };

/** An event for an entity, published to its shard's stream. */
export interface SendMessage {
  readonly k: 'send';
  readonly type: string;
  readonly id: string;
  readonly event: AnyEvent;
  /** Always present on the wire: the router makes one when the caller gave none. */
  readonly eventId: string;
  /** Where the owner answers, with `cid`; absent for fire-and-forget. */
  readonly replyTo?: string;
  readonly cid?: number;
  /** Clock time of the sender when it sent (ms since epoch), for logs. */
  readonly sentAt: number;
}

/** A read of one entity on its owner (core request-reply). */
export type QueryMessage = ReadQuery | WatchQuery;

export interface ReadQuery {
  readonly k: 'query';
  readonly op: 'snapshot' | 'passivate' | 'restart' | 'isLive';
  readonly type: string;
  readonly id: string;
  readonly force?: boolean;
}

/** Bounds of a watch's `ttlMs`: a watch is renewed every ttlMs / 3. */
const WATCH_TTL_MS_MIN = 100;
const WATCH_TTL_MS_MAX = 60_000;

/**
 * Asks the owner to publish every new state of the entity on its shard's
 * `state.<n>` subject for `ttlMs` (see src/cluster/nats/watch-registry.ts).
 * The same query renews it. The answer carries the current state when the
 * owner had no watch of this watcher yet, or when it published a state
 * newer than `seq` (the last one the watcher got; -1 for none) that the
 * watcher may have missed; otherwise no state, so renewing is cheap.
 */
export interface WatchQuery {
  readonly k: 'query';
  readonly op: 'watch';
  readonly type: string;
  readonly id: string;
  /** Who watches: the watching node's reply subject (one per process incarnation). */
  readonly watcher: string;
  readonly ttlMs: number;
  readonly seq: number;
}

/**
 * A new state of a watched entity, published by its owner on `state.<n>`.
 * `state` is absent when the encoded state would exceed `messageBytesMax`:
 * the watcher then asks for it (and gets the same size error a snapshot
 * would), rather than missing it silently.
 */
export interface StateMessage {
  readonly k: 'state';
  readonly type: string;
  readonly id: string;
  readonly seq: number;
  readonly state?: EntityState;
}

/**
 * Published by a node on `state.<n>` once it consumes shard n: watchers of
 * the shard's entities renew their watches at once, so the new owner
 * publishes their states from now on instead of from the next renewal.
 */
export interface MovedMessage {
  readonly k: 'moved';
  readonly shard: number;
}

/** The answer to a send or a query. */
export type ReplyMessage =
  | {
      readonly k: 'reply';
      readonly cid?: number;
      readonly ok: true;
      readonly state?: EntityState;
      readonly value?: unknown;
    }
  | {
      readonly k: 'reply';
      readonly cid?: number;
      readonly ok: false;
      readonly error: WireError;
    };

/** A ShardchartError as it crosses the wire. */
export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
  readonly details?: Record<string, unknown>;
}

export type ClusterMessage =
  SendMessage | QueryMessage | ReplyMessage | StateMessage | MovedMessage;

export function encodeMessage(message: ClusterMessage): Uint8Array {
  return encodeEnvelope(message);
}

function invalid(
  message: string,
  details?: Record<string, unknown>,
  cause?: unknown,
): ClusterError {
  return new ClusterError('MESSAGE_INVALID', message, {
    details,
    cause,
    retryable: false,
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(
  body: Record<string, unknown>,
  field: string,
  what: string,
): string {
  const value = body[field];
  if (typeof value !== 'string' || value.length === 0) {
    throw invalid(
      `${what} has no string "${field}"; see the subject scheme in the README's cluster section.`,
      { field },
    );
  }
  return value;
}

function event(body: Record<string, unknown>, what: string): AnyEvent {
  const value = body.event;
  if (!isRecord(value) || typeof value.type !== 'string') {
    throw invalid(`${what} has no "event" object with a string "type".`, {
      field: 'event',
    });
  }
  return value as AnyEvent;
}

function int(
  body: Record<string, unknown>,
  field: string,
  what: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const value = body[field];
  if (
    typeof value !== 'number' ||
    !Number.isSafeInteger(value) ||
    value < min ||
    value > max
  ) {
    throw invalid(
      `${what} has no integer "${field}" between ${min} and ${max}; got ${JSON.stringify(value)}.`,
      { field },
    );
  }
  return value;
}

const STATUSES: readonly unknown[] = ['active', 'done', 'error', 'stopped'];

/** The checks a receiver relies on: a seq to order states by and a known status. */
function entityState(value: unknown, seq: number): EntityState {
  if (
    !isRecord(value) ||
    value.seq !== seq ||
    !STATUSES.includes(value.status) ||
    !('value' in value)
  ) {
    throw invalid(
      `A state message has no "state" map with the message's seq (${seq}), a "value" and a status of ${STATUSES.join(', ')}.`,
      { field: 'state' },
    );
  }
  return value as unknown as EntityState;
}

/** Decodes bytes into a cluster message, or throws MESSAGE_INVALID. */
export function decodeMessage(
  bytes: Uint8Array,
  limits: DecodeLimits,
): ClusterMessage {
  let body: unknown;
  try {
    body = decodeEnvelope(bytes, limits);
  } catch (error) {
    throw invalid(
      `A cluster message could not be decoded (${error instanceof Error ? error.message : String(error)}).`,
      undefined,
      error,
    );
  }
  if (!isRecord(body)) throw invalid('A cluster message is not a map.');
  switch (body.k) {
    case 'send': {
      const cid = body.cid;
      const replyTo = body.replyTo;
      if (replyTo !== undefined && typeof replyTo !== 'string')
        throw invalid('A send message has a non-string "replyTo".');
      if (cid !== undefined && typeof cid !== 'number')
        throw invalid('A send message has a non-number "cid".');
      return {
        k: 'send',
        type: str(body, 'type', 'A send message'),
        id: str(body, 'id', 'A send message'),
        event: event(body, 'A send message'),
        eventId: str(body, 'eventId', 'A send message'),
        replyTo,
        cid,
        sentAt: typeof body.sentAt === 'number' ? body.sentAt : 0,
      };
    }
    case 'query': {
      const op = body.op;
      if (op === 'watch') {
        return {
          k: 'query',
          op,
          type: str(body, 'type', 'A query'),
          id: str(body, 'id', 'A query'),
          watcher: str(body, 'watcher', 'A watch query'),
          ttlMs: int(
            body,
            'ttlMs',
            'A watch query',
            WATCH_TTL_MS_MIN,
            WATCH_TTL_MS_MAX,
          ),
          seq: int(body, 'seq', 'A watch query', -1),
        };
      }
      if (
        op !== 'snapshot' &&
        op !== 'passivate' &&
        op !== 'restart' &&
        op !== 'isLive'
      ) {
        throw invalid(
          `A query message has an unknown "op" ${JSON.stringify(op)}.`,
        );
      }
      return {
        k: 'query',
        op,
        type: str(body, 'type', 'A query'),
        id: str(body, 'id', 'A query'),
        force: body.force === true,
      };
    }
    case 'state': {
      const seq = int(body, 'seq', 'A state message', 0);
      return {
        k: 'state',
        type: str(body, 'type', 'A state message'),
        id: str(body, 'id', 'A state message'),
        seq,
        state:
          body.state === undefined ? undefined : entityState(body.state, seq),
      };
    }
    case 'moved':
      return { k: 'moved', shard: int(body, 'shard', 'A moved message', 0) };
    case 'reply': {
      const cid = typeof body.cid === 'number' ? body.cid : undefined;
      if (body.ok === true)
        return {
          k: 'reply',
          cid,
          ok: true,
          state: body.state as EntityState | undefined,
          value: body.value,
        };
      const error = body.error;
      if (
        !isRecord(error) ||
        typeof error.code !== 'string' ||
        typeof error.message !== 'string'
      ) {
        throw invalid(
          'A failed reply has no "error" with string "code" and "message".',
        );
      }
      return {
        k: 'reply',
        cid,
        ok: false,
        error: {
          code: error.code,
          message: error.message,
          retryable: error.retryable === true,
          details: isRecord(error.details) ? error.details : undefined,
        },
      };
    }
    default:
      throw invalid(
        `A cluster message has an unknown kind ${JSON.stringify(body.k)}.`,
      );
  }
}

export function toWireError(error: unknown): WireError {
  if (isShardchartError(error)) {
    return {
      code: error.code,
      message: error.message,
      retryable: error.retryable,
      details: plainDetails(error.details),
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'EVENT_FAILED', message, retryable: false };
}

function plainDetails(
  details: Record<string, unknown> | undefined,
): Record<string, unknown> | undefined {
  if (details === undefined) return undefined;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(details)) {
    if (
      value === null ||
      ['string', 'number', 'boolean'].includes(typeof value)
    )
      out[key] = value;
    else if (
      isRecord(value) &&
      typeof value.type === 'string' &&
      typeof value.id === 'string'
    )
      out[key] = { type: value.type, id: value.id };
  }
  return out;
}

/** Rebuilds an error from the wire, keeping its code (unknown codes become CLUSTER_UNAVAILABLE). */
export function fromWireError(
  error: WireError,
  node?: string,
): ShardchartError {
  const code = error.code as ErrorCode;
  const rebuilt = new ShardchartError(code, error.message, {
    details: { ...error.details, ...(node === undefined ? {} : { node }) },
    retryable: error.retryable,
  });
  rebuilt.name = 'ShardchartError';
  return rebuilt;
}
