import { pino } from 'pino';
import { Writable } from 'node:stream';
import { assign, fromPromise, setup, sendTo, raise } from 'xstate';

/** A pino logger that records every line, for tests that check logs. */
export function memoryLogger(level: pino.Level = 'debug'): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

export const quietLogger = (): pino.Logger => pino({ level: 'silent' });

/** A counter that records the order of applied values. */
export const counterMachine = setup({
  types: {},
}).createMachine({
  id: 'counter',
  context: { n: 0, seen: [] },
  initial: 'counting',
  states: {
    counting: {
      on: {
        ADD: { actions: assign({ n: ({ context, event }) => context.n + event.value, seen: ({ context, event }) => [...context.seen, event.value] }) },
        RESET: { actions: assign({ n: 0 }) },
        PING: { actions: () => undefined },
        FINISH: 'done',
      },
    },
    done: { type: 'final' },
  },
  output: ({ context }) => ({ total: context.n }),
});

/** A machine whose parts throw on demand, for supervision tests. */
export function faultyMachine(behaviour: { rejectTimes?: number; calls?: { n: number } } = {}) {
  const calls = behaviour.calls ?? { n: 0 };
  return setup({
    types: {},
    actors: {
      flaky: fromPromise(async () => {
        calls.n++;
        if (calls.n <= (behaviour.rejectTimes ?? Infinity)) throw new Error(`flaky failure ${calls.n}`);
        return 'ok';
      }),
    },
    guards: {
      explodes: () => {
        throw new Error('guard exploded');
      },
    },
  }).createMachine({
    id: 'faulty',
    context: { n: 0 },
    initial: 'idle',
    states: {
      idle: {
        on: {
          INC: { actions: assign({ n: ({ context }) => context.n + 1 }) },
          THROW: { actions: () => { throw new Error('action exploded'); } },
          GUARD: { guard: 'explodes', target: 'idle' },
          FN: { actions: assign({ bad: () => () => 1 }) },
          CASCADE: { actions: [assign({ n: ({ context }) => context.n + 100 }), raise({ type: 'THROW' })] },
          SELF_THEN_THROW: { actions: [assign({ n: ({ context }) => context.n + 1 }), sendTo(({ self }) => self, { type: 'THROW' })] },
          CALL: 'calling',
        },
      },
      // No onError: a rejection puts the whole actor in error.
      calling: { invoke: { id: 'flaky', src: 'flaky', onDone: 'idle' } },
    },
  });
}
