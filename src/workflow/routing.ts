import {
  ConfigError,
  EntityError,
  InvalidInputError,
  isShardchartError,
  toError,
} from '../errors.js';
import type { EntityState } from '../system/types.js';
import { checkEvent, checkEventId } from '../system/validate.js';
import {
  correlationEntityId,
  routingDefaults,
  routingTypes,
  type AttachmentRecord,
  type Waiter,
} from './routing-machines.js';
import {
  checkCorrelate,
  checkEventType,
  checkKey,
  checkTenant,
  instanceKey,
} from './routing-input.js';
import type { ServiceHost } from './services.js';
import type { WorkflowEvent } from './types.js';
import { describe } from '../describe.js';

/**
 * Event routing with tenants. `system.publishEvent` hands a tenant's event
 * to the workflows attached to its type in that tenant (each attachment
 * picks the instance from the event: `correlate`) and to the workflows of
 * that tenant waiting for it by correlation key. Instance ids start with
 * the tenant and waits are indexed per tenant, so one tenant's events
 * never reach another tenant's workflows.
 *
 * Every delivery to one workflow carries the event id `published:<id>`:
 * publishing again with the same `id` (a retry after a lost answer or a
 * crash) reaches the same instances and is applied at most once by each.
 */

/** An attachment: events of `eventType` in `tenant` go to workflow type `workflow`. */
export interface Attachment {
  tenant: string;
  eventType: string;
  /** The entity type the workflow is registered under. */
  workflow: string;
  /**
   * How an event picks the workflow instance: a template over the event
   * (`'${payload.invoiceId}'`, `'inv-${payload.invoice.id}'`,
   * `'${correlationKey}'`; fields may be read from `payload`,
   * `correlationKey`, `eventId`, `type` and `tenant`), or a bare payload
   * path (`'invoiceId'`, `'invoice.id'`) as a shorthand for
   * `'${payload.invoiceId}'`. Absent: the event's correlation key when it
   * has one, else a new instance per event (keyed by its event id). The
   * instance's entity id is `<tenant>/<key>`.
   */
  correlate?: string;
  attachedAt: number;
}

/** What `system.attach` takes. */
export interface AttachInput {
  tenant: string;
  eventType: string;
  workflow: string;
  correlate?: string;
}

/** What `system.publishEvent` takes. */
export interface PublishEventInput {
  tenant: string;
  type: string;
  /** Plain data; the workflow reads it as `event.payload`. Default `{}`. */
  payload?: Record<string, unknown>;
  /** Delivers the event to workflows waiting with `waitFor(type, { correlationKey })`. */
  correlationKey?: string;
  /** The event's id; give one to make a retry safe. Default: a new UUID. */
  id?: string;
}

/** The event a workflow receives from publishEvent (its trigger, or what a wait resolves with). */
export interface PublishedEvent extends WorkflowEvent {
  type: string;
  tenant: string;
  payload: Record<string, unknown>;
  eventId: string;
  correlationKey?: string;
}

/** What happened at one workflow instance. */
export interface Delivery {
  /** The workflow's entity type and id. */
  workflow: string;
  id: string;
  via: 'attachment' | 'correlation';
  /**
   * `delivered`: applied now; `duplicate`: applied by an earlier publish
   * of the same id; `ended`: the workflow had finished, nothing to do;
   * `failed`: see `error` (publish again with the same id to retry).
   */
  status: 'delivered' | 'duplicate' | 'ended' | 'failed';
  /** The workflow's journal seq after the delivery. */
  seq?: number;
  error?: Error;
}

/** What `system.publishEvent` resolves with. */
export interface PublishEventResult {
  eventId: string;
  deliveries: Delivery[];
}

/** The event id of one published event at each workflow it reaches. @internal */
export function deliveryEventId(eventId: string): string {
  return `published:${eventId}`;
}

/**
 * The entity id of the workflow instance `key` of `tenant`. Tenants hold no
 * "/", so the id names its tenant unambiguously.
 */
export function workflowInstanceId(tenant: string, key: string): string {
  return `${checkTenant(tenant, 'workflowInstanceId')}/${key}`;
}

