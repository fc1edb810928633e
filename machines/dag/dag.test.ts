/**
 * The DAG machine as a plain XState actor and as an invoked child: graph
 * paths from `getTestPaths` (concurrency and dependency invariants in every
 * state, every final state reachable) and a property test over random
 * graphs, concurrency limits, durations, failures and error strategies,
 * measured on the tasks themselves.
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
  createDagMachine,
  type DagErrorStrategy,
  type DagOutput,
  type DagStep,
} from './dag-machine.js';

const fail = { error: { name: 'Error', message: 'boom' }, retryable: true };
const run = async () => 'ok';
const undo = async () => undefined;

describe('dag machine - graph', () => {
  // a; b and c after a; d after b and c. b retries once, c may fail and let
  // the rest continue, d's failure unwinds the DAG.
  const concurrencyMax = 1;
  const deps: Record<string, string[]> = {
    a: [],
    b: ['a'],
    c: ['a'],
    d: ['b', 'c'],
  };
  const machine = createDagMachine({
    concurrencyMax,
    steps: [
      { id: 'a', run, compensate: undo },
      {
        id: 'b',
        dependsOn: ['a'],
        run,
        onError: 'retry',
        retry: {
          attemptsMax: 2,
          backoff: { initialMs: 100, maxMs: 100, jitter: 'none' },
        },
        compensate: undo,
      },
      { id: 'c', dependsOn: ['a'], run, onError: 'continue' },
      { id: 'd', dependsOn: ['b', 'c'], run, onError: 'compensate' },
    ],
    compensation: { attemptsMax: 1 },
  });
  const samples: Record<string, AnyEventObject[]> = {};
  for (const id of Object.keys(deps)) {
    samples[`xstate.done.actor.run-${id}`] = [
      { type: `xstate.done.actor.run-${id}`, output: { result: id } },
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
  const paths = getTestPaths(machine, {
    events: samples,
    kind: 'both',
    depthMax: 16,
    pathsMax: 2_000,
  });

  it('dag - every final state is reachable', () => {
    const finals = new Set(
      paths
        .filter((p) => p.state.status === 'done')
        .map((p) => p.state.value as string),
    );
    expect([...finals].sort()).toEqual([
      'compensated',
      'compensationFailed',
      'completed',
      'completedWithFailures',
      'failed',
    ]);
  });

  it('dag - in every state: regions follow the scheduler, at most concurrencyMax run, none before its dependencies succeeded', () => {
    expect(paths.length).toBeGreaterThan(20);
    for (const path of paths) {
      for (const { state } of path.steps) {
        const ctx = state.context;
        if (typeof state.value !== 'object' || !('running' in state.value))
          continue;
        const regions = (
          state.value as unknown as { running: Record<string, string> }
        ).running;
        let active = 0;
        for (const [id, region] of Object.entries(regions)) {
          const status = ctx.steps[id]!.status;
          // The region and the scheduler's record agree.
          expect(region).toBe(status === 'running' ? 'running' : status);
          if (region === 'running' || region === 'retrying') {
            active++;
            for (const d of deps[id]!)
              expect(ctx.steps[d]!.status).toBe('succeeded');
          }
        }
        expect(active).toBeLessThanOrEqual(concurrencyMax);
        expect(ctx.steps.b!.attempts).toBeLessThanOrEqual(2);
      }
      if (path.state.status === 'done') {
        const out = path.state.output;
        expect(out.outcome).toBe(path.state.value);
        if (out.outcome === 'compensated')
          expect(out.undone).toEqual(
            [...path.state.context.completed]
              .reverse()
              .filter((id) => id !== 'c'),
          );
      }
    }
  });
});

const graph = fc.integer({ min: 1, max: 7 }).chain((n) =>
  fc.tuple(
    ...Array.from({ length: n }, (_, i) =>
      fc.record({
        deps: fc.subarray(
          Array.from({ length: i }, (_, k) => k),
          { maxLength: Math.min(i, 3) },
        ),
        delayMs: fc.integer({ min: 0, max: 30 }),
        failures: fc.oneof(
          { weight: 5, arbitrary: fc.constant(0) },
          { weight: 2, arbitrary: fc.integer({ min: 1, max: 2 }) },
          { weight: 1, arbitrary: fc.constant(Infinity) },
        ),
        onError: fc.constantFrom<DagErrorStrategy>(
          'stop',
          'continue',
          'retry',
          'compensate',
        ),
      }),
    ),
  ),
);

describe('dag machine - properties', () => {
  it('dag - never more than concurrencyMax at once, never before the dependencies finished, failures handled per strategy', async () => {
    await fc.assert(
      fc.asyncProperty(
        graph,
        fc.integer({ min: 1, max: 3 }),
        async (plans, concurrencyMax) => {
          const clock = createSteppingClock(0);
          const sleep = (ms: number) =>
            new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
          const log: string[] = [];
          const succeeded = new Set<string>();
          const tries = new Map<string, number>();
          let executing = 0;
          let executingMax = 0;
          const retryAttemptsMax = 2;
          const steps = plans.map((p, i): DagStep => {
            const id = `s${i}`;
            return {
              id,
              dependsOn: p.deps.map((d) => `s${d}`),
              onError: p.onError,
              retry: {
                attemptsMax: retryAttemptsMax,
                backoff: {
                  initialMs: 10,
                  factor: 2,
                  maxMs: 15,
                  jitter: 'full',
                },
                then: 'continue',
              },
              compensate: async () => void log.push(`undo:${id}`),
              run: async ({ results }) => {
                for (const d of p.deps)
                  expect(succeeded.has(`s${d}`)).toBe(true);
                expect(Object.keys(results).sort()).toEqual(
                  p.deps.map((d) => `s${d}`).sort(),
                );
                log.push(`start:${id}`);
                executingMax = Math.max(executingMax, ++executing);
                const n = (tries.get(id) ?? 0) + 1;
                tries.set(id, n);
                await sleep(p.delayMs);
                executing--;
                if (n <= p.failures) {
                  log.push(`fail:${id}`);
                  throw new Error(`${id} failed`);
                }
                succeeded.add(id);
                log.push(`done:${id}`);
                return id;
              },
            };
          });
          const root: { id?: string } = {};
          const actor = createActor(
            createDagMachine({ steps, concurrencyMax }),
            {
              input: { input: null, seed: 1 },
              clock,
              inspect: (ev) => {
                if (
                  ev.type === '@xstate.event' &&
                  ev.actorRef.sessionId === root.id &&
                  ev.event.type.startsWith('xstate.error.actor.run-')
                ) {
                  log.push(
                    `processed-fail:${ev.event.type.slice('xstate.error.actor.run-'.length)}`,
                  );
                }
              },
            },
          );
          root.id = actor.sessionId;
          actor.start();
          const snap = await runActor(actor, clock);
          const out = snap.output as DagOutput;

          expect(executingMax).toBeLessThanOrEqual(concurrencyMax);
          // A final failure: a stop/compensate step's failure, or a retry step's last one.
          const isFinal = (id: string, attempt: number) => {
            const p = plans[Number(id.slice(1))]!;
            return p.onError !== 'retry' || attempt >= retryAttemptsMax;
          };
          const halting = (id: string) =>
            plans[Number(id.slice(1))]!.onError === 'stop' ||
            plans[Number(id.slice(1))]!.onError === 'compensate';
          let halted = false;
          const seenFails = new Map<string, number>();
          for (const entry of log) {
            const [kind, id] = entry.split(':') as [string, string];
            if (kind === 'processed-fail') {
              const attempt = (seenFails.get(id) ?? 0) + 1;
              seenFails.set(id, attempt);
              if (isFinal(id, attempt) && halting(id)) halted = true;
            }
            // After a halting failure is processed, no attempt starts, not even a retry.
            if (kind === 'start') expect(halted).toBe(false);
          }
          for (const [id, n] of tries)
            expect(n).toBeLessThanOrEqual(
              plans[Number(id.slice(1))]!.onError === 'retry'
                ? retryAttemptsMax
                : 1,
            );

          // Statuses, from what the tasks did.
          const byId = new Map(out.steps.map((s) => [s.id, s]));
          plans.forEach((p, i) => {
            const r = byId.get(`s${i}`)!;
            expect(r.attempts).toBe(tries.get(`s${i}`) ?? 0);
            expect(r.status).toBe(
              succeeded.has(`s${i}`)
                ? 'succeeded'
                : tries.has(`s${i}`)
                  ? 'failed'
                  : 'skipped',
            );
            if (r.status !== 'skipped')
              for (const d of p.deps)
                expect(byId.get(`s${d}`)!.status).toBe('succeeded');
            for (const e of r.errors ?? [])
              expect(e.delayMs).toBeLessThanOrEqual(15);
          });
          const failed = out.steps
            .filter((s) => s.status === 'failed')
            .map((s) => s.id);
          const anyCompensate = failed.some(
            (id) => plans[Number(id.slice(1))]!.onError === 'compensate',
          );
          const anyStop = failed.some(
            (id) => plans[Number(id.slice(1))]!.onError === 'stop',
          );
          if (!halted) {
            // Only 'continue' failures: a step runs iff all its dependencies succeeded.
            plans.forEach((p, i) => {
              const ready = p.deps.every((d) => succeeded.has(`s${d}`));
              expect(tries.has(`s${i}`)).toBe(ready);
            });
            expect(out.outcome).toBe(
              failed.length > 0 ? 'completedWithFailures' : 'completed',
            );
          } else if (anyCompensate) {
            expect(out.outcome).toBe('compensated');
            const undone = log
              .filter((l) => l.startsWith('undo:'))
              .map((l) => l.slice(5));
            const completedOrder = log
              .filter((l) => l.startsWith('done:'))
              .map((l) => l.slice(5));
            expect(undone).toEqual([...completedOrder].reverse());
            expect(out.undone).toEqual(undone);
          } else {
            expect(anyStop).toBe(true);
            expect(out.outcome).toBe('failed');
            expect(log.some((l) => l.startsWith('undo:'))).toBe(false);
          }
        },
      ),
      { numRuns: propertyRuns(80) },
    );
  });
});

describe('dag machine - as a plain actor and as a child', () => {
  it('dag - runs invoked as a child; steps get their dependencies results; ready steps run side by side', async () => {
    const clock = createSteppingClock(0);
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
    const dag = createDagMachine<number>({
      concurrencyMax: 2,
      steps: [
        { id: 'base', run: async ({ input }) => input },
        {
          id: 'double',
          dependsOn: ['base'],
          run: async ({ results }) => (
            await sleep(100),
            (results.base as number) * 2
          ),
        },
        {
          id: 'square',
          dependsOn: ['base'],
          run: async ({ results }) => (
            await sleep(100),
            (results.base as number) ** 2
          ),
        },
        {
          id: 'sum',
          dependsOn: ['double', 'square'],
          run: async ({ results }) =>
            (results.double as number) + (results.square as number),
        },
      ],
    });
    const parent = setup({
      types: { context: {} as { output: DagOutput | null } },
      actors: { dag },
    }).createMachine({
      context: { output: null },
      initial: 'running',
      states: {
        running: {
          invoke: {
            id: 'calc',
            src: 'dag',
            input: { input: 7 },
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
      outcome: 'completed',
      started: ['base', 'double', 'square', 'sum'],
    });
    expect(
      (snap.context.output as DagOutput).steps.find((s) => s.id === 'sum')!
        .result,
    ).toBe(63);
    expect(clock.now()).toBe(100); // double and square ran at the same time
  });
});

describe('dag machine - halting', () => {
  it('dag - a halt ends retry waits: no attempt starts after a stop failure', async () => {
    const clock = createSteppingClock(0);
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
    const starts: string[] = [];
    const dag = createDagMachine({
      concurrencyMax: 2,
      steps: [
        {
          id: 'flaky',
          onError: 'retry',
          retry: {
            attemptsMax: 3,
            backoff: { initialMs: 100, jitter: 'none' },
          },
          run: async () => {
            starts.push(`flaky@${clock.now()}`);
            throw new Error('flaky');
          },
        },
        {
          id: 'fatal',
          run: async () => {
            starts.push(`fatal@${clock.now()}`);
            await sleep(10);
            throw new Error('fatal');
          },
        },
      ],
    });
    const snap = await runActor(
      createActor(dag, { input: {}, clock }).start(),
      clock,
    );
    expect(starts).toEqual(['flaky@0', 'fatal@0']);
    expect(snap.output).toMatchObject({
      outcome: 'failed',
      failed: ['flaky', 'fatal'],
      steps: [
        { id: 'flaky', status: 'failed', attempts: 1 },
        { id: 'fatal', status: 'failed', attempts: 1 },
      ],
    });
    expect(clock.now()).toBe(10);
  });
});

describe('dag machine - README', () => {
  it('dag - the README diagrams are the example dependencies and what toMermaid draws today', () => {
    const t = async () => null;
    const steps: DagStep[] = [
      { id: 'fetch', run: t, onError: 'retry' },
      { id: 'thumbnail', dependsOn: ['fetch'], run: t },
      { id: 'scan', dependsOn: ['fetch'], run: t, onError: 'continue' },
      { id: 'publish', dependsOn: ['thumbnail', 'scan'], run: t },
    ];
    const flowchart = [
      'flowchart LR',
      ...steps.flatMap((s) =>
        (s.dependsOn ?? []).map((d) => `  ${d} --> ${s.id}`),
      ),
    ];
    const machine = createDagMachine({
      id: 'pipeline',
      steps,
      concurrencyMax: 2,
    });
    expect(
      readmeMermaidBlocks(new URL('./README.md', import.meta.url)),
    ).toEqual([flowchart.join('\n'), toMermaid(machine).trimEnd()]);
  });
});
