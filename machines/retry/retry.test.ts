/**
 * The retry machine as a plain XState actor and as an invoked child: its
 * graph (every state reachable, invariants in every state), property tests
 * of its bounds on random configurations and failure scripts, and replay
 * determinism of the jitter.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assign,
  createActor,
  initialTransition,
  setup,
  transition,
  type AnyMachineSnapshot,
  type EventObject,
} from 'xstate';
import { ConfigError } from '../../src/errors.js';
import { backoffDelay } from './backoff.js';
import {
  createRetryMachine,
  type RetryContext,
  type RetryOutput,
} from './retry-machine.js';
import { toMermaid } from '../../src/graph/index.js';
import { getTestPaths } from '../../src/testing/index.js';
import {
  createSteppingClock,
  propertyRuns,
  runActor,
  readmeMermaidBlocks,
} from './test-support.js';

const failure = (retryable: boolean) => ({
  error: { name: 'Error', message: 'boom' },
  retryable,
});

/** Answers an attempt can give in the graph walk; timers fire by themselves. */
const samples = {
  'xstate.done.actor.attempt': [
    {
      type: 'xstate.done.actor.attempt',
      output: { result: 'ok', startedAt: 0 },
    },
  ],
  'xstate.error.actor.attempt': [
    { type: 'xstate.error.actor.attempt', error: failure(true) },
    { type: 'xstate.error.actor.attempt', error: failure(false) },
  ],
};

describe('retry machine - graph', () => {
  const maxMs = 250;
  const deadlineMs = 1_000;
  const machine = createRetryMachine({
    task: async () => 'ok',
    attemptsMax: 3,
    backoff: { initialMs: 100, factor: 2, maxMs, jitter: 'full' },
    deadlineMs,
  });
  const paths = getTestPaths(machine, {
    events: samples,
    input: { input: 'x', seed: 3 },
    kind: 'both',
  });

  it('retry - every final state is reachable', () => {
    const finals = new Set(
      paths
        .filter((p) => p.state.status === 'done')
        .map((p) => p.state.value as string),
    );
    expect([...finals].sort()).toEqual([
      'attemptsExhausted',
      'deadlineExceeded',
      'notRetryable',
      'succeeded',
    ]);
  });

  it('retry - on every path: attempts within attemptsMax, waits within maxMs, the deadline on time', () => {
    expect(paths.length).toBeGreaterThan(8);
    for (const path of paths) {
      let elapsed = 0;
      for (const step of path.steps) {
        const ctx = step.state.context as RetryContext;
        expect(ctx.attemptsMade).toBeLessThanOrEqual(3);
        expect(ctx.attempts.length).toBeLessThanOrEqual(ctx.attemptsMade);
        for (const a of ctx.attempts)
          expect(a.delayMs).toBeLessThanOrEqual(maxMs);
        if (step.delayMs !== undefined) {
          elapsed += step.delayMs;
          if (step.event.type.startsWith('xstate.after.backoff')) {
            expect(step.delayMs).toBeLessThanOrEqual(maxMs);
            expect(step.delayMs).toBe(ctx.attempts.at(-1)!.delayMs);
          }
        }
        expect(elapsed).toBeLessThanOrEqual(deadlineMs);
        if (step.state.value === 'deadlineExceeded')
          expect(elapsed).toBe(deadlineMs);
      }
      const { state } = path;
      if (state.status === 'done') {
        const out = state.output as RetryOutput;
        expect(out.outcome).toBe(state.value);
        expect('result' in out).toBe(out.outcome === 'succeeded');
        // A run that ended on a failure planned no wait after it.
        if (
          out.outcome === 'notRetryable' ||
          out.outcome === 'attemptsExhausted'
        )
          expect(out.attempts.at(-1)?.delayMs ?? 0).toBe(0);
      }
    }
  });

  it('retry - the deadline records the attempt it cut short', () => {
    const cut = paths.find(
      (p) => p.state.value === 'deadlineExceeded' && p.steps.length === 1,
    );
    expect(cut).toBeDefined();
    const out = cut!.state.output as RetryOutput;
    expect(out.attempts).toHaveLength(1);
    expect(out.attempts[0]!.error.code).toBe('DEADLINE_EXCEEDED');
  });
});

type Step = 'fail' | 'fatal' | 'ok';

const scenario = fc.record({
  attemptsMax: fc.integer({ min: 1, max: 7 }),
  initialMs: fc.integer({ min: 0, max: 300 }),
  factorTenths: fc.integer({ min: 10, max: 30 }),
  maxMs: fc.integer({ min: 0, max: 800 }),
  jitter: fc.constantFrom('full' as const, 'none' as const),
  seed: fc.integer({ min: 1, max: 2 ** 31 }),
  script: fc.array(fc.constantFrom<Step>('fail', 'fail', 'fatal', 'ok'), {
    minLength: 7,
    maxLength: 7,
  }),
  deadlineMs: fc.option(fc.integer({ min: 1, max: 3_000 }), { nil: undefined }),
});

