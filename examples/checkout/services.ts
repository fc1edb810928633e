/**
 * The outside world of the checkout example: an inventory, a payment
 * gateway and a courier, kept in memory so the example runs anywhere. They
 * behave like real services in the ways that matter to the workflow: calls
 * take a little time, some fail for a while and then work, some fail for
 * good, and every call is idempotent by the key it is given (a retried call
 * after a restore does not charge twice).
 *
 * Payment tokens choose the gateway's behaviour:
 * - `tok_ok`: charged at once;
 * - `tok_flaky`: a timeout on the first two attempts of each order, then charged;
 * - `tok_declined`: declined (code `card_declined`): retrying cannot help;
 * - `tok_outage`: the gateway is down (always a timeout), which trips the
 *   shared circuit breaker after a few orders.
 *
 * Addresses containing `nowhere` cannot be delivered to: booking the courier
 * fails, after the payment was taken, so the saga refunds and releases.
 */

/** An error a service returns; `code` is what the workflow records. */
export class ServiceError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'ServiceError';
  }
}

export interface CheckoutServices {
  reserveStock(
    orderId: string,
    skus: string[],
  ): Promise<{ reservationId: string }>;
  releaseStock(reservationId: string): Promise<void>;
  charge(
    orderId: string,
    token: string,
    amountCents: number,
  ): Promise<{ chargeId: string }>;
  refund(chargeId: string): Promise<void>;
  bookCourier(
    orderId: string,
    address: string,
  ): Promise<{ trackingId: string }>;
}

/** What the fake services did, for the example's summary and its test. */
export interface ServiceLedger {
  reserved: Set<string>;
  charged: Map<string, number>;
  refunded: Set<string>;
  released: Set<string>;
  booked: Set<string>;
  /** Charge attempts that reached the gateway, per order. */
  chargeAttempts: Map<string, number>;
}

/** The in-memory services, with the ledger of what they did. */
export type FakeServices = CheckoutServices & { ledger: ServiceLedger };

/** In-memory services with the behaviours listed above. */
export function createFakeServices(): FakeServices {
  const ledger: ServiceLedger = {
    reserved: new Set(),
    charged: new Map(),
    refunded: new Set(),
    released: new Set(),
    booked: new Set(),
    chargeAttempts: new Map(),
  };
  // A turn of the event loop, so calls are really asynchronous.
  const io = () => new Promise<void>((resolve) => setImmediate(resolve));
  return {
    ledger,
    async reserveStock(orderId) {
      await io();
      ledger.reserved.add(`res-${orderId}`);
      return { reservationId: `res-${orderId}` };
    },
    async releaseStock(reservationId) {
      await io();
      ledger.released.add(reservationId);
    },
    async charge(orderId, token, amountCents) {
      await io();
      const attempt = (ledger.chargeAttempts.get(orderId) ?? 0) + 1;
      ledger.chargeAttempts.set(orderId, attempt);
      if (token === 'tok_declined')
        throw new ServiceError(
          'card_declined',
          'The card was declined.',
          false,
        );
      if (token === 'tok_outage' || (token === 'tok_flaky' && attempt <= 2)) {
        throw new ServiceError(
          'gateway_timeout',
          'The payment gateway did not answer in time.',
          true,
        );
      }
      ledger.charged.set(`ch-${orderId}`, amountCents);
      return { chargeId: `ch-${orderId}` };
    },
    async refund(chargeId) {
      await io();
      ledger.refunded.add(chargeId);
    },
    async bookCourier(orderId, address) {
      await io();
      if (address.includes('nowhere'))
        throw new ServiceError(
          'address_undeliverable',
          `No courier delivers to "${address}".`,
          false,
        );
      ledger.booked.add(`trk-${orderId}`);
      return { trackingId: `trk-${orderId}` };
    },
  };
}
