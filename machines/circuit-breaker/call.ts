import { EntityError } from '../../src/errors.js';
import {
  serialiseError,
  type SerializedError,
} from '../retry/serialise-error.js';
import type { BreakerContext, BreakerDecision } from './breaker-machine.js';

/**
 * The entity pattern: a breaker entity shared by many workflow entities.
 *
 * One entity cannot `sendTo` another (actions act inside one actor, and a
 * reply target is not plain data an entity could journal), so a workflow
 * asks the breaker from inside an invoked promise, through the system:
 * `breakerRef.send({ type: 'CALL', correlationId, at })`. The send resolves
 * with the breaker's state right after that CALL was applied, and the
 * answer is in its context — `lastDecision`, or, robust to a retried send
 * answered as a duplicate, the entry for the correlation id in
 * `decisions`. The promise then runs the protected call and reports
 * `SUCCESS`/`FAILURE`, and resolves with a plain-data settlement that the
 * workflow's journal records.
 */

/** The part of an EntityRef (or anything alike) that the pattern needs. */
export interface BreakerRefLike {
  send(
    event: { type: string; [key: string]: unknown },
    options?: { eventId?: string },
  ): Promise<{ context: unknown }>;
}

/** How a call through the breaker settled; plain data, ready to be an invoke's output. */
export interface BreakerCallResult<TResult = unknown> {
  decision: BreakerDecision;
  outcome: 'rejected' | 'succeeded' | 'failed';
  /** Present when `outcome` is `'succeeded'`. */
  result?: TResult;
  /** Present when `outcome` is `'failed'`. */
  error?: SerializedError;
}

/**
 * The breaker's answer for `correlationId` in a breaker context (from a
 * send result or a snapshot), or undefined when it has none (not asked, or
 * evicted from the last `decisionsMax`).
 *
 * @example
 * ```ts
 * const state = await system.entity('breaker', 'payments').send({ type: 'CALL', correlationId: 'order-7', at: Date.now() });
 * decisionFor(state.context, 'order-7')?.decision; // 'ALLOWED' | 'REJECTED'
 * ```
 */
export function decisionFor(
  context: unknown,
  correlationId: string,
): BreakerDecision | undefined {
  const ctx = context as Partial<BreakerContext> | null | undefined;
  if (ctx?.lastDecision?.correlationId === correlationId)
    return ctx.lastDecision;
  return ctx?.decisions?.findLast((d) => d.correlationId === correlationId);
}

/**
 * Asks a breaker entity for permission, runs `run` when allowed, and
 * reports the result to the breaker. Never throws for `run`'s failure: the
 * error is returned as plain data (`outcome: 'failed'`), so the result can
 * be an invoked promise's output in a workflow entity. Sends carry event ids
 * derived from the correlation id, so a retried call (at least once, after
 * a restore) is not counted twice by the breaker.
 *
 * @example
 * ```ts
 * import { fromPromise } from 'xstate';
 * import { callThroughBreaker } from 'shardchart/machines';
 *
 * // In a workflow machine's setup: an invoked actor that charges a card through the shared breaker.
 * const charge = fromPromise(({ input }: { input: { orderId: string } }) =>
 *   callThroughBreaker(
 *     system.entity('breaker', 'payments'),
 *     { correlationId: `charge-${input.orderId}`, now: () => clock.now() },
 *     () => payments.charge(input.orderId),
 *   ),
 * );
 * ```
 */
export async function callThroughBreaker<TResult>(
  breaker: BreakerRefLike,
  call: { correlationId: string; now: () => number },
  run: () => Promise<TResult>,
): Promise<BreakerCallResult<TResult>> {
  const { correlationId, now } = call;
  const asked = await breaker.send(
    { type: 'CALL', correlationId, at: now() },
    { eventId: `${correlationId}:call` },
  );
  const decision = decisionFor(asked.context, correlationId);
  if (!decision) {
    throw new EntityError(
      'EVENT_REJECTED',
      `The breaker did not answer CALL "${correlationId}": its state holds no decision for it. Check that the ref is a circuit breaker entity and that the correlation id is a non-empty string.`,
      { details: { correlationId } },
    );
  }
  if (decision.decision === 'REJECTED')
    return { decision, outcome: 'rejected' };
  try {
    const result = await run();
    await breaker.send(
      { type: 'SUCCESS', correlationId, at: now() },
      { eventId: `${correlationId}:result` },
    );
    return { decision, outcome: 'succeeded', result };
  } catch (error) {
    await breaker.send(
      { type: 'FAILURE', correlationId, at: now() },
      { eventId: `${correlationId}:result` },
    );
    return { decision, outcome: 'failed', error: serialiseError(error) };
  }
}