describe('retry machine - properties', () => {
  it('retry - never exceeds attemptsMax, never waits longer than maxMs, ends with the outcome the script implies', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (sc) => {
        const clock = createSteppingClock(0);
        const starts: number[] = [];
        const backoff = {
          initialMs: sc.initialMs,
          factor: sc.factorTenths / 10,
          maxMs: sc.maxMs,
          jitter: sc.jitter,
        };
        const machine = createRetryMachine({
          task: async (_input: null, { attempt }) => {
            starts.push(clock.now());
            expect(attempt).toBe(starts.length);
            const step = sc.script[attempt - 1]!;
            if (step === 'ok') return attempt;
            throw Object.assign(new Error(step), { fatal: step === 'fatal' });
          },
          attemptsMax: sc.attemptsMax,
          backoff,
          isRetryable: (err) => (err as { fatal?: boolean }).fatal !== true,
          ...(sc.deadlineMs === undefined ? {} : { deadlineMs: sc.deadlineMs }),
        });
        const actor = createActor(machine, {
          input: { input: null, seed: sc.seed },
          clock,
        }).start();
        const snap = await runActor(actor, clock);
        const out = snap.output as RetryOutput<number>;

        // Bounds.
        expect(out.attemptsMade).toBe(starts.length);
        expect(starts.length).toBeLessThanOrEqual(sc.attemptsMax);
        for (let i = 1; i < starts.length; i++) {
          const gap = starts[i]! - starts[i - 1]!;
          expect(gap).toBeLessThanOrEqual(sc.maxMs);
          expect(gap).toBe(out.attempts[i - 1]!.delayMs);
        }
        for (const a of out.attempts)
          expect(a.delayMs).toBeLessThanOrEqual(sc.maxMs);
        if (sc.jitter === 'none') {
          out.attempts
            .slice(0, -1)
            .forEach((a, i) =>
              expect(a.delayMs).toBe(backoffDelay(backoff, i + 1, 1).delayMs),
            );
        }
        out.attempts.forEach((a, i) => {
          expect(a.attempt).toBe(i + 1);
          if (a.error.code !== 'DEADLINE_EXCEEDED')
            expect(a.startedAt).toBe(starts[i]);
        });

        // Outcome: what the script implies without a deadline...
        const decisive = sc.script
          .slice(0, sc.attemptsMax)
          .findIndex((s) => s !== 'fail');
        const expected =
          decisive === -1
            ? { outcome: 'attemptsExhausted', attempts: sc.attemptsMax }
            : {
                outcome:
                  sc.script[decisive] === 'ok' ? 'succeeded' : 'notRetryable',
                attempts: decisive + 1,
              };
        if (out.outcome === 'deadlineExceeded') {
          // ...unless the deadline came first, exactly on time.
          expect(sc.deadlineMs).toBeDefined();
          expect(clock.now()).toBe(sc.deadlineMs);
          expect(starts.length).toBeLessThanOrEqual(expected.attempts);
        } else {
          expect(out.outcome).toBe(expected.outcome);
          expect(out.attemptsMade).toBe(expected.attempts);
          if (sc.deadlineMs !== undefined)
            expect(clock.now()).toBeLessThanOrEqual(sc.deadlineMs);
          if (out.outcome === 'succeeded')
            expect(out.result).toBe(expected.attempts);
        }
      }),
      { numRuns: propertyRuns(60) },
    );
  });

  it('retry - replaying the processed events with pure transition rebuilds the same context (jitter included)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 ** 31 }),
        fc.integer({ min: 1, max: 6 }),
        async (seed, failures) => {
          const clock = createSteppingClock(0);
          let n = 0;
          const machine = createRetryMachine({
            task: async () => {
              if (++n <= failures) throw new Error(`failure ${n}`);
              return 'done';
            },
            attemptsMax: 8,
            backoff: { initialMs: 50, factor: 3, maxMs: 2_000, jitter: 'full' },
          });
          const events: EventObject[] = [];
          const input = { input: 'job', seed };
          const root: { id?: string } = {};
          const actor = createActor(machine, {
            input,
            clock,
            inspect: (ev) => {
              if (
                ev.type === '@xstate.event' &&
                ev.actorRef.sessionId === root.id &&
                ev.event.type !== 'xstate.init'
              )
                events.push(ev.event);
            },
          });
          root.id = actor.sessionId;
          actor.start();
          const live = await runActor(actor, clock);
          let replayed = initialTransition(
            machine,
            input,
          )[0] as AnyMachineSnapshot;
          for (const e of events)
            replayed = transition(
              machine,
              replayed as never,
              e as never,
            )[0] as AnyMachineSnapshot;
          expect(replayed.context).toEqual(live.context);
          expect(replayed.output).toEqual(live.output);
          expect(
            (live.output as RetryOutput).attempts.map((a) => a.delayMs),
          ).toEqual(
            // The draws depend only on the seed: a second run agrees.
            (
              await (async () => {
                const c2 = createSteppingClock(0);
                let m = 0;
                const again = createRetryMachine({
                  task: async () => {
                    if (++m <= failures) throw new Error('x');
                    return 'done';
                  },
                  attemptsMax: 8,
                  backoff: {
                    initialMs: 50,
                    factor: 3,
                    maxMs: 2_000,
                    jitter: 'full',
                  },
                });
                return (
                  (
                    await runActor(
                      createActor(again, { input, clock: c2 }).start(),
                      c2,
                    )
                  ).output as RetryOutput
                ).attempts;
              })()
            ).map((a) => a.delayMs),
          );
        },
      ),
      { numRuns: propertyRuns(20) },
    );
  });
});

