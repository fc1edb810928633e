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

/**
 * An alarm: `ARM` with a delay starts a durable `after` timer; when it fires
 * the entity counts the ring. The timer test kills the owner before the
 * alarm is due and checks it rings exactly once on the new owner.
 */
export const alarmMachine = setup({
  types: {
    context: {} as { delayMs: number; rings: number },
    events: {} as { type: 'ARM'; delayMs: number },
  },
  delays: { alarm: ({ context }) => context.delayMs },
}).createMachine({
  id: 'alarm',
  context: { delayMs: 0, rings: 0 },
  initial: 'idle',
  states: {
    idle: {
      on: {
        ARM: {
          target: 'armed',
          actions: assign({ delayMs: ({ event }) => event.delayMs }),
        },
      },
    },
    armed: {
      after: {
        alarm: {
          target: 'rung',
          actions: assign({ rings: ({ context }) => context.rings + 1 }),
        },
      },
    },
    rung: {},
  },
});
