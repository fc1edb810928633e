import { ConfigError, toError } from '../errors.js';
import type { ActionDefinition } from './actions.js';
import {
  correlationEntityId,
  routingTypes,
  type Waiter,
} from './routing-machines.js';
import {
  checkEventType,
  checkKey,
  checkTenant,
} from './routing-input.js';
import type { ServiceHost } from './services.js';
import type { WorkflowEvent } from './types.js';
import { describe } from '../describe.js';

/**
 * Correlated waits: `ctx.events.waitFor(types, { correlationKey })` in a
 * workflow, and the internal action that records the wait in its tenant's
 * correlation index, where `system.publishEvent` finds it.
 */

/** Name of the internal action a correlated wait subscribes with. @internal */
export const SUBSCRIBE_ACTION = 'shardchart.events.subscribe';

/** What a correlated wait needs of the workflow's runner. @internal */
export interface CorrelatedWaitOps {
  readonly tenant: string | undefined;
  /** Whether the hosting system routes events (it runs the subscribe action). */
  readonly routed: boolean;
  action(name: string, params: unknown): Promise<unknown>;
  waitFor(
    match: (event: WorkflowEvent) => boolean,
    options: { timeoutMs?: number },
  ): Promise<unknown>;
}

/**
 * `ctx.events.waitFor(types, { correlationKey })`: subscribes the workflow
 * in its tenant's correlation index (a journaled, at-least-once action
 * step, so the subscription survives any crash) and waits, as one more
 * step, for an event of one of `types` with that key and tenant. Both
 * steps are taken at once, so the wait never depends on when the
 * subscription lands; an event published before it landed is not
 * delivered (deliver those through an attachment: they wait in the
 * instance's inbox).
 * @internal
 */
export function correlatedWaitFor(
  ops: CorrelatedWaitOps,
  match: unknown,
  options: { correlationKey?: unknown; timeoutMs?: number },
): Promise<unknown> {
  try {
    const types =
      typeof match === 'string'
        ? [match]
        : Array.isArray(match) &&
            match.length > 0 &&
            match.every((t) => typeof t === 'string')
          ? [...match]
          : undefined;
    if (types === undefined) {
      throw new TypeError(
        `ctx.events.waitFor with a correlationKey takes an event type or a non-empty array of them (not a predicate); got ${describe(match)}.`,
      );
    }
    for (const t of types) checkEventType(t, 'ctx.events.waitFor');
    const tenant = checkTenant(
      ops.tenant,
      'ctx.events.waitFor with a correlationKey (the workflow\'s trigger event carries its "tenant")',
    );
    const key = checkKey(
      options.correlationKey,
      'ctx.events.waitFor: "correlationKey"',
    );
    if (!ops.routed) {
      throw new ConfigError(
        'ctx.events.waitFor with a correlationKey needs the workflow to run in an actor system (createActorSystem), which keeps the correlation index.',
      );
    }
    // The outcome of the subscription is journaled; the wait does not
    // depend on it (its timeout, if any, still ends it).
    ops
      .action(SUBSCRIBE_ACTION, { eventTypes: types, correlationKey: key })
      .catch(() => undefined);
    const wait: { timeoutMs?: number } = {};
    if (options.timeoutMs !== undefined) wait.timeoutMs = options.timeoutMs;
    return ops.waitFor(
      (e) =>
        types.includes(e.type) &&
        e.correlationKey === key &&
        e.tenant === tenant,
      wait,
    );
  } catch (error) {
    return Promise.reject(toError(error));
  }
}

/** The internal action a correlated wait takes as its first step. @internal */
export function subscribeAction(
  host: ServiceHost,
): ActionDefinition<{ eventTypes: string[]; correlationKey: string }, true> {
  return {
    isolation: 'tenant',
    // Only the send to an entity of this system can fail, and only for as
    // long as the system is unreachable: keep trying.
    retry: {
      attemptsMax: 100,
      backoff: { initialMs: 100, multiplier: 2, maxMs: 30_000 },
    },
    timeoutMs: 30_000,
    async run(params, actx): Promise<true> {
      const tenant = actx.tenant!;
      const { type, id, step } = actx.workflow;
      for (const eventType of params.eventTypes) {
        const waiter: Waiter = {
          workflow: type,
          id,
          step,
          at: host.clock.now(),
        };
        await host
          .entity(
            routingTypes.correlation,
            correlationEntityId(tenant, eventType, params.correlationKey),
          )
          // A re-run (at least once) is recognised by its event id, so a
          // wait an event already consumed is not subscribed again.
          .send(
            { type: 'SUBSCRIBE', waiter },
            {
              eventId: `subscribe:${host.digest(`${type}\u0000${id}\u0000${step}`)}`,
            },
          );
      }
      return true;
    },
  };
}
