import { assign, setup } from 'xstate';

/**
 * The entity of the cluster tests: it records every ADD it applied, so a
 * test can tell an event lost (missing) from one applied twice (repeated).
 */
export const tallyMachine = setup({
  types: {
    context: {} as { seen: number[] },
    events: {} as { type: 'ADD'; n: number } | { type: 'PING' },
  },
}).createMachine({
  id: 'tally',
  context: { seen: [] },
  on: {
    ADD: {
      actions: assign({
        seen: ({ context, event }) => [...context.seen, event.n],
      }),
    },
    PING: {},
  },
});
