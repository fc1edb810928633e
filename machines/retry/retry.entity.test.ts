/**
 * The retry machine as a Shardchart entity on the memory store and a
 * simulated clock: passivated and restarted mid-way, it must finish exactly
 * as a plain XState actor does — same waits (durable timers, replayable
 * jitter), same deadline, same output.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createActorSystem } from '../../src/index.js';
import type { Store } from '../../src/persistence/types.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { checkMachine } from '../../src/testing/index.js';
import {
  createRetryMachine,
  type RetryContext,
  type RetryOutput,
} from './retry-machine.js';
import {
  createSteppingClock,
  flush,
  propertyRuns,
  runActor,
  runUntil,
  type SteppingClock,
} from './test-support.js';

const quiet = () => pino({ level: 'silent' });

/** A task that fails `failures` times per input, then returns the input upper-cased. */
function scriptedTask(
  clock: SteppingClock,
  failures: number,
  starts: number[],
) {
  const calls = new Map<string, number>();
  return async (input: string) => {
    starts.push(clock.now());
    const n = (calls.get(input) ?? 0) + 1;
    calls.set(input, n);
    if (n <= failures)
      throw Object.assign(new Error(`attempt ${n} failed`), { code: 'EBUSY' });
    return input.toUpperCase();
  };
}

const backoff = {
  initialMs: 1_000,
  factor: 2,
  maxMs: 10_000,
  jitter: 'full' as const,
};

async function boot(
  store: Store,
  clock: SteppingClock,
  machine: ReturnType<typeof createRetryMachine<string, string>>,
) {
  return createActorSystem({
    name: 'retry-test',
    entities: {
      retry: { machine, input: (id: string) => ({ input: id, seed: 11 }) },
    },
    store,
    clock,
    logger: quiet(),
    passivateAfterMs: 0,
  });
}

describe('retry machine - as an entity', () => {
  it('retry - the backoff wait survives passivation and a restart, and the output equals a plain actor run', async () => {
    // Reference run: a plain actor with the same seed, task script and clock start.
    const plainClock = createSteppingClock(0);
    const plainStarts: number[] = [];
    const plainMachine = createRetryMachine({
      task: scriptedTask(plainClock, 3, plainStarts),
      attemptsMax: 6,
      backoff,
    });
    const plain = await runActor(
      createActor(plainMachine, {
        input: { input: 'order-1', seed: 11 },
        clock: plainClock,
      }).start(),
      plainClock,
    );
    // The test passivates during the first wait, so it needs one.
    expect((plain.output as RetryOutput).attempts[0]!.delayMs).toBeGreaterThan(
      0,
    );

    const clock = createSteppingClock(0);
    const store = memoryStore();
    const starts: number[] = [];
    const machine = createRetryMachine({
      task: scriptedTask(clock, 3, starts),
      attemptsMax: 6,
      backoff,
    });
    const first = await boot(store, clock, machine);
    const ref = first.entity('retry', 'order-1');
    await ref.snapshot();
    await flush();
    expect((await ref.snapshot()).value).toEqual({ running: 'waiting' });

    // Passivated while waiting: the timer alone must wake it.
    expect(await ref.passivate()).toBe(true);
    expect(ref.isLive()).toBe(false);
    await runUntil(clock, () => starts.length === 2);
    expect(ref.isLive()).toBe(true);
    await flush();
    expect((await ref.snapshot()).value).toEqual({ running: 'waiting' });

    // The whole system stops while the entity waits, and a new one takes over.
    await first.stop();
    await store.open();
    const second = await boot(store, clock, machine);
    const again = second.entity('retry', 'order-1');
    await runUntil(clock, () => starts.length === 4);
    const done = await again.waitFor((s) => s.status === 'done');
    expect(done.value).toBe('succeeded');
    expect(done.output).toEqual(plain.output);
    expect(starts).toEqual(plainStarts);
    expect(
      (done.output as RetryOutput).attempts.map((a) => a.startedAt),
    ).toEqual(plainStarts.slice(0, 3));
    await second.stop();
  });

  it('retry - the deadline is durable: it fires at its original time after a restart with an overdue wait', async () => {
    const clock = createSteppingClock(0);
    const store = memoryStore();
    const starts: number[] = [];
    const machine = createRetryMachine({
      task: scriptedTask(clock, Infinity, starts),
      attemptsMax: 1_000,
      backoff: { initialMs: 300, factor: 1, maxMs: 300, jitter: 'none' },
      deadlineMs: 1_100,
    });
    const first = await boot(store, clock, machine);
    await first.entity('retry', 'job').snapshot();
    await runUntil(clock, () => starts.length === 2);
    clock.advance(100); // t = 400, waiting for the attempt due at 600
    await first.stop();
    clock.advance(300); // t = 700: the wait became overdue while the system was down
    await store.open();
    const second = await boot(store, clock, machine);
    const ref = second.entity('retry', 'job');
    await ref.snapshot();
    await runUntil(clock, async () => (await ref.snapshot()).status === 'done');
    const done = await ref.snapshot();
    expect(done.value).toBe('deadlineExceeded');
    // The overdue wait fired at activation (700), the next one 300 ms later,
    // and the deadline cut the following wait at exactly 1 100.
    expect(starts).toEqual([0, 300, 700, 1_000]);
    let lastAt = -1;
    for await (const entry of ref.journal()) lastAt = entry.at;
    expect(lastAt).toBe(1_100);
    expect(
      (done.output as RetryOutput).attempts.map((a) => a.startedAt),
    ).toEqual([0, 300, 700, 1_000]);
    await second.stop();
  });

  it('retry - checkMachine: plain XState and the entity agree under faults, and the bounds hold in every state', async () => {
    // A deterministic task (its answer depends on the attempt number only),
    // so both sides, and a re-run after a restart, behave alike.
    const maxMs = 500;
    const machine = createRetryMachine({
      task: async (_input: string, { attempt }) =>
        attempt < 3
          ? Promise.reject(Object.assign(new Error('busy'), { code: 'EBUSY' }))
          : `done after ${attempt}`,
      attemptsMax: 4,
      backoff: { initialMs: 300, factor: 2, maxMs, jitter: 'full' },
      deadlineMs: 2_000,
    });
    const report = await checkMachine(machine, {
      events: [],
      input: (id) => ({ input: id, seed: 2 }),
      runs: propertyRuns(15),
      invariants: {
        'attempts within attemptsMax': (s) =>
          (s.context as RetryContext).attemptsMade <= 4,
        'waits within maxMs': (s) =>
          (s.context as RetryContext).attempts.every((a) => a.delayMs <= maxMs),
        'ends succeeded on the third attempt': (s) =>
          s.status !== 'done' ||
          ((s.output as RetryOutput).outcome === 'succeeded' &&
            (s.output as RetryOutput).attemptsMade === 3),
      },
    });
    expect(
      report.stepKinds.restart + report.stepKinds.passivate,
    ).toBeGreaterThan(0);
    expect(report.timerEvents).toBeGreaterThan(0);
  });
});
