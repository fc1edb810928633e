import {
  emit,
  type ActionArgs,
  type ActionFunction,
  type EventObject,
  type MachineContext,
  type ParameterizedObject,
} from 'xstate';
import { EntityError } from '../errors.js';
import { plainDataProblem, type PlainDataLimits } from '../codec/plain-data.js';
import type {
  EntityKey,
  OutboxMessage,
  PlainData,
} from '../persistence/types.js';
import { describe } from '../describe.js';

/**
 * Publishing domain events: the transactional outbox of an entity.
 *
 * `publish({ subject, data, headers? })` is an XState `emit` of a reserved
 * event type (`shardchart.publish`). XState runs emits only when a live
 * actor executes its actions, never in the pure `transition()` that
 * recovery replays with, so a replay never publishes again; and a plain
 * XState actor running the same machine emits an event nobody listens to.
 *
 * In a system, the entity host listens to the root actor's emits, checks
 * each message (subject, headers, plain data within `eventBytesMax`; a bad
 * one fails the event with `EVENT_FAILED`, like a throwing action) and
 * stores the messages of one step in that step's journal entry
 * (`JournalEntry.outbox`). They become durable with the entry, atomically.
 *
 * Delivery happens only after the entry is durable: the journal writer
 * reports every durable seq, and the entity's `Outbox` (outbox.ts) hands the
 * messages of entries up to it to the system's {@link Publisher}, one at a
 * time, in seq and emission order, each with the message id
 * `<system>/<type>/<id>/<seq>/<index>` (`/` and `%` in type and id are
 * percent-encoded). The id is a pure function of where the message is
 * stored, so a retry, a re-delivery after a crash and a delivery by another
 * node all carry the same id: a consumer, or a JetStream stream with a
 * duplicate window (`Nats-Msg-Id`), drops the repeats.
 *
 * A publisher that rejects, throws or does not settle within
 * `publishTimeoutMs` is retried with exponential backoff
 * (`publishBackoffMs` doubling up to 30 s), forever, without holding up the
 * entity's events. Messages wait in memory meanwhile; once
 * `publishPendingMax` wait for one entity, its sends are refused with a
 * retryable `OUTBOX_FULL` until the publisher catches up.
 *
 * At-least-once across crashes, cheaply:
 * - A snapshot keeps the messages still undelivered when it was taken
 *   (`StoredSnapshot.outbox`); recovery re-delivers those plus the messages
 *   of every journal entry after the snapshot. After a clean passivation
 *   nothing is delivered twice; after a crash, at most the messages of the
 *   entries since the last snapshot are.
 * - The write that first makes a message durable also marks the entity's
 *   timer-index entry due, so a restarted process (or the node that takes a
 *   shard over) wakes the entity at once and delivers without waiting for
 *   an event. The mark is cleared lazily, by the next write that updates the
 *   index anyway or by passivation.
 * - Idle passivation and eviction wait until every message is delivered.
 *   A forced passivation (stop, shard handoff, `passivate({ force: true })`)
 *   first delivers what it can, stopping at the first failure; the snapshot
 *   keeps the rest and the timer index wakes the entity again at its next
 *   retry.
 *
 * Messages published by the initial state of a new entity belong to no
 * journal entry: they are numbered seq 0 and made durable by a snapshot
 * written at activation, before they are delivered.
 *
 * Publishing works from the entity's own machine. An invoked or spawned
 * child machine's emits go to the child actor and are not journaled, so they
 * are logged as an error and dropped: let the child `sendParent` an event
 * and publish from the parent.
 */

/** The type of the event `publish` emits. Reserved. */
export const publishEventType = 'shardchart.publish';

/** Longest subject accepted, in characters. */
const SUBJECT_LENGTH_MAX = 1_024;
/** Most headers one message may carry. */
const HEADERS_MAX = 64;
/** Longest header value, in characters. */
const HEADER_VALUE_LENGTH_MAX = 4_096;