describe('retry machine - as a plain actor and as a child', () => {
  it('retry - passes the abort signal, and the deadline aborts the attempt in flight', async () => {
    const clock = createSteppingClock(0);
    let aborted = false;
    const machine = createRetryMachine({
      task: (_input: unknown, { signal }) =>
        new Promise<never>((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            reject(new Error('aborted'));
          });
        }),
      attemptsMax: 3,
      deadlineMs: 500,
    });
    const snap = await runActor(
      createActor(machine, { input: {}, clock }).start(),
      clock,
    );
    expect(snap.value).toBe('deadlineExceeded');
    expect(aborted).toBe(true);
    expect(clock.now()).toBe(500);
    expect((snap.output as RetryOutput).attempts).toEqual([
      expect.objectContaining({
        attempt: 1,
        delayMs: 0,
        error: expect.objectContaining({ code: 'DEADLINE_EXCEEDED' }),
      }),
    ]);
  });

  it('retry - errors are reduced to plain data with name, message and code', async () => {
    const clock = createSteppingClock(0);
    class PaymentDeclined extends Error {
      override name = 'PaymentDeclined';
      code = 'DECLINED';
    }
    const machine = createRetryMachine({
      task: async () => {
        throw new PaymentDeclined('card declined');
      },
      attemptsMax: 4,
      isRetryable: (err) => !(err instanceof PaymentDeclined),
    });
    const snap = await runActor(
      createActor(machine, { input: {}, clock }).start(),
      clock,
    );
    expect(snap.output).toEqual({
      outcome: 'notRetryable',
      attempts: [
        {
          attempt: 1,
          error: {
            name: 'PaymentDeclined',
            message: 'card declined',
            code: 'DECLINED',
          },
          startedAt: 0,
          delayMs: 0,
        },
      ],
      attemptsMade: 1,
    });
    expect(
      Object.getPrototypeOf((snap.output as RetryOutput).attempts[0]!.error),
    ).toBe(Object.prototype);
  });

  it('retry - runs invoked as a child and hands its output to the parent', async () => {
    const clock = createSteppingClock(0);
    let calls = 0;
    const retry = createRetryMachine({
      task: async (amount: number) => {
        if (++calls < 3) throw new Error('busy');
        return { charged: amount };
      },
      attemptsMax: 5,
      backoff: { initialMs: 100, factor: 2, maxMs: 1_000, jitter: 'none' },
    });
    const parent = setup({
      types: {
        context: {} as { output: RetryOutput<{ charged: number }> | null },
      },
      actors: { retry },
    }).createMachine({
      context: { output: null },
      initial: 'charging',
      states: {
        charging: {
          invoke: {
            id: 'charge',
            src: 'retry',
            input: { input: 42 },
            onDone: {
              target: 'done',
              actions: assign({ output: ({ event }) => event.output }),
            },
          },
        },
        done: { type: 'final' },
      },
    });
    const snap = await runActor(createActor(parent, { clock }).start(), clock);
    expect(snap.context.output).toMatchObject({
      outcome: 'succeeded',
      result: { charged: 42 },
      attemptsMade: 3,
    });
    expect(
      (snap.context.output as RetryOutput).attempts.map((a) => a.delayMs),
    ).toEqual([100, 200]);
    expect(clock.now()).toBe(300);
  });

  it('retry - bad options are refused with CONFIG_INVALID', () => {
    const task = async () => 1;
    expect(() => createRetryMachine({ task, attemptsMax: 0 })).toThrow(
      ConfigError,
    );
    expect(() => createRetryMachine({ task, attemptsMax: 1_001 })).toThrow(
      /attemptsMax must be an integer from 1 to 1000/,
    );
    expect(() =>
      createRetryMachine({ task, attemptsMax: 2, backoff: { factor: 0.5 } }),
    ).toThrow(/backoff.factor/);
    expect(() =>
      createRetryMachine({
        task,
        attemptsMax: 2,
        backoff: { jitter: 'half' as never },
      }),
    ).toThrow(/jitter/);
    expect(() =>
      createRetryMachine({ task, attemptsMax: 2, deadlineMs: 0 }),
    ).toThrow(/deadlineMs/);
    expect(() =>
      createRetryMachine({ task: 'nope' as never, attemptsMax: 2 }),
    ).toThrow(/task must be a function/);
  });
});

describe('retry machine - README', () => {
  it('retry - the README diagram is what toMermaid draws today', () => {
    const machine = createRetryMachine({
      task: async () => null,
      attemptsMax: 5,
      backoff: { initialMs: 200, maxMs: 5_000 },
      deadlineMs: 30_000,
    });
    expect(
      readmeMermaidBlocks(new URL('./README.md', import.meta.url)),
    ).toEqual([toMermaid(machine).trimEnd()]);
  });
});
