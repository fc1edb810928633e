import { assign, setup } from 'xstate';

/** The demo order's context: plain data, so it persists as is. */
export interface OrderContext {
  orderId: string;
  items: number;
  /** Order total in cents. */
  totalCents: number;
  paymentAttempts: number;
  paid: boolean;
  pauses: number;
  /** Delayed transitions taken; each one went through the durable timer path. */
  timersFired: number;
  cancelReason: string | null;
}

export type OrderEvent =
  | { type: 'ADD_ITEM'; sku: string; priceCents: number }
  | { type: 'CHECKOUT' }
  | { type: 'PAYMENT_FAILED' }
  | { type: 'CAPTURE' }
  | { type: 'PICKED' }
  | { type: 'SHIP' }
  | { type: 'PAUSE' }
  | { type: 'RESUME' }
  | { type: 'CANCEL'; reason?: string };

/** Payment is retried this many times before the order is cancelled. */
const paymentAttemptsMax = 2;

/**
 * The order workflow the demo drives, also the default machine of
 * `shardchart inspect order <id>`. It is small but touches what makes
 * persistence hard: parallel regions (payment and shipping run side by
 * side), a deep history state (PAUSE then RESUME returns to the exact nested
 * state of both regions), guards, `assign`, and short `after` transitions
 * that fire while the demo runs, so timers are journaled, snapshotted and
 * re-armed like any other event.
 *
 * ```
 * cart ─CHECKOUT[hasItems]─▶ processing ═╦═ payment:  authorizing ─after 400─▶ authorized ─CAPTURE─▶ captured
 *   │                            │  ▲    ║            └─PAYMENT_FAILED[canRetry]─▶ retrying ─after 300─▶ authorizing
 *   CANCEL                   PAUSE  RESUME (deep history)
 *   ▼                            ▼  │    ╚═ shipping: picking ─PICKED─▶ packing ─after 600─▶ ready ─SHIP[paid]─▶ shipped
 * cancelled ◀─CANCEL─────────── paused            both regions final ─▶ completed
 * ```
 *
 * @example
 * ```ts
 * import { createActorSystem } from 'shardchart';
 * import { orderMachine } from './order-machine.js';
 * const system = await createActorSystem({ name: 'shop', entities: { order: orderMachine } });
 * const order = system.entity('order', 'o-1');
 * await order.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
 * await order.send({ type: 'CHECKOUT' }); // value: { processing: { payment: 'authorizing', ... } }
 * ```
 */
export const orderMachine = setup({
  types: {
    context: {} as OrderContext,
    events: {} as OrderEvent,
    // What the system passes a new entity by default.
    input: {} as { entityId: string; entityType: string },
  },
  guards: {
    hasItems: ({ context }) => context.items > 0,
    canRetryPayment: ({ context }) =>
      context.paymentAttempts < paymentAttemptsMax,
    isPaid: ({ context }) => context.paid,
  },
  actions: {
    countTimer: assign({
      timersFired: ({ context }) => context.timersFired + 1,
    }),
  },
}).createMachine({
  id: 'order',
  initial: 'cart',
  context: ({ input }) => ({
    orderId: input.entityId,
    items: 0,
    totalCents: 0,
    paymentAttempts: 0,
    paid: false,
    pauses: 0,
    timersFired: 0,
    cancelReason: null,
  }),
  states: {
    cart: {
      on: {
        ADD_ITEM: {
          actions: assign({
            items: ({ context }) => context.items + 1,
            totalCents: ({ context, event }) =>
              context.totalCents + event.priceCents,
          }),
        },
        CHECKOUT: { guard: 'hasItems', target: 'processing' },
        CANCEL: {
          target: 'cancelled',
          actions: assign({
            cancelReason: ({ event }) => event.reason ?? 'customer',
          }),
        },
      },
    },
    processing: {
      type: 'parallel',
      onDone: 'completed',
      on: {
        PAUSE: {
          target: 'paused',
          actions: assign({ pauses: ({ context }) => context.pauses + 1 }),
        },
      },
      states: {
        payment: {
          initial: 'authorizing',
          states: {
            authorizing: {
              after: { 400: { target: 'authorized', actions: 'countTimer' } },
              on: {
                PAYMENT_FAILED: [
                  {
                    guard: 'canRetryPayment',
                    target: 'retrying',
                    actions: assign({
                      paymentAttempts: ({ context }) =>
                        context.paymentAttempts + 1,
                    }),
                  },
                  {
                    target: '#order.cancelled',
                    actions: assign({ cancelReason: 'payment declined' }),
                  },
                ],
              },
            },
            retrying: {
              after: { 300: { target: 'authorizing', actions: 'countTimer' } },
            },
            authorized: {
              on: {
                CAPTURE: {
                  target: 'captured',
                  actions: assign({ paid: true }),
                },
              },
            },
            captured: { type: 'final' },
          },
        },
        shipping: {
          initial: 'picking',
          states: {
            picking: { on: { PICKED: 'packing' } },
            packing: {
              after: { 600: { target: 'ready', actions: 'countTimer' } },
            },
            ready: { on: { SHIP: { guard: 'isPaid', target: 'shipped' } } },
            shipped: { type: 'final' },
          },
        },
        resume: { type: 'history', history: 'deep' },
      },
    },
    paused: {
      on: {
        RESUME: 'processing.resume',
        CANCEL: {
          target: 'cancelled',
          actions: assign({
            cancelReason: ({ event }) => event.reason ?? 'customer',
          }),
        },
      },
    },
    completed: { type: 'final' },
    cancelled: { type: 'final' },
  },
});

/** Top-level states of {@link orderMachine}, in workflow order (for summaries). */
export const orderStates = [
  'cart',
  'processing',
  'paused',
  'completed',
  'cancelled',
] as const;
