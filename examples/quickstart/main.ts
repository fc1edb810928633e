import { createActorSystem } from 'shardchart';
import { memoryStore } from 'shardchart/adapters/memory';
import { assign, setup } from 'xstate';

// A plain XState v5 machine: a cart that takes items until checkout.
const cart = setup({
  types: {
    context: {} as { items: string[] },
    events: {} as { type: 'ADD'; sku: string } | { type: 'CHECKOUT' },
  },
}).createMachine({
  context: { items: [] },
  initial: 'open',
  states: {
    open: {
      on: {
        ADD: {
          actions: assign({
            items: ({ context: c, event: e }) => [...c.items, e.sku],
          }),
        },
        CHECKOUT: 'ordered',
      },
    },
    ordered: { type: 'final' },
  },
});

// Each cart id is a durable entity. For data on disk: lmdbStore({ path }).
const system = await createActorSystem({
  name: 'shop',
  entities: { cart },
  store: memoryStore(),
});
const c1 = system.entity('cart', 'c-1');

const r1 = await c1.send({ type: 'ADD', sku: 'tea' }, { eventId: 'e-1' });
console.log(`seq ${r1.seq}: ${r1.context.items.join(', ')}`);
// The answer got lost and the client retries with the same id: applied once.
const r2 = await c1.send({ type: 'ADD', sku: 'tea' }, { eventId: 'e-1' });
console.log(`retry: duplicate ${r2.duplicate}, seq ${r2.seq}`);
await c1.send({ type: 'ADD', sku: 'mug' }, { eventId: 'e-2' });
const r3 = await c1.send({ type: 'CHECKOUT' }, { eventId: 'e-3' });
console.log(`seq ${r3.seq}: ${r3.status}, ${r3.context.items.join(', ')}`);

await system.stop();
