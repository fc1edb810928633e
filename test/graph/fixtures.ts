/**
 * Machines the graph tests draw. `kitchenSink` has one of everything an
 * export has to show (invoke, entry/exit, eventless and delayed
 * transitions with named delays, combined guards, parallel targets,
 * re-entry, both history kinds, nested parallel states); `hostile` has ids
 * and keys that break naive escaping in every format.
 */
import { and, assign, fromPromise, not, setup, stateIn } from 'xstate';

export const kitchenSink = setup({
  types: {
    context: {} as { tries: number; ok: boolean },
    events: {} as
      | { type: 'START' }
      | { type: 'FETCH' }
      | { type: 'RETRY' }
      | { type: 'TICK' }
      | { type: 'LEAVE' }
      | { type: 'BACK' }
      | { type: 'RESET' }
      | { type: 'ANY' },
  },
  actors: {
    loadUser: fromPromise(async () => ({ name: 'ada' })),
  },
  guards: {
    canRetry: ({ context }) => context.tries < 3,
    isOk: ({ context }) => context.ok,
  },
  actions: {
    logEnter: () => {},
    logExit: () => {},
    notify: () => {},
  },
  delays: {
    shortDelay: 1_500,
  },
}).createMachine({
  id: 'sink',
  initial: 'idle',
  context: { tries: 0, ok: false },
  states: {
    idle: {
      on: {
        START: { target: ['work.fetch.loading', 'work.clock.ticking'] },
        RESET: { reenter: true, target: 'idle', actions: 'notify' },
      },
    },
    work: {
      type: 'parallel',
      entry: 'logEnter',
      exit: ['logExit', 'notify'],
      on: { LEAVE: 'away', TICK: { actions: 'notify' } },
      states: {
        fetch: {
          initial: 'loading',
          states: {
            loading: {
              invoke: {
                id: 'user',
                src: 'loadUser',
                onDone: { target: 'loaded', actions: assign({ ok: true }) },
                onError: [
                  { guard: 'canRetry', target: 'failed', actions: assign({ tries: ({ context }) => context.tries + 1 }) },
                  { target: '#sink.gaveUp' },
                ],
              },
            },
            failed: {
              after: { shortDelay: 'loading' },
              on: { RETRY: { guard: and(['canRetry', not('isOk')]), target: 'loading' } },
            },
            loaded: { type: 'final' },
          },
        },
        clock: {
          initial: 'ticking',
          states: {
            ticking: {
              always: { guard: stateIn('#sink.work.fetch.loaded'), target: 'stopped' },
              after: { 60000: 'stopped' },
            },
            stopped: {
              type: 'parallel',
              states: {
                left: { initial: 'l1', states: { l1: {} } },
                right: { initial: 'r1', states: { r1: {} } },
              },
            },
          },
        },
        memo: { type: 'history', history: 'shallow', target: 'fetch' },
        deep: { type: 'history', history: 'deep' },
      },
    },
    away: {
      on: { BACK: 'work.deep', '*': { actions: 'notify' } },
    },
    gaveUp: { type: 'final' },
  },
});

/** Ids and keys with dots, spaces, quotes, HTML, Mermaid and DOT syntax. */
export const hostile = setup({}).createMachine({
  id: 'host "ile" <m>',
  initial: 'say "hi"',
  states: {
    'say "hi"': {
      on: {
        // A key with a dot cannot be a relative target; its id can.
        'GO; --> x': '#my id #1',
        'A&B <b>': { target: '#state' },
      },
    },
    'a b.c': {
      id: 'my id #1',
      initial: 'end',
      states: {
        end: { on: { 'x:y': '#state' } },
        'class {x}': { id: 'state' },
      },
    },
    'back\\slash \\N': { type: 'final', id: 'bs' },
    "it's \u00e9t\u00e9 \u6f22 %%": { on: { '#35;': '#bs' } },
  },
});
