import { assign, setup } from 'xstate';

/** Prices in cents; a real cart would get them from the catalogue. */
export const prices: Readonly<Record<string, number>> = { tea: 400, mug: 900 };

export type CartEvent =
  | { type: 'ADD'; sku: string }
  | { type: 'REMOVE'; sku: string }
  | { type: 'CHECKOUT' }
  | { type: 'PAY' }
  | { type: 'BACK' };

export interface CartContext {
  items: Record<string, number>;
  total: number;
  /** Checkouts that timed out. */
  expired: number;
}

/**
 * A cart: items go in and out while shopping; checkout holds the cart for
 * 15 minutes, then goes back to shopping unless it is paid.
 * `forgetTotalOnRemove` plants a bug for the example to catch.
 */
export function createCart(options: { forgetTotalOnRemove?: boolean } = {}) {
  return setup({
    types: { context: {} as CartContext, events: {} as CartEvent, output: {} as { total: number } },
    guards: {
      hasItems: ({ context }) => context.total > 0,
      inCart: ({ context, event }) => event.type === 'REMOVE' && (context.items[event.sku] ?? 0) > 0,
    },
  }).createMachine({
    id: 'cart',
    context: { items: {}, total: 0, expired: 0 },
    initial: 'shopping',
    states: {
      shopping: {
        on: {
          ADD: {
            actions: assign(({ context, event }) => ({
              items: { ...context.items, [event.sku]: (context.items[event.sku] ?? 0) + 1 },
              total: context.total + (prices[event.sku] ?? 0),
            })),
          },
          REMOVE: {
            guard: 'inCart',
            actions: assign(({ context, event }) => ({
              items: { ...context.items, [event.sku]: context.items[event.sku]! - 1 },
              total: options.forgetTotalOnRemove ? context.total : context.total - (prices[event.sku] ?? 0),
            })),
          },
          CHECKOUT: { guard: 'hasItems', target: 'checkout' },
        },
      },
      checkout: {
        after: { 900_000: { target: 'shopping', actions: assign({ expired: ({ context }) => context.expired + 1 }) } },
        on: { PAY: 'paid', BACK: 'shopping' },
      },
      paid: { type: 'final' },
    },
    output: ({ context }) => ({ total: context.total }),
  });
}

/** The total always equals the sum of the items' prices. */
export function totalMatchesItems(state: { context: unknown }): boolean {
  const { items, total } = state.context as CartContext;
  const sum = Object.entries(items).reduce((acc, [sku, n]) => acc + n * (prices[sku] ?? 0), 0);
  return total === sum;
}
