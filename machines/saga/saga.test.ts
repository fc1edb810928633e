/**
 * The saga machine as a plain XState actor and as an invoked child: graph
 * paths from `getTestPaths` (every final state reachable; in every state,
 * only completed steps are undone, in reverse order of completion) and a
 * property test over random saga shapes, failures and flaky undos.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assign, createActor, setup, type AnyEventObject } from 'xstate';
import { toMermaid } from '../../src/graph/index.js';
import { getTestPaths } from '../../src/testing/index.js';
import {
  createSteppingClock,
  propertyRuns,
  runActor,
  readmeMermaidBlocks,
} from '../retry/test-support.js';
import {
  createSagaMachine,
  type SagaOutput,
  type SagaStep,
} from './saga-machine.js';

const fail = { error: { name: 'Error', message: 'boom' }, retryable: true };

/** Every step id has a run; `a`, `b` and `d` can be undone, `c` cannot. */
const graphSaga = createSagaMachine({
  steps: [
    { id: 'a', run: async () => 'A', compensate: async () => undefined },
    {
      parallel: [
        { id: 'b', run: async () => 'B', compensate: async () => undefined },
        { id: 'c', run: async () => 'C' },
      ],
    },
    { id: 'd', run: async () => 'D', compensate: async () => undefined },
  ],
  compensation: {
    attemptsMax: 2,
    backoff: { initialMs: 100, factor: 2, maxMs: 150, jitter: 'none' },
  },
});

const samples: Record<string, AnyEventObject[]> = {};
for (const id of ['a', 'b', 'c', 'd']) {
  samples[`xstate.done.actor.run-${id}`] = [
    {
      type: `xstate.done.actor.run-${id}`,
      output: { result: id.toUpperCase() },
    },
  ];
  samples[`xstate.error.actor.run-${id}`] = [
    { type: `xstate.error.actor.run-${id}`, error: fail },
  ];
  samples[`xstate.done.actor.compensate-${id}`] = [
    { type: `xstate.done.actor.compensate-${id}`, output: { result: null } },
  ];
  samples[`xstate.error.actor.compensate-${id}`] = [
    { type: `xstate.error.actor.compensate-${id}`, error: fail },
  ];
}

describe('saga machine - graph', () => {
  const paths = getTestPaths(graphSaga, {
    events: samples,
    kind: 'both',
    depthMax: 14,
    pathsMax: 3_000,
  });

  it('saga - every final state is reachable', () => {
    const finals = new Set(
      paths
        .filter((p) => p.state.status === 'done')
        .map((p) => p.state.value as string),
    );
    expect([...finals].sort()).toEqual([
      'compensated',
      'compensationFailed',
      'completed',
    ]);
    expect(paths.length).toBeGreaterThan(50);
  });

  it('saga - on every path, only completed steps are undone, in reverse order of completion, each at most attemptsMax times', () => {
    for (const path of paths) {
      const undoCalls: string[] = [];
      for (const step of path.steps) {
        const ctx = step.state.context;
        const m = /^xstate\.(done|error)\.actor\.compensate-(.+)$/.exec(
          step.event.type,
        );
        if (m) undoCalls.push(m[2]!);
        // A step's undo is set up only once it completed.
        for (const [id, s] of Object.entries(ctx.steps))
          if (s.compensation) expect(ctx.completed).toContain(id);
        for (const s of Object.values(ctx.steps))
          expect(s.compensation?.attempts.length ?? 0).toBeLessThanOrEqual(2);
        if (step.delayMs !== undefined)
          expect(step.delayMs).toBeLessThanOrEqual(150);
      }
      const ctx = path.state.context;
      const expectedOrder = [...ctx.completed]
        .reverse()
        .filter((id) => id !== 'c');
      // Undo attempts come in queue order: each step's (possibly repeated) attempts before the next step's.
      const distinct = undoCalls.filter((id, i) => undoCalls[i - 1] !== id);
      expect(distinct).toEqual(expectedOrder.slice(0, distinct.length));
      if (path.state.status !== 'done') continue;
      const out = path.state.output;
      expect(out.outcome).toBe(path.state.value);
      if (out.outcome === 'completed') {
        expect(out.steps.every((s) => s.status === 'succeeded')).toBe(true);
        expect(undoCalls).toEqual([]);
      } else {
        expect(out.failedStep).toBeDefined();
        expect(distinct).toEqual(expectedOrder);
        expect([...out.undone, ...out.notUndone].sort()).toEqual(
          [...expectedOrder].sort(),
        );
        expect(out.notUndone.length > 0).toBe(
          out.outcome === 'compensationFailed',
        );
      }
    }
  });
});

interface StepPlan {
  delayMs: number;
  ok: boolean;
  undoable: boolean;
  /** Undo failures before an undo succeeds. */
  undoFailures: number;
}