/** Named defaults of the publishing options, in one place. */
export const publishDefaults = {
  /** A publisher call that has not settled by then counts as failed. */
  timeoutMs: 5_000,
  /** First retry delay; doubles per consecutive failure. */
  backoffMs: 100,
  /** Longest retry delay. */
  backoffMsMax: 30_000,
  /** Messages waiting for delivery per entity before its sends are refused. */
  pendingMax: 1_000,
} as const;

/** What a `publish` action gives: where to, what, and optional headers. */
export interface PublishInput {
  /** Dot-separated tokens without wildcards, e.g. `orders.paid`. */
  subject: string;
  /** Plain data (what msgpack and JSON restore unchanged). */
  data?: unknown;
  /** Header names are printable ASCII without `:`; `Nats-Msg-Id` is set by Shardchart. */
  headers?: Record<string, string>;
}

/** One message handed to the {@link Publisher}. */
export interface PublishedMessage {
  /** `<system>/<type>/<id>/<seq>/<index>`: the same for every delivery of this message. */
  readonly id: string;
  readonly subject: string;
  /** Read-only: it is the journal's own copy. */
  readonly data: PlainData | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  /** The publishing entity. */
  readonly entity: EntityKey;
  /** Seq of the journal entry that holds the message (0: the initial state). */
  readonly seq: number;
  /** Position among the messages of that entry. */
  readonly index: number;
  /** Clock time at which the publishing event was applied. */
  readonly at: number;
}

/**
 * Delivers one message to a broker or bus. Resolve once the broker has it;
 * reject (or throw) to have it retried. Calls for one entity never overlap
 * and come in order; calls for different entities run concurrently.
 */
export type Publisher = (message: PublishedMessage) => Promise<void> | void;

/** The event `publish` emits. */
export interface PublishEvent {
  type: typeof publishEventType;
  /** What the action gave, unchecked: the entity host checks it. */
  message: unknown;
}

/**
 * An XState action that publishes a domain event once the step that runs it
 * is durable. Give the message, or a function of the action arguments (and
 * params) that returns it. In a plain XState actor it is an `emit` of
 * `{ type: 'shardchart.publish', message }` and nothing else.
 *
 * @example
 * ```ts
 * import { setup, assign } from 'xstate';
 * import { createActorSystem, publish } from 'shardchart';
 *
 * const order = setup({ types: { context: {} as { id: string; paid: boolean } } }).createMachine({
 *   context: ({ input }) => ({ id: (input as { entityId: string }).entityId, paid: false }),
 *   on: {
 *     PAY: {
 *       actions: [
 *         assign({ paid: true }),
 *         publish(({ context }) => ({ subject: 'orders.paid', data: { id: context.id } })),
 *       ],
 *     },
 *   },
 * });
 * const system = await createActorSystem({
 *   name: 'shop',
 *   entities: { order },
 *   publisher: async (m) => bus.publish(m.subject, m.data, { messageId: m.id }),
 * });
 * await system.entity('order', 'o-1').send({ type: 'PAY' }); // published once durable
 * ```
 */
export function publish<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject['params'] | undefined,
  TEvent extends EventObject,
>(
  message:
    | PublishInput
    | ((
        args: ActionArgs<TContext, TExpressionEvent, TEvent>,
        params: TParams,
      ) => PublishInput),
): ActionFunction<
  TContext,
  TExpressionEvent,
  TEvent,
  TParams,
  never,
  never,
  never,
  never,
  never
> {
  // The emitted type is hidden (`never`) so that the action fits machines
  // whose `types.emitted` does not list it.
  const action =
    typeof message === 'function'
      ? emit(
          (
            args: ActionArgs<TContext, TExpressionEvent, TEvent>,
            params: TParams,
          ): PublishEvent => ({
            type: publishEventType,
            message: message(args, params),
          }),
        )
      : emit({ type: publishEventType, message } satisfies PublishEvent);
  return action as never;
}

/**
 * Checks what a `publish` action gave and returns the message to store, or
 * the reason it is refused (a sentence, for the EVENT_FAILED message).
 *
 * @internal
 */
