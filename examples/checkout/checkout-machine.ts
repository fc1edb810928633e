import { assign, setup } from 'xstate';
import type { SagaOutput } from 'shardchart/machines';
import { timing, type CheckoutDeps } from './deps.js';
import { createPlacementSaga } from './placement.js';

/** One order. Plain data only: it is an entity's context. */
export interface CheckoutContext {
  orderId: string;
  skus: string[];
  totalCents: number;
  token: string | null;
  address: string | null;
  rate: string | null;
  wrongCodes: number;
  pauses: number;
  /** The placement saga's output, once it has finished. */
  placement: SagaOutput | null;
  /** Set on reaching a final state. */
  outcome: CheckoutOutput['status'] | null;
}

export type CheckoutEvent =
  | { type: 'ADD_ITEM'; sku: string; priceCents: number }
  | { type: 'CHECKOUT' }
  | { type: 'PAYMENT_METHOD'; token: string }
  | { type: 'CODE'; code: string }
  | { type: 'ADDRESS'; address: string }
  | { type: 'RATE'; rate: string }
  | { type: 'PAUSE' }
  | { type: 'RESUME' }
  | { type: 'CANCEL' };

/** How an order ended. */
export interface CheckoutOutput {
  status: 'confirmed' | 'failed' | 'cancelled' | 'needsAttention';
  placement: SagaOutput | null;
}

/** The one-time code the fake card issuer accepts. */
export const validCode = '123456';

/**
 * The checkout of one order. After CHECKOUT, two parallel regions collect
 * what the order needs: `payment` (choose a method, then pass the issuer's
 * code challenge) and `shipping` (give an address, then pick a quoted rate).
 * PAUSE leaves them from any nested state; RESUME goes back through a deep
 * history state to exactly where each region was. When both regions are
 * done, the order is placed by the placement saga (invoked as a child):
 * stock and payment at once, then the courier, with compensation when a
 * step fails.
 */
export function createCheckoutMachine(deps: CheckoutDeps) {
  return setup({
    types: {
      context: {} as CheckoutContext,
      events: {} as CheckoutEvent,
      input: {} as { entityId: string },
      output: {} as CheckoutOutput,
    },
    actors: { placement: createPlacementSaga(deps) },
    delays: {
      codeSend: timing.codeSendMs,
      challengeTimeout: timing.challengeTimeoutMs,
      quote: timing.quoteMs,
    },
    guards: {
      hasItems: ({ context }) => context.skus.length > 0,
      codeIsValid: ({ event }) =>
        event.type === 'CODE' && event.code === validCode,
      placed: ({ event }) =>
        (event as unknown as { output: SagaOutput }).output.outcome ===
        'completed',
      undone: ({ event }) =>
        (event as unknown as { output: SagaOutput }).output.outcome ===
        'compensated',
    },
  }).createMachine({
    id: 'checkout',
    context: ({ input }) => ({
      orderId: input.entityId,
      skus: [],
      totalCents: 0,
      token: null,
      address: null,
      rate: null,
      wrongCodes: 0,
      pauses: 0,
      placement: null,
      outcome: null,
    }),
    initial: 'cart',
    states: {
      cart: {
        on: {
          ADD_ITEM: {
            actions: assign({
              skus: ({ context, event }) => [...context.skus, event.sku],
              totalCents: ({ context, event }) =>
                context.totalCents + event.priceCents,
            }),
          },
          CHECKOUT: { guard: 'hasItems', target: 'details' },
          CANCEL: 'cancelled',
        },
      },
      details: {
        type: 'parallel',
        on: {
          PAUSE: {
            target: 'paused',
            actions: assign({ pauses: ({ context }) => context.pauses + 1 }),
          },
          CANCEL: 'cancelled',
        },
        onDone: 'placing',
        states: {
          payment: {
            initial: 'method',
            states: {
              method: {
                on: {
                  PAYMENT_METHOD: {
                    target: 'verifying',
                    actions: assign({ token: ({ event }) => event.token }),
                  },
                },
              },
              verifying: {
                initial: 'sendingCode',
                // An abandoned challenge sends the customer back to choose.
                after: { challengeTimeout: 'method' },
                on: {
                  PAYMENT_METHOD: {
                    target: 'verifying',
                    reenter: true,
                    actions: assign({ token: ({ event }) => event.token }),
                  },
                },
                states: {
                  sendingCode: { after: { codeSend: 'awaitingCode' } },
                  awaitingCode: {
                    on: {
                      CODE: [
                        {
                          guard: 'codeIsValid',
                          target: '#checkout.details.payment.ready',
                        },
                        {
                          actions: assign({
                            wrongCodes: ({ context }) => context.wrongCodes + 1,
                          }),
                        },
                      ],
                    },
                  },
                },
              },
              ready: { type: 'final' },
            },
          },
          shipping: {
            initial: 'address',
            states: {
              address: {
                on: {
                  ADDRESS: {
                    target: 'rates',
                    actions: assign({ address: ({ event }) => event.address }),
                  },
                },
              },
              rates: {
                initial: 'quoting',
                on: {
                  ADDRESS: {
                    target: 'rates',
                    reenter: true,
                    actions: assign({ address: ({ event }) => event.address }),
                  },
                },
                states: {
                  quoting: { after: { quote: 'choosing' } },
                  choosing: {
                    on: {
                      RATE: {
                        target: '#checkout.details.shipping.ready',
                        actions: assign({ rate: ({ event }) => event.rate }),
                      },
                    },
                  },
                },
              },
              ready: { type: 'final' },
            },
          },
          resume: { type: 'history', history: 'deep' },
        },
      },
      paused: {
        on: { RESUME: 'details.resume', CANCEL: 'cancelled' },
      },
      placing: {
        invoke: {
          id: 'placement',
          src: 'placement',
          input: ({ context }) => ({
            input: {
              orderId: context.orderId,
              skus: context.skus,
              address: context.address ?? '',
            },
          }),
          onDone: [
            {
              guard: 'placed',
              target: 'confirmed',
              actions: assign({ placement: ({ event }) => event.output }),
            },
            {
              guard: 'undone',
              target: 'failed',
              actions: assign({ placement: ({ event }) => event.output }),
            },
            {
              target: 'needsAttention',
              actions: assign({ placement: ({ event }) => event.output }),
            },
          ],
        },
      },
      confirmed: {
        type: 'final',
        entry: assign({ outcome: 'confirmed' as const }),
      },
      failed: { type: 'final', entry: assign({ outcome: 'failed' as const }) },
      cancelled: {
        type: 'final',
        entry: assign({ outcome: 'cancelled' as const }),
      },
      needsAttention: {
        type: 'final',
        entry: assign({ outcome: 'needsAttention' as const }),
      },
    },
    output: ({ context }) => ({
      status: context.outcome ?? 'needsAttention',
      placement: context.placement,
    }),
  });
}