const stepPlan: fc.Arbitrary<StepPlan> = fc.record({
  delayMs: fc.integer({ min: 0, max: 40 }),
  ok: fc.nat(9).map((n) => n < 8),
  undoable: fc.boolean(),
  undoFailures: fc.integer({ min: 0, max: 3 }),
});
// Stages: a single step, or a parallel group of two or three.
const shape = fc.array(
  fc.oneof(
    stepPlan.map((p) => [p]),
    fc.array(stepPlan, { minLength: 2, maxLength: 3 }),
  ),
  { minLength: 1, maxLength: 4 },
);

describe('saga machine - properties', () => {
  it('saga - compensates exactly the completed steps, in reverse order, and ends as the undos imply', async () => {
    await fc.assert(
      fc.asyncProperty(
        shape,
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom('continue' as const, 'stop' as const),
        async (stages, attemptsMax, onGiveUp) => {
          const clock = createSteppingClock(0);
          const sleep = (ms: number) =>
            new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
          const log: string[] = [];
          const finished: string[] = [];
          const settled = stages.map(() => 0);
          const failedInTime: string[] = [];
          const undoTries = new Map<string, number>();
          let n = 0;
          const steps = stages.map((stage, si) => {
            const built = stage.map((plan): SagaStep => {
              const id = `s${++n}`;
              return {
                id,
                run: async () => {
                  // Stage order: nothing of this stage starts before every step of the earlier stages settled.
                  for (let k = 0; k < si; k++)
                    expect(settled[k]).toBe(stages[k]!.length);
                  log.push(`start:${id}`);
                  await sleep(plan.delayMs);
                  settled[si]!++;
                  if (!plan.ok) {
                    failedInTime.push(id);
                    throw new Error(`${id} failed`);
                  }
                  finished.push(id);
                  return `result-${id}`;
                },
                ...(plan.undoable
                  ? {
                      compensate: async ({ result }) => {
                        expect(result).toBe(`result-${id}`);
                        const tries = (undoTries.get(id) ?? 0) + 1;
                        undoTries.set(id, tries);
                        log.push(`undo:${id}`);
                        if (tries <= plan.undoFailures)
                          throw new Error(`undo ${id} failed`);
                      },
                    }
                  : {}),
              };
            });
            return built.length === 1 ? built[0]! : { parallel: built };
          });
          const plans = stages.flat();
          const ids = plans.map((_, i) => `s${i + 1}`);
          const saga = createSagaMachine({
            steps,
            compensation: {
              attemptsMax,
              onGiveUp,
              backoff: { initialMs: 10, factor: 2, maxMs: 25, jitter: 'full' },
            },
          });
          const snap = await runActor(
            createActor(saga, {
              input: { input: null, seed: 5 },
              clock,
            }).start(),
            clock,
          );
          const out = snap.output as SagaOutput;

          const failedStage = stages.findIndex((st) => st.some((p) => !p.ok));
          // Steps after the failing stage never ran.
          const ranIds = ids.filter((id) => log.includes(`start:${id}`));
          const stageOf = (id: string) => {
            let i = Number(id.slice(1)) - 1;
            return stages.findIndex((st) => (i -= st.length) < 0);
          };
          for (const id of ranIds)
            expect(failedStage === -1 || stageOf(id) <= failedStage).toBe(true);

          if (failedStage === -1) {
            expect(out.outcome).toBe('completed');
            expect(log.filter((l) => l.startsWith('undo:'))).toEqual([]);
            return;
          }
          // The undo queue: completed undoable steps, last completed first.
          const queue = [...finished]
            .reverse()
            .filter((id) => plans[Number(id.slice(1)) - 1]!.undoable);
          const undoOrder = log
            .filter((l) => l.startsWith('undo:'))
            .map((l) => l.slice(5));
          const distinct = undoOrder.filter((id, i) => undoOrder[i - 1] !== id);
          const gaveUp = queue.filter(
            (id) => plans[Number(id.slice(1)) - 1]!.undoFailures >= attemptsMax,
          );
          const expectedDistinct =
            onGiveUp === 'stop' && gaveUp.length > 0
              ? queue.slice(0, queue.indexOf(gaveUp[0]!) + 1)
              : queue;
          expect(distinct).toEqual(expectedDistinct);
          for (const id of distinct)
            expect(undoTries.get(id)).toBe(
              Math.min(
                attemptsMax,
                plans[Number(id.slice(1)) - 1]!.undoFailures + 1,
              ),
            );
          expect(out.outcome).toBe(
            gaveUp.length > 0 ? 'compensationFailed' : 'compensated',
          );
          expect(out.undone).toEqual(
            expectedDistinct.filter((id) => !gaveUp.includes(id)),
          );
          expect([...out.undone, ...out.notUndone].sort()).toEqual(
            [...queue].sort(),
          );
          // The first step to fail, in time.
          expect(out.failedStep).toBe(failedInTime[0]);
          expect(stageOf(failedInTime[0]!)).toBe(failedStage);
          for (const r of out.steps) {
            expect(r.status).toBe(
              finished.includes(r.id)
                ? 'succeeded'
                : ranIds.includes(r.id)
                  ? 'failed'
                  : 'notRun',
            );
            for (const a of r.compensation?.attempts ?? [])
              expect(a.delayMs).toBeLessThanOrEqual(25);
          }
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });
});

describe('saga machine - as a plain actor and as a child', () => {
  it('saga - steps see earlier results; undos see their own result; output lists every step', async () => {
    const clock = createSteppingClock(0);
    const seen: unknown[] = [];
    const saga = createSagaMachine<{ order: string }>({
      steps: [
        {
          id: 'reserve',
          run: async ({ input }) => `res-${input.order}`,
          compensate: async (c) =>
            void seen.push(['release', c.result, c.results]),
        },
        {
          id: 'charge',
          run: async ({ results }) => {
            seen.push(['charge sees', results]);
            return 'ch-1';
          },
          compensate: async (c) => void seen.push(['refund', c.result]),
        },
        {
          id: 'ship',
          run: async () => {
            throw Object.assign(new Error('no courier'), {
              code: 'NO_COURIER',
            });
          },
        },
      ],
    });
    const snap = await runActor(
      createActor(saga, { input: { input: { order: 'o-1' } }, clock }).start(),
      clock,
    );
    expect(seen).toEqual([
      ['charge sees', { reserve: 'res-o-1' }],
      ['refund', 'ch-1'],
      ['release', 'res-o-1', { reserve: 'res-o-1', charge: 'ch-1' }],
    ]);
    expect(snap.output).toEqual({
      outcome: 'compensated',
      failedStep: 'ship',
      undone: ['charge', 'reserve'],
      notUndone: [],
      steps: [
        {
          id: 'reserve',
          status: 'succeeded',
          result: 'res-o-1',
          compensation: { status: 'compensated', attempts: [] },
        },
        {
          id: 'charge',
          status: 'succeeded',
          result: 'ch-1',
          compensation: { status: 'compensated', attempts: [] },
        },
        {
          id: 'ship',
          status: 'failed',
          error: { name: 'Error', message: 'no courier', code: 'NO_COURIER' },
        },
      ],
    });
  });

  it('saga - runs invoked as a child; a giving-up undo ends in compensationFailed', async () => {
    const clock = createSteppingClock(0);
    const saga = createSagaMachine({
      steps: [
        {
          id: 'a',
          run: async () => 1,
          compensate: async () => {
            throw new Error('cannot undo a');
          },
        },
        { id: 'b', run: async () => Promise.reject(new Error('b failed')) },
      ],
      compensation: {
        attemptsMax: 3,
        backoff: { initialMs: 100, factor: 3, maxMs: 250, jitter: 'none' },
      },
    });
    const parent = setup({
      types: { context: {} as { output: SagaOutput | null } },
      actors: { saga },
    }).createMachine({
      context: { output: null },
      initial: 'running',
      states: {
        running: {
          invoke: {
            id: 'booking',
            src: 'saga',
            input: { input: null },
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
      outcome: 'compensationFailed',
      undone: [],
      notUndone: ['a'],
      failedStep: 'b',
    });
    expect(snap.context.output!.steps[0]!.compensation).toEqual({
      status: 'failed',
      attempts: [
        {
          attempt: 1,
          error: { name: 'Error', message: 'cannot undo a' },
          delayMs: 100,
        },
        {
          attempt: 2,
          error: { name: 'Error', message: 'cannot undo a' },
          delayMs: 250,
        },
        {
          attempt: 3,
          error: { name: 'Error', message: 'cannot undo a' },
          delayMs: 0,
        },
      ],
    });
    expect(clock.now()).toBe(350);
  });

  it('saga - bad definitions are refused with CONFIG_INVALID', () => {
    const run = async () => 1;
    expect(() => createSagaMachine({ steps: [] })).toThrow(/non-empty/);
    expect(() =>
      createSagaMachine({
        steps: [
          { id: 'a', run },
          { id: 'a', run },
        ],
      }),
    ).toThrow(/used twice/);
    expect(() => createSagaMachine({ steps: [{ id: 'a.b', run }] })).toThrow(
      /step id/,
    );
    expect(() => createSagaMachine({ steps: [{ parallel: [] }] })).toThrow(
      /parallel group/,
    );
    expect(() =>
      createSagaMachine({ steps: [{ id: 'a', run: 1 as never }] }),
    ).toThrow(/run must be a function/);
    expect(() =>
      createSagaMachine({
        steps: [{ id: 'a', run }],
        compensation: { onGiveUp: 'later' as never },
      }),
    ).toThrow(/onGiveUp/);
  });
});

describe('saga machine - README', () => {
  it('saga - the README diagram is what toMermaid draws today for its example', () => {
    const t = async () => null;
    const machine = createSagaMachine({
      id: 'booking',
      steps: [
        { id: 'flight', run: t, compensate: t },
        {
          parallel: [
            { id: 'hotel', run: t, compensate: t },
            { id: 'car', run: t, compensate: t },
          ],
        },
        { id: 'charge', run: t },
      ],
    });
    expect(
      readmeMermaidBlocks(new URL('./README.md', import.meta.url)),
    ).toEqual([toMermaid(machine).trimEnd()]);
  });
});
