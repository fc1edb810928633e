/**
 * The DAG as a Shardchart entity: passivated and restarted while a step
 * waits to retry, it must finish exactly as a plain actor does (durable
 * retry timers, replayable jitter); and `checkMachine` runs it side by
 * side with plain XState under passivations, restarts and clock jumps,
 * checking the concurrency and dependency invariants in every state.
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
  createDagMachine,
  type DagContext,
  type DagOutput,
} from './dag-machine.js';

const quiet = () => pino({ level: 'silent' });

/** fetch → (resize, flaky upload retried with backoff) → publish. */
function pipeline(calls: string[]) {
  let uploads = 0;
  return createDagMachine<string>({
    concurrencyMax: 2,
    steps: [
      {
        id: 'fetch',
        run: async ({ input }) => (calls.push('fetch'), `img:${input}`),
      },
      {
        id: 'resize',
        dependsOn: ['fetch'],
        run: async ({ results }) => (
          calls.push('resize'),
          `small:${results.fetch as string}`
        ),
      },
      {
        id: 'upload',
        dependsOn: ['fetch'],
        onError: 'retry',
        retry: {
          attemptsMax: 4,
          backoff: {
            initialMs: 1_000,
            factor: 2,
            maxMs: 8_000,
            jitter: 'full',
          },
        },
        run: async () => {
          calls.push('upload');
          if (++uploads <= 2)
            throw Object.assign(new Error('503'), { code: 'E503' });
          return 'cdn://1';
        },
      },
      {
        id: 'publish',
        dependsOn: ['resize', 'upload'],
        run: async ({ results }) => (calls.push('publish'), results),
      },
    ],
  });
}

async function boot(
  store: Store,
  clock: SteppingClock,
  machine: ReturnType<typeof pipeline>,
) {
  return createActorSystem({
    name: 'dag-test',
    entities: {
      dag: { machine, input: (id: string) => ({ input: id, seed: 21 }) },
    },
    store,
    clock,
    logger: quiet(),
    passivateAfterMs: 0,
  });
}

describe('dag machine - as an entity', () => {
  it('dag - retry waits survive passivation and a restart, and the output equals a plain actor run', async () => {
    const plainClock = createSteppingClock(0);
    const plainCalls: string[] = [];
    const plain = await runActor(
      createActor(pipeline(plainCalls), {
        input: { input: 'p-1', seed: 21 },
        clock: plainClock,
      }).start(),
      plainClock,
    );
    expect((plain.output as DagOutput).outcome).toBe('completed');

    const clock = createSteppingClock(0);
    const store = memoryStore();
    const calls: string[] = [];
    const machine = pipeline(calls);
    const first = await boot(store, clock, machine);
    const ref = first.entity('dag', 'p-1');
    await ref.snapshot();
    await runUntil(
      clock,
      () => calls.filter((c) => c === 'upload').length === 1,
    );
    await flush();
    expect((await ref.snapshot()).value).toMatchObject({
      running: { upload: 'retrying' },
    });
    expect(await ref.passivate()).toBe(true);
    await runUntil(
      clock,
      () => calls.filter((c) => c === 'upload').length === 2,
    );
    await flush();
    expect((await ref.snapshot()).value).toMatchObject({
      running: { upload: 'retrying' },
    });
    await first.stop();
    await store.open();
    const second = await boot(store, clock, machine);
    const again = second.entity('dag', 'p-1');
    await runUntil(
      clock,
      async () => (await again.snapshot()).status === 'done',
    );
    const done = await again.snapshot();
    expect(done.output).toEqual(plain.output);
    expect(calls).toEqual(plainCalls);
    expect(clock.now()).toBe(plainClock.now());
    await second.stop();
  });

  it('dag - checkMachine: plain XState and the entity agree under faults; concurrency and dependencies hold in every state', async () => {
    const deps: Record<string, string[]> = {
      a: [],
      b: ['a'],
      c: ['a'],
      d: ['b'],
      e: ['c'],
      f: [],
    };
    const concurrencyMax = 2;
    // Deterministic steps: b fails on its first two attempts, c always fails (and the DAG goes on).
    const dag = createDagMachine({
      concurrencyMax,
      steps: [
        { id: 'a', run: async () => 'A' },
        {
          id: 'b',
          dependsOn: deps.b,
          onError: 'retry',
          retry: {
            attemptsMax: 3,
            backoff: { initialMs: 200, maxMs: 300, jitter: 'full' },
          },
          run: async (_input, { attempt }) =>
            attempt < 3 ? Promise.reject(new Error('not yet')) : 'B',
        },
        {
          id: 'c',
          dependsOn: deps.c,
          onError: 'continue',
          run: async () => Promise.reject(new Error('c is broken')),
        },
        { id: 'd', dependsOn: deps.d, run: async () => 'D' },
        { id: 'e', dependsOn: deps.e, run: async () => 'E' },
        { id: 'f', run: async () => 'F' },
      ],
    });
    const report = await checkMachine(dag, {
      events: [],
      input: (id) => ({ input: id, seed: 8 }),
      runs: propertyRuns(15),
      invariants: {
        'at most concurrencyMax steps hold a slot': (s) =>
          Object.values((s.context as DagContext).steps).filter(
            (st) => st.status === 'running' || st.status === 'retrying',
          ).length <= concurrencyMax,
        'a step holds a slot only after its dependencies succeeded': (s) => {
          const ctx = s.context as DagContext;
          return Object.entries(ctx.steps).every(
            ([id, st]) =>
              st.status === 'pending' ||
              st.status === 'skipped' ||
              deps[id]!.every((d) => ctx.steps[d]!.status === 'succeeded'),
          );
        },
        'the run ends with c failed and e skipped, the rest done': (s) =>
          s.status !== 'done' ||
          JSON.stringify((s.output as DagOutput).steps.map((r) => r.status)) ===
            JSON.stringify([
              'succeeded',
              'succeeded',
              'failed',
              'succeeded',
              'skipped',
              'succeeded',
            ]),
      },
    });
    expect(
      report.stepKinds.restart + report.stepKinds.passivate,
    ).toBeGreaterThan(0);
    expect(report.timerEvents).toBeGreaterThan(0);
  });
});