export function toOutboxMessage(
  input: unknown,
  limits: PlainDataLimits,
): OutboxMessage | string {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return `publish expects { subject, data?, headers? }, got ${describe(input)}.`;
  }
  for (const k in input) {
    if (k !== 'subject' && k !== 'data' && k !== 'headers') {
      return `publish takes only subject, data and headers; got an unknown field "${k}".`;
    }
  }
  const { subject, data, headers } = input as Record<string, unknown>;
  const subjectProblem = checkSubject(subject);
  if (subjectProblem !== undefined) return subjectProblem;
  const headersProblem = checkHeaders(headers);
  if (headersProblem !== undefined) return headersProblem;
  const problem = plainDataProblem(data, limits);
  if (problem !== undefined) {
    return `the data published to "${subject as string}" holds ${problem.path.replace(/^\$/, 'data')} that cannot be delivered: ${problem.reason}`;
  }
  const s = subject as string;
  if (data === undefined) {
    return headers === undefined
      ? { subject: s }
      : { subject: s, headers: headers as Record<string, string> };
  }
  return headers === undefined
    ? { subject: s, data: data as PlainData }
    : {
        subject: s,
        data: data as PlainData,
        headers: headers as Record<string, string>,
      };
}

const subjectPattern =
  // eslint-disable-next-line no-control-regex
  /^[^\s.*>\u0000-\u001f\u007f]+(?:\.[^\s.*>\u0000-\u001f\u007f]+)*$/;

function checkSubject(subject: unknown): string | undefined {
  if (typeof subject !== 'string' || subject.length === 0) {
    return `publish needs a non-empty string subject, like "orders.paid"; got ${describe(subject)}.`;
  }
  if (subject.length > SUBJECT_LENGTH_MAX) {
    return `the subject ${describe(subject)} is longer than ${SUBJECT_LENGTH_MAX} characters.`;
  }
  if (!subjectPattern.test(subject)) {
    return `the subject ${describe(subject)} is not a publishable subject: use dot-separated tokens without spaces, control characters or wildcards (* and >).`;
  }
  if (subject.startsWith('shardchart.') || subject.startsWith('$')) {
    return `the subject ${describe(subject)} is reserved (shardchart.* carries the cluster's own traffic, $* the NATS server's); publish to a subject of your own.`;
  }
  return undefined;
}

const headerNamePattern = /^[!-9;-~]+$/;

function checkHeaders(headers: unknown): string | undefined {
  if (headers === undefined) return undefined;
  if (
    typeof headers !== 'object' ||
    headers === null ||
    Array.isArray(headers)
  ) {
    return `publish headers must be an object of strings; got ${describe(headers)}.`;
  }
  const proto = Object.getPrototypeOf(headers) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    return 'publish headers must be a plain object of strings.';
  }
  let count = 0;
  for (const name in headers) {
    if (++count > HEADERS_MAX)
      return `publish takes at most ${HEADERS_MAX} headers.`;
    if (!headerNamePattern.test(name)) {
      return `the header name ${describe(name)} is not printable ASCII without spaces and ":".`;
    }
    if (name.toLowerCase() === 'nats-msg-id') {
      return 'the header "Nats-Msg-Id" is set by Shardchart to the message id; leave it out.';
    }
    const value = (headers as Record<string, unknown>)[name];
    if (
      typeof value !== 'string' ||
      value.length > HEADER_VALUE_LENGTH_MAX ||
      /[\r\n]/.test(value)
    ) {
      return `the header "${name}" must be a string of at most ${HEADER_VALUE_LENGTH_MAX} characters without line breaks; got ${describe(value)}.`;
    }
  }
  return undefined;
}

/**
 * A `publish` action gave a bad message: the event fails like a throwing
 * action (dead letter, restart), and nothing of its step is kept.
 *
 * @internal
 */
export function publishInvalid(
  key: EntityKey,
  event: { type: string } | undefined,
  reason: string,
): EntityError {
  const where =
    event === undefined
      ? `Starting ${key.type}/${key.id} in its initial state`
      : `Applying "${event.type}" to ${key.type}/${key.id}`;
  return new EntityError(
    'EVENT_FAILED',
    `${where} published an invalid message: ${reason} The event was not applied; fix the publish(...) action.`,
    { details: { key, eventType: event?.type, reason } },
  );
}

