import { fromPromise, type AnyActorRef } from 'xstate';
import { whenDurable } from '../system/capture.js';
import { systemClock, type Clock } from '../system/clock.js';
import { executeAction, type ActionOutcome } from './execute.js';
import { actionUnknown, recordError } from './errors.js';
import type { WorkflowBinding, WorkflowSpec } from './spec.js';
import type { WorkflowEvent, WorkflowSnapshot } from './types.js';

/**
 * The actors that run a workflow's action calls: one XState promise actor
 * per call, a child of the workflow actor, whose done event (the call's
 * outcome, plain data) the system journals like any invoke result. While
 * one runs, the system sees an invocation in flight and does not passivate
 * the workflow unless forced.
 */

/** What an action actor is started with. @internal */
export interface ActionActorInput {
  /** Index of the call's record in the step log. */
  step: number;
  /** The call's step id (scope and position), stable across runs. */
  id: string;
  name: string;
  params: unknown;
  root: AnyActorRef;
}

/** The promise logic of `spec`'s action calls. @internal */
export function createActionLogic(
  spec: WorkflowSpec,
  binding: WorkflowBinding,
) {
  return fromPromise<ActionOutcome | undefined, ActionActorInput>(
    ({ input, signal }) => runActionCall(spec, binding, input, signal),
  );
}

/** The clock of the actor (the system's, when hosted). */
export function clockOf(actor: AnyActorRef): Clock {
  const clock = (actor as unknown as { clock?: Partial<Clock> }).clock;
  return clock !== undefined &&
    typeof clock.now === 'function' &&
    typeof clock.setTimeout === 'function'
    ? (clock as Clock)
    : systemClock;
}

/** The trigger's tenant, when it has a non-empty string one. */
export function tenantOf(
  trigger: WorkflowEvent | undefined,
): string | undefined {
  const tenant = trigger?.tenant;
  return typeof tenant === 'string' && tenant.length > 0 ? tenant : undefined;
}

/**
 * The key of the call with step id `step` (see scopes.ts) of this entity:
 * the same on every attempt, every replay and after any restart, and
 * different for any other call.
 */
export function idempotencyKey(
  entity: { type: string; id: string },
  tenant: string | undefined,
  step: string,
): string {
  const base = `${encodeURIComponent(entity.type)}/${encodeURIComponent(entity.id)}#${step}`;
  return tenant === undefined ? base : `${encodeURIComponent(tenant)}/${base}`;
}

/**
 * The body of an action actor. It starts only once every journal entry up
 * to the one recording the call is durable, so the params it runs with and
 * the steps before it survive any crash: after recovery it runs again with
 * the same params and key, never with others.
 */
async function runActionCall(
  spec: WorkflowSpec,
  binding: WorkflowBinding,
  input: ActionActorInput,
  signal: AbortSignal,
): Promise<ActionOutcome | undefined> {
  // The transition that created this actor is journaled right after it
  // returns; one turn later the entry is appended and the barrier covers it.
  await Promise.resolve();
  const durable = whenDurable(input.root);
  if (durable !== undefined) {
    try {
      await durable;
    } catch {
      // The write failed: the entity restarts from its durable state, and
      // the call runs again there if it is still due.
      return undefined;
    }
  }
  if (signal.aborted) return undefined;
  const snap = input.root.getSnapshot() as WorkflowSnapshot;
  const action = binding.actions?.resolve(input.name);
  if (action === undefined)
    return {
      ok: false,
      error: recordError(
        actionUnknown(input.name, binding.actions?.names() ?? []),
      ),
    };
  const tenant = tenantOf(snap.trigger);
  const workflow = {
    name: spec.name,
    type: snap.entity.type,
    id: snap.entity.id,
    step: input.step,
    stepId: input.id,
  };
  return executeAction(
    {
      action,
      params: input.params,
      idempotencyKey: idempotencyKey(
        snap.entity,
        action.isolation === 'tenant' ? tenant : undefined,
        input.id,
      ),
      tenant,
      workflow,
      logger: binding.logger.child({
        workflow: spec.name,
        entityType: workflow.type,
        entityId: workflow.id,
        action: input.name,
        step: input.id,
      }),
    },
    clockOf(input.root),
    signal,
    binding.limits,
  );
}