/** The routing half of the system's workflow services. @internal */
export function createRouting(host: ServiceHost) {
  function attachmentsOf(tenant: string) {
    return host.entity(routingTypes.attachments, tenant);
  }

  async function attach(input: AttachInput): Promise<Attachment> {
    if (typeof input !== 'object' || input === null)
      throw new ConfigError(
        'system.attach expects { tenant, eventType, workflow, correlate? }.',
      );
    const tenant = checkTenant(input.tenant, 'system.attach');
    const eventType = checkEventType(input.eventType, 'system.attach');
    const workflow = input.workflow;
    if (typeof workflow !== 'string' || !host.isWorkflowType(workflow)) {
      throw new InvalidInputError(
        'ENTITY_TYPE_UNKNOWN',
        `system.attach: ${describe(workflow)} is not a workflow entity type of this system; attach one registered with defineWorkflow (${
          host
            .workflowTypes()
            .map((t) => `"${t}"`)
            .join(', ') || 'none registered'
        }).`,
        { details: { type: String(workflow) } },
      );
    }
    const correlate = checkCorrelate(input.correlate);
    const record: AttachmentRecord = {
      eventType,
      workflow,
      attachedAt: host.clock.now(),
    };
    if (correlate !== undefined) record.correlate = correlate;
    const state = await attachmentsOf(tenant).send({
      type: 'ATTACH',
      attachment: record,
    });
    const kept = recordsOf(state).find(
      (a) => a.eventType === eventType && a.workflow === workflow,
    );
    if (kept === undefined || kept.correlate !== correlate) {
      throw new EntityError(
        'EVENT_REJECTED',
        `Tenant "${tenant}" has ${routingDefaults.attachmentsMax} attachments, the most one tenant holds; detach some first.`,
        { details: { tenant, attachmentsMax: routingDefaults.attachmentsMax } },
      );
    }
    return { tenant, ...kept };
  }

  async function detach(input: {
    tenant: string;
    eventType: string;
    workflow: string;
  }): Promise<boolean> {
    const tenant = checkTenant(input?.tenant, 'system.detach');
    const eventType = checkEventType(input.eventType, 'system.detach');
    const state = await attachmentsOf(tenant).send({
      type: 'DETACH',
      eventType,
      workflow: String(input.workflow),
    });
    return state.changed;
  }

  async function attachments(tenant: string): Promise<Attachment[]> {
    checkTenant(tenant, 'system.attachments');
    const state = await attachmentsOf(tenant).snapshot();
    return recordsOf(state).map((a) => ({ tenant, ...a }));
  }

  async function publishEvent(
    input: PublishEventInput,
  ): Promise<PublishEventResult> {
    if (typeof input !== 'object' || input === null)
      throw new InvalidInputError(
        'EVENT_INVALID',
        'system.publishEvent expects { tenant, type, payload?, correlationKey?, id? }.',
      );
    const tenant = checkTenant(input.tenant, 'system.publishEvent');
    const type = checkEventType(input.type, 'system.publishEvent');
    const payload = input.payload ?? {};
    if (
      typeof payload !== 'object' ||
      payload === null ||
      Array.isArray(payload)
    ) {
      throw new InvalidInputError(
        'EVENT_INVALID',
        `system.publishEvent: "payload" must be a plain object; got ${describe(payload)}.`,
      );
    }
    const eventId = input.id ?? host.newId();
    checkKey(eventId, 'system.publishEvent: "id"');
    checkEventId(deliveryEventId(eventId));
    const event: PublishedEvent = { type, tenant, payload, eventId };
    if (input.correlationKey !== undefined)
      event.correlationKey = checkKey(
        input.correlationKey,
        'system.publishEvent: "correlationKey"',
      );
    // Refused once here rather than once per workflow.
    checkEvent(event, host.eventLimits);

    const targets: {
      workflow: string;
      id: string;
      via: Delivery['via'];
      waiter?: Waiter;
      error?: Error;
    }[] = [];
    const seen = new Set<string>();
    const add = (t: (typeof targets)[number]): void => {
      const k = `${t.workflow}\u0000${t.id}`;
      if (seen.has(k)) return;
      seen.add(k);
      targets.push(t);
    };
    const attached = recordsOf(await attachmentsOf(tenant).snapshot());
    for (const a of attached) {
      if (a.eventType !== type) continue;
      try {
        add({
          workflow: a.workflow,
          id: `${tenant}/${instanceKey(a, event)}`,
          via: 'attachment',
        });
      } catch (error) {
        targets.push({
          workflow: a.workflow,
          id: '',
          via: 'attachment',
          error: toError(error),
        });
      }
    }
    const index =
      event.correlationKey === undefined
        ? undefined
        : host.entity(
            routingTypes.correlation,
            correlationEntityId(tenant, type, event.correlationKey),
          );
    if (index !== undefined) {
      const waiters =
        ((await index.snapshot()).context as { waiters?: Waiter[] }).waiters ??
        [];
      for (const w of waiters)
        add({ workflow: w.workflow, id: w.id, via: 'correlation', waiter: w });
    }

    const deliveries = await Promise.all(
      targets.map((t) =>
        t.error !== undefined
          ? Promise.resolve<Delivery>({
              workflow: t.workflow,
              id: t.id,
              via: t.via,
              status: 'failed',
              error: t.error,
            })
          : deliver(t.workflow, t.id, t.via, event),
      ),
    );
    // A wait an event reached is done with; a retry of this publish finds
    // the deliveries in each workflow's dedupe window instead.
    const consumed = targets
      .filter(
        (t, i) => t.waiter !== undefined && deliveries[i]!.status !== 'failed',
      )
      .map((t) => ({ workflow: t.workflow, id: t.id, step: t.waiter!.step }));
    if (index !== undefined && consumed.length > 0) {
      await index.send({ type: 'CONSUME', waiters: consumed });
    }
    return { eventId, deliveries };
  }

  async function deliver(
    workflow: string,
    id: string,
    via: Delivery['via'],
    event: PublishedEvent,
  ): Promise<Delivery> {
    const base = { workflow, id, via };
    try {
      const state = await host
        .entity(workflow, id)
        .send(event, { eventId: deliveryEventId(event.eventId) });
      return {
        ...base,
        status: state.duplicate === true ? 'duplicate' : 'delivered',
        seq: state.seq,
      };
    } catch (error) {
      if (isShardchartError(error, 'ENTITY_STOPPED'))
        return { ...base, status: 'ended' };
      host.log.warn(
        {
          err: error,
          workflow,
          id,
          eventId: event.eventId,
          tenant: event.tenant,
        },
        'published event not delivered; publish it again with the same id to retry',
      );
      return { ...base, status: 'failed', error: toError(error) };
    }
  }

  return { attach, detach, attachments, publishEvent };
}

function recordsOf(state: EntityState): AttachmentRecord[] {
  return (
    (state.context as { attachments?: AttachmentRecord[] }).attachments ?? []
  );
}
