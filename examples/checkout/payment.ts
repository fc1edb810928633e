import { callThroughBreaker, createRetryMachine } from 'shardchart/machines';
import { timing, type CheckoutDeps } from './deps.js';
import { ServiceError } from './services.js';

/** What a successful payment returns; the saga keeps it to refund. */
export interface Charge {
  chargeId: string;
}

/**
 * The payment of one order, as its own entity (`payment/<orderId>`): a
 * retry machine whose task charges the card through the shared circuit
 * breaker entity. Being an entity makes the backoff waits durable timers;
 * being keyed by the order id makes it idempotent — the saga step that
 * waits for it can run again after a restore and finds the same payment.
 *
 * Each attempt asks the breaker first. An open breaker answers at once and
 * the attempt fails as retryable: the payment waits its backoff while the
 * gateway recovers, instead of adding load to it. A declined card is a
 * healthy gateway saying no: it counts as a success for the breaker and
 * ends the payment (not retryable).
 */
export function createPaymentMachine(deps: CheckoutDeps) {
  return createRetryMachine<string, Charge>({
    id: 'payment',
    attemptsMax: timing.paymentAttemptsMax,
    backoff: timing.paymentBackoff,
    isRetryable: (err) => !(err instanceof ServiceError) || err.retryable,
    task: async (orderId, { attempt }) => {
      // The order is the source of truth for what to charge.
      const order = (await deps.entity('checkout', orderId).snapshot())
        .context as { token: string | null; totalCents: number };
      if (order.token === null)
        throw new ServiceError(
          'no_payment_method',
          `Order ${orderId} has no payment method.`,
          false,
        );
      const token = order.token;
      const call = await callThroughBreaker(
        deps.entity('breaker', timing.breakerId),
        { correlationId: `${orderId}#${attempt}`, now: deps.now },
        async () => {
          try {
            return {
              charged: await deps.services.charge(
                orderId,
                token,
                order.totalCents,
              ),
            };
          } catch (err) {
            if (err instanceof ServiceError && !err.retryable)
              return { refused: err };
            throw err;
          }
        },
      );
      if (call.outcome === 'rejected') {
        throw new ServiceError(
          'breaker_open',
          `The payment gateway's breaker is open; retry in ${call.decision.retryAfterMs ?? '?'} ms.`,
          true,
        );
      }
      if (call.outcome === 'failed') {
        const code =
          typeof call.error?.code === 'string'
            ? call.error.code
            : 'gateway_error';
        throw new ServiceError(
          code,
          call.error?.message ?? 'The payment gateway failed.',
          true,
        );
      }
      const { charged, refused } = call.result!;
      if (refused) throw refused;
      return charged;
    },
  });
}
