/**
 * The saga as a Shardchart entity: passivated and restarted while it waits
 * to retry an undo, it must finish exactly as a plain actor does (durable
 * backoff timers, replayable jitter); and `checkMachine` runs it side by
 * side with plain XState under passivations, restarts and clock jumps,
 * checking the saga's invariants in every state.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createActorSystem } from '../../src/index.js';
import type { Store } from '../../src/persistence/types.js';
import { checkMachine } from '../../src/testing/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import {
  createSteppingClock,
  flush,
  propertyRuns,
  runActor,
  runUntil,
  type SteppingClock,
} from '../retry/test-support.js';
import {
  createSagaMachine,
  type SagaContext,
  type SagaOutput,
} from './saga-machine.js';

const quiet = () => pino({ level: 'silent' });

/** A saga whose undo of `reserve` fails twice before it works; `ship` always fails. */
function bookingSaga(calls: string[]) {
  let releaseFailures = 0;
  return createSagaMachine<string>({
    steps: [
      {
        id: 'reserve',
        run: async ({ input }) => {
          calls.push('reserve');
          return `res-${input}`;
        },
        compensate: async () => {
          calls.push('release');
          if (++releaseFailures <= 2) throw new Error('warehouse busy');
        },
      },
      {
        parallel: [
          {
            id: 'charge',
            run: async () => {
              calls.push('charge');
              return 'ch-1';
            },
            compensate: async () => void calls.push('refund'),
          },
          { id: 'notify', run: async () => void calls.push('notify') },
        ],
      },
      {
        id: 'ship',
        run: async () => {
          calls.push('ship');
          throw new Error('no courier');
        },
      },
    ],
    compensation: {
      attemptsMax: 4,
      backoff: { initialMs: 1_000, factor: 2, maxMs: 10_000, jitter: 'full' },
    },
  });
}

async function boot(
  store: Store,
  clock: SteppingClock,
  machine: ReturnType<typeof bookingSaga>,
) {
  return createActorSystem({
    name: 'saga-test',
    entities: {
      saga: { machine, input: (id: string) => ({ input: id, seed: 9 }) },
    },
    store,
    clock,
    logger: quiet(),
    passivateAfterMs: 0,
  });
}

describe('saga machine - as an entity', () => {
  it('saga - undo retries survive passivation and a restart, and the output equals a plain actor run', async () => {
    const plainClock = createSteppingClock(0);
    const plainCalls: string[] = [];
    const plain = await runActor(
      createActor(bookingSaga(plainCalls), {
        input: { input: 'o-1', seed: 9 },
        clock: plainClock,
      }).start(),
      plainClock,
    );
    expect((plain.output as SagaOutput).outcome).toBe('compensated');

    const clock = createSteppingClock(0);
    const store = memoryStore();
    const calls: string[] = [];
    const machine = bookingSaga(calls);
    const first = await boot(store, clock, machine);
    const ref = first.entity('saga', 'o-1');
    await ref.snapshot();
    await runUntil(
      clock,
      () => calls.filter((c) => c === 'release').length === 1,
    );
    await flush();
    expect((await ref.snapshot()).value).toEqual({
      compensating: 'wait-reserve',
    });
    expect(await ref.passivate()).toBe(true);
    await runUntil(
      clock,
      () => calls.filter((c) => c === 'release').length === 2,
    );
    await flush();
    expect((await ref.snapshot()).value).toEqual({
      compensating: 'wait-reserve',
    });
    await first.stop();
    await store.open();
    const second = await boot(store, clock, machine);
    const again = second.entity('saga', 'o-1');
    await runUntil(
      clock,
      async () => (await again.snapshot()).status === 'done',
    );
    const done = await again.snapshot();
    expect(done.value).toBe('compensated');
    expect(done.output).toEqual(plain.output);
    expect(calls).toEqual(plainCalls);
    expect(clock.now()).toBe(plainClock.now());
    await second.stop();
  });

  it('saga - checkMachine: plain XState and the entity agree under faults, and the saga invariants hold in every state', async () => {
    // Deterministic steps (a function of their input and attempt only), so
    // both sides and any re-run after a restart behave alike.
    const saga = createSagaMachine({
      steps: [
        {
          id: 'a',
          run: async () => 'A',
          compensate: async (_input, { attempt }) =>
            attempt < 2 ? Promise.reject(new Error('not yet')) : 'undone',
        },
        {
          parallel: [
            { id: 'b', run: async () => 'B', compensate: async () => 'undone' },
            { id: 'c', run: async () => 'C' },
          ],
        },
        { id: 'd', run: async () => Promise.reject(new Error('d failed')) },
      ],
      compensation: {
        attemptsMax: 3,
        backoff: { initialMs: 500, factor: 2, maxMs: 800, jitter: 'full' },
      },
    });
    const report = await checkMachine(saga, {
      events: [],
      input: (id) => ({ input: id, seed: 4 }),
      runs: propertyRuns(15),
      invariants: {
        'only completed steps are undone': (s) => {
          const ctx = s.context as SagaContext;
          return Object.entries(ctx.steps).every(
            ([id, st]) =>
              st.compensation === null || ctx.completed.includes(id),
          );
        },
        'the undo queue is a suffix of the completed steps, last first': (
          s,
        ) => {
          const ctx = s.context as SagaContext;
          const order = [...ctx.completed].reverse().filter((id) => id !== 'c');
          return (
            JSON.stringify(
              order.slice(order.length - ctx.compensation.queue.length),
            ) === JSON.stringify(ctx.compensation.queue)
          );
        },
        'the run ends compensated, with b then a undone': (s) =>
          s.status !== 'done' ||
          JSON.stringify((s.output as SagaOutput).undone) ===
            JSON.stringify(['b', 'a']),
      },
    });
    expect(
      report.stepKinds.restart + report.stepKinds.passivate,
    ).toBeGreaterThan(0);
    expect(report.timerEvents).toBeGreaterThan(0);
  });
});
