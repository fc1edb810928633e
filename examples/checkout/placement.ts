import { createSagaMachine, type RetryOutput } from 'shardchart/machines';
import type { CheckoutDeps } from './deps.js';
import type { Charge } from './payment.js';
import { ServiceError } from './services.js';

/** What the placement saga needs from the order. */
export interface PlacementInput {
  orderId: string;
  skus: string[];
  address: string;
}

/**
 * Placing an order, as a saga: reserve the stock and take the payment at
 * the same time, then book the courier. When a step fails, the completed
 * ones are undone in reverse order: a failed payment releases the stock; an
 * undeliverable address refunds the payment and releases the stock.
 *
 * The payment step starts the order's payment entity (a retry machine, see
 * payment.ts) and waits for it to finish. Every step is idempotent by the
 * order id, so the saga may run a step again after a restore.
 */
export function createPlacementSaga(deps: CheckoutDeps) {
  return createSagaMachine<PlacementInput>({
    id: 'placement',
    steps: [
      {
        parallel: [
          {
            id: 'reserveStock',
            run: ({ input }) =>
              deps.services.reserveStock(input.orderId, input.skus),
            compensate: ({ result }) =>
              deps.services.releaseStock(
                (result as { reservationId: string }).reservationId,
              ),
          },
          {
            id: 'payment',
            run: async ({ input }) => {
              const done = await deps
                .entity('payment', input.orderId)
                .waitFor((s) => s.status === 'done');
              const out = done.output as RetryOutput<Charge>;
              if (out.outcome === 'succeeded') return out.result!;
              const last = out.attempts.at(-1)?.error;
              throw new ServiceError(
                'payment_failed',
                `Payment ${out.outcome} after ${out.attemptsMade} attempt(s)${last ? `: ${String(last.code ?? last.name)}` : ''}.`,
                false,
              );
            },
            compensate: ({ result }) =>
              deps.services.refund((result as Charge).chargeId),
          },
        ],
      },
      {
        id: 'bookCourier',
        run: ({ input }) =>
          deps.services.bookCourier(input.orderId, input.address),
      },
    ],
    compensation: { attemptsMax: 3, backoff: { initialMs: 100, maxMs: 1_000 } },
  });
}
