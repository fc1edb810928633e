import { assign, setup } from 'xstate';

/**
 * The entities event routing keeps its records in. They are ordinary
 * entity types of the hosting system, so attachments and correlation waits
 * are journaled, snapshotted, passivated, clustered and time-travelable on
 * every store like any entity, with no side database:
 *
 * - `shardchart.attachments`, one per tenant (id: the tenant): which
 *   workflows an event type starts or continues, and how an event picks
 *   the instance (`correlate`);
 * - `shardchart.correlation`, one per (tenant, event type, correlation
 *   key): the workflows waiting for that event with that key. Keyed that
 *   finely, each stays small however many workflows a tenant runs.
 *
 * Their guards check every event's shape: an event that does not fit
 * changes nothing (and is not journaled), whoever sent it.
 */

/** Entity type names of routing; the `shardchart.` prefix is reserved. @internal */
export const routingTypes = {
  attachments: 'shardchart.attachments',
  correlation: 'shardchart.correlation',
} as const;

/** Bounds of the routing records, in one place. */
export const routingDefaults = {
  /** Characters in a tenant id. */
  tenantLengthMax: 128,
  /** Characters in a routed event type. */
  eventTypeLengthMax: 128,
  /** Characters in a correlation key or a correlated instance key. */
  correlationKeyLengthMax: 240,
  /** Characters in an attachment's `correlate` template. */
  correlateLengthMax: 512,
  /** Attachments one tenant may hold. */
  attachmentsMax: 1_000,
  /** Waiting workflows kept per (tenant, event type, key); beyond it the oldest is dropped. */
  waitersMax: 1_000,
} as const;

/** One attachment as the tenant's record holds it. */
export interface AttachmentRecord {
  eventType: string;
  workflow: string;
  /** The template that maps an event to an instance key; absent: see Attachment.correlate. */
  correlate?: string;
  attachedAt: number;
}

/** A workflow instance waiting at one step for a correlated event. */
export interface Waiter {
  workflow: string;
  id: string;
  step: number;
  at: number;
}

type AttachEvent = { type: 'ATTACH'; attachment: AttachmentRecord };
type DetachEvent = { type: 'DETACH'; eventType: string; workflow: string };

const isString = (v: unknown): v is string =>
  typeof v === 'string' && v.length > 0;

function isAttachment(a: unknown): a is AttachmentRecord {
  if (typeof a !== 'object' || a === null) return false;
  const r = a as Partial<AttachmentRecord>;
  return (
    isString(r.eventType) &&
    isString(r.workflow) &&
    (r.correlate === undefined || isString(r.correlate)) &&
    typeof r.attachedAt === 'number'
  );
}

const sameTarget = (
  a: { eventType: string; workflow: string },
  b: { eventType: string; workflow: string },
): boolean => a.eventType === b.eventType && a.workflow === b.workflow;

/**
 * The attachments of one tenant. ATTACH replaces the attachment of the same
 * event type and workflow (so attaching again with another `correlate`
 * changes it) and is refused past `attachmentsMax`; attaching what is
 * there already changes nothing.
 * @internal
 */
export const attachmentsMachine = setup({
  types: {
    context: {} as { attachments: AttachmentRecord[] },
    events: {} as AttachEvent | DetachEvent,
  },
  guards: {
    changes: ({ context, event }) => {
      if (event.type !== 'ATTACH' || !isAttachment(event.attachment))
        return false;
      const next = event.attachment;
      const same = context.attachments.find((a) => sameTarget(a, next));
      if (same !== undefined) return same.correlate !== next.correlate;
      return context.attachments.length < routingDefaults.attachmentsMax;
    },
    attached: ({ context, event }) =>
      event.type === 'DETACH' &&
      context.attachments.some((a) => sameTarget(a, event)),
  },
}).createMachine({
  id: routingTypes.attachments,
  context: { attachments: [] },
  on: {
    ATTACH: {
      guard: 'changes',
      actions: assign({
        attachments: ({ context, event }) => {
          const next: AttachmentRecord = {
            eventType: event.attachment.eventType,
            workflow: event.attachment.workflow,
            attachedAt: event.attachment.attachedAt,
          };
          if (event.attachment.correlate !== undefined)
            next.correlate = event.attachment.correlate;
          const at = context.attachments.findIndex((a) => sameTarget(a, next));
          return at < 0
            ? [...context.attachments, next]
            : context.attachments.map((a, i) => (i === at ? next : a));
        },
      }),
    },
    DETACH: {
      guard: 'attached',
      actions: assign({
        attachments: ({ context, event }) =>
          context.attachments.filter((a) => !sameTarget(a, event)),
      }),
    },
  },
});

type SubscribeEvent = { type: 'SUBSCRIBE'; waiter: Waiter };
type ConsumeEvent = {
  type: 'CONSUME';
  waiters: { workflow: string; id: string; step: number }[];
};

const sameWaiter = (
  a: { workflow: string; id: string; step: number },
  b: { workflow: string; id: string; step: number },
): boolean => a.workflow === b.workflow && a.id === b.id && a.step === b.step;

function isWaiter(w: unknown): w is Waiter {
  if (typeof w !== 'object' || w === null) return false;
  const r = w as Partial<Waiter>;
  return (
    isString(r.workflow) &&
    isString(r.id) &&
    Number.isSafeInteger(r.step) &&
    typeof r.at === 'number'
  );
}

/**
 * The workflows waiting for one (tenant, event type, correlation key).
 * SUBSCRIBE adds a wait once; CONSUME removes the waits an event was
 * delivered to.
 * @internal
 */
export const correlationMachine = setup({
  types: {
    context: {} as { waiters: Waiter[] },
    events: {} as SubscribeEvent | ConsumeEvent,
  },
  guards: {
    isNew: ({ context, event }) =>
      event.type === 'SUBSCRIBE' &&
      isWaiter(event.waiter) &&
      !context.waiters.some((w) => sameWaiter(w, event.waiter)),
    consumes: ({ context, event }) =>
      event.type === 'CONSUME' &&
      Array.isArray(event.waiters) &&
      context.waiters.some((w) =>
        event.waiters.some(
          (c) => isWaiter({ ...c, at: 0 }) && sameWaiter(w, c),
        ),
      ),
  },
}).createMachine({
  id: routingTypes.correlation,
  context: { waiters: [] },
  on: {
    SUBSCRIBE: {
      guard: 'isNew',
      actions: assign({
        // A full list drops its oldest wait: most likely one that timed out
        // and was never consumed.
        waiters: ({ context, event }) =>
          [
            ...context.waiters,
            {
              workflow: event.waiter.workflow,
              id: event.waiter.id,
              step: event.waiter.step,
              at: event.waiter.at,
            },
          ].slice(-routingDefaults.waitersMax),
      }),
    },
    CONSUME: {
      guard: 'consumes',
      actions: assign({
        waiters: ({ context, event }) =>
          context.waiters.filter(
            (w) => !event.waiters.some((c) => sameWaiter(w, c)),
          ),
      }),
    },
  },
});

/**
 * The id of the correlation entity of (tenant, event type, key). A tenant
 * holds no "/", so the first "/" ends it; the event type is length-prefixed
 * because it may hold one. Distinct triples never share an id.
 * @internal
 */
export function correlationEntityId(
  tenant: string,
  eventType: string,
  key: string,
): string {
  return `${tenant}/${eventType.length}:${eventType}/${key}`;
}
