/**
 * Machines for the shardchart/testing tests: one correct machine with every
 * feature that makes a differential check hard (parallel regions, deep
 * history, timers in two regions, an invoked promise, a final state), and
 * small machines with a planted bug each.
 */
import { assign, fromPromise, setup } from 'xstate';

/**
 * A correct job runner. Parallel regions `job` and `link`; `job.running`
 * has nested states with a deep history that `RESUME` returns to; timers in
 * both regions (a pause expires after an hour, an offline link retries
 * after 5 s, a fast run slows down after 250 ms); a `CHECK` invokes a
 * promise whose result depends only on its input; `FINISH` ends in a final
 * state with output.
 */
export const jobMachine = setup({
  types: {
    context: {} as { done: number; checks: number; retries: number; log: string[] },
    events: {} as
      | { type: 'START' }
      | { type: 'STEP' }
      | { type: 'FAST' }
      | { type: 'PAUSE' }
      | { type: 'RESUME' }
      | { type: 'CHECK' }
      | { type: 'DROP' }
      | { type: 'NOTE'; text: string }
      | { type: 'FINISH' },
  },
  actors: {
    verify: fromPromise(async ({ input }: { input: { done: number } }) => {
      await Promise.resolve();
      return input.done * 10;
    }),
  },
}).createMachine({
  id: 'job',
  context: { done: 0, checks: 0, retries: 0, log: [] },
  type: 'parallel',
  states: {
    job: {
      initial: 'idle',
      states: {
        idle: { on: { START: 'running' } },
        running: {
          initial: 'a',
          states: {
            a: { on: { STEP: 'b' } },
            b: {
              initial: 'slow',
              states: {
                slow: { on: { FAST: 'fast' } },
                fast: { after: { 250: 'slow' } },
              },
              on: { STEP: { target: 'a', actions: assign({ done: ({ context }) => context.done + 1 }) } },
            },
            checking: {
              invoke: {
                id: 'verify',
                src: 'verify',
                input: ({ context }) => ({ done: context.done }),
                onDone: { target: 'a', actions: assign({ checks: ({ context, event }) => context.checks + (event.output) }) },
              },
            },
            hist: { type: 'history', history: 'deep' },
          },
          on: { PAUSE: 'paused', CHECK: '.checking' },
        },
        paused: {
          after: { 3_600_000: { target: 'idle', actions: assign({ log: ({ context }) => [...context.log, 'pause expired'] }) } },
          on: { RESUME: 'running.hist' },
        },
        finished: { type: 'final' },
      },
      on: { FINISH: { guard: ({ context }) => context.done >= 2, target: '.finished' } },
    },
    link: {
      initial: 'online',
      states: {
        online: { on: { DROP: 'offline' } },
        offline: {
          after: { 5_000: { target: 'online', actions: assign({ retries: ({ context }) => context.retries + 1 }) } },
        },
      },
    },
  },
  on: {
    NOTE: { actions: assign({ log: ({ context, event }) => [...context.log, event.text].slice(-5) }) },
  },
});

/**
 * An order whose refund forgets to block shipping: PAY, REFUND, SHIP ships
 * a refunded order. No shorter sequence does.
 */
export const orderMachine = setup({
  types: {
    context: {} as { paid: boolean; refunded: boolean; notes: number },
    events: {} as { type: 'PAY' } | { type: 'REFUND' } | { type: 'SHIP' } | { type: 'CANCEL' } | { type: 'NOTE' },
  },
}).createMachine({
  id: 'order',
  context: { paid: false, refunded: false, notes: 0 },
  initial: 'open',
  states: {
    open: { on: { PAY: { target: 'paid', actions: assign({ paid: true }) }, CANCEL: 'cancelled' } },
    paid: {
      on: {
        SHIP: 'shipped',
        // The bug: a refunded order goes back to a state that can ship.
        REFUND: { target: 'paid', actions: assign({ refunded: true }) },
      },
    },
    shipped: { type: 'final' },
    cancelled: { type: 'final' },
  },
  on: { NOTE: { actions: assign({ notes: ({ context }) => context.notes + 1 }) } },
});

/**
 * Keeps data outside its context: `SET` stores the amount in a module-level
 * variable (a side-effect action), `COMMIT` adds it to the total. Live, both
 * sides run the action and agree; rebuilt from the journal, `SET`'s action
 * does not run again (replay applies no side effects), so a replayed
 * `COMMIT` adds whatever the variable holds at replay time. The variable is
 * cleared by the root's entry action when an actor starts, as it would be
 * in a fresh process (a restored actor does not run entry actions again).
 */
let lastAmount = 0;
export const ledgerMachine = setup({
  types: {
    context: {} as { total: number },
    events: {} as { type: 'SET'; amount: number } | { type: 'COMMIT' } | { type: 'PING' },
  },
  actions: {
    forget: () => {
      lastAmount = 0;
    },
    remember: (_, params: { amount: number }) => {
      lastAmount = params.amount;
    },
  },
}).createMachine({
  id: 'ledger',
  context: { total: 0 },
  entry: 'forget',
  on: {
    SET: { actions: { type: 'remember', params: ({ event }) => ({ amount: event.amount }) } },
    COMMIT: { actions: assign({ total: ({ context }) => context.total + lastAmount }) },
    PING: {},
  },
});

/** Draws a token with Math.random in an assign: no two runs agree. */
export const tokenMachine = setup({
  types: { context: {} as { token: number }, events: {} as { type: 'ROLL' } },
}).createMachine({
  id: 'token',
  context: { token: 0 },
  on: { ROLL: { actions: assign({ token: () => Math.random() }) } },
});
