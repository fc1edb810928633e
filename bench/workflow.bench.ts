/**
 * Workflow steps per second (issue 6's benchmark): a workflow function on
 * the LMDB store against a hand-written XState machine doing the same steps
 * (as a Shardchart entity on the same store, and as a plain XState actor)
 * and against @deepkit/workflow, all in one run.
 *
 * Every subject runs the same instance: `ROUNDS` rounds of four steps, each
 * round
 *
 * 1. an action call that returns at once (`round * 2`),
 * 2. a data write (`progress = { round, result }`),
 * 3. a state change (`waiting`),
 * 4. a wait for a `GO` event, which the driver sends once it sees the
 *    instance waiting for that round;
 *
 * so an instance takes `ROUNDS * 4` steps, from its trigger to done. The
 * workflow function spells the steps as `ctx.actions.work`, `ctx.data.set`,
 * `ctx.setState` and `ctx.events.waitFor`; the machine as an invoked
 * `fromPromise`, `assign` on its `onDone`, the `waiting` state and a `GO`
 * transition; @deepkit/workflow as a listener of the `acting` place that
 * calls the action and writes the instance's data, the `waiting` place,
 * and `apply('approved')` from the driver.
 *
 * `IN_FLIGHT` instances run at once: each driver loop starts an instance,
 * sends it its `GO`s and waits for it to finish, then starts the next, until
 * the timed run ends (steps are counted as the driver sees them done within
 * the run; instances in flight at the end are drained, not counted). The
 * latency of an instance runs from its trigger to its done state.
 *
 * Durability differs and is stated in every row: the Shardchart rows on
 * LMDB fsync every journaled step before it counts (`sync: true`, the
 * default), the plain XState actor and @deepkit/workflow keep everything in
 * memory (@deepkit/workflow has no store of its own: its state is whatever
 * object the caller keeps).
 *
 * @deepkit/workflow is not a devDependency: it pulls in deepkit's runtime
 * type system, and without @deepkit/type-compiler (a TypeScript transformer
 * that tsx does not run) its listeners need the reflection data the
 * compiler would have emitted; this file sets that data by hand
 * (`untypedListener`). Install it beside the repository:
 *
 *     mkdir -p ../bench-peers/deepkit && cd ../bench-peers/deepkit
 *     npm init -y && npm install @deepkit/workflow@1.0.19
 *
 * or point SHARDCHART_BENCH_PEERS at any directory whose node_modules has
 * it (also looked for: .shardchart/bench-deps, where bench/README.md puts
 * Moleculer). Without it, or if it fails, the row is skipped with the
 * reason.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  createActionRegistry,
  createActorSystem,
  defineWorkflow,
  type ActorSystem,
  type EntityRef,
  type EntityState,
} from 'shardchart';
import { lmdbStore } from 'shardchart/adapters/lmdb';
import {
  assign,
  createActor,
  fromPromise,
  setup,
  waitFor,
  type SnapshotFrom,
} from 'xstate';
import type { BenchContext, Section } from './run.js';
import { quantile, Samples } from './throughput.bench.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..');
/** Rounds per instance; each round is four steps. */
const ROUNDS = 5;
const STEPS_PER_ROUND = 4;
const STEPS_PER_INSTANCE = ROUNDS * STEPS_PER_ROUND;
/** Instances running at once in every subject. */
const IN_FLIGHT = 1_000;

/** The action every subject calls: returns at once. */
const work = (round: number): Promise<number> => Promise.resolve(round * 2);

interface Progress {
  round: number;
  result: number;
}

// ------------------------------------------------------------ the subjects

const actions = createActionRegistry().register('work', {
  run: (params: { round: number }) => work(params.round),
});

/** The workflow function: four journaled steps per round. */
export const benchWorkflow = defineWorkflow(
  'benchWorkflow',
  async (ctx) => {
    for (let round = 1; round <= ROUNDS; round++) {
      const result = await ctx.actions.work({ round });
      ctx.data.set('progress', { round, result } satisfies Progress);
      ctx.setState('waiting');
      await ctx.events.waitFor('GO');
    }
    return ctx.data.get('progress');
  },
  { actions },
);

/** The same steps as a hand-written machine. */
export const benchStepMachine = setup({
  types: {
    context: {} as { round: number; result: number },
    events: {} as { type: 'START' } | { type: 'GO' },
  },
  actors: {
    work: fromPromise(({ input }: { input: { round: number } }) =>
      work(input.round),
    ),
  },
  guards: { lastRound: ({ context }) => context.round >= ROUNDS },
}).createMachine({
  id: 'benchSteps',
  context: { round: 0, result: 0 },
  initial: 'created',
  output: ({ context }) => ({ round: context.round, result: context.result }),
  states: {
    created: { on: { START: 'acting' } },
    acting: {
      invoke: {
        src: 'work',
        input: ({ context }) => ({ round: context.round + 1 }),
        onDone: {
          target: 'waiting',
          actions: assign({
            round: ({ context }) => context.round + 1,
            result: ({ event }) => event.output,
          }),
        },
      },
    },
    waiting: {
      on: {
        GO: [{ guard: 'lastRound', target: 'done' }, { target: 'acting' }],
      },
    },
    done: { type: 'final' },
  },
});

/**
 * One instance as the driver sees it: `start` triggers it, `waiting(r)`
 * resolves once it waits in round `r`, `go` sends that round's event,
 * `done` resolves when it finished.
 */
interface Instance {
  start(): Promise<unknown>;
  waiting(round: number): Promise<unknown>;
  go(round: number): Promise<unknown>;
  done(): Promise<unknown>;
}

interface Subject {
  name: string;
  durability: string;
  /** A fresh setup; `instance(n)` makes the n-th instance. */
  open(): Promise<{
    instance(n: number): Instance;
    /** Journal entries of instance `n` (durable subjects only). */
    journalEntries?(n: number): Promise<number>;
    close(): Promise<void>;
  }>;
}

function entityInstance(
  ref: EntityRef,
  roundOf: (s: EntityState) => number | undefined,
  trigger: { type: string },
): Instance {
  return {
    start: () => ref.send(trigger, { eventId: 'start' }),
    waiting: (round) =>
      ref.waitFor((s) => s.value === 'waiting' && roundOf(s) === round),
    go: (round) => ref.send({ type: 'GO' }, { eventId: `go-${round}` }),
    done: () => ref.waitFor((s) => s.status !== 'active'),
  };
}

async function openShardchart(
  entity: 'benchWorkflow' | 'benchSteps',
  roundOf: (s: EntityState) => number | undefined,
  ctx: BenchContext,
): ReturnType<Subject['open']> {
  const dir = await mkdtemp(join(tmpdir(), 'shardchart-bench-workflow-'));
  let system: ActorSystem | undefined;
  try {
    system = await createActorSystem({
      name: 'bench',
      logger: ctx.logger,
      entities:
        entity === 'benchWorkflow'
          ? { benchWorkflow }
          : { benchSteps: benchStepMachine },
      actions,
      store: lmdbStore({ path: join(dir, 'db') }),
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const live = system;
  return {
    instance: (n) =>
      entityInstance(live.entity(entity, `i-${n}`), roundOf, {
        type: 'START',
      }),
    async journalEntries(n) {
      let count = 0;
      for await (const _ of live.entity(entity, `i-${n}`).journal()) count++;
      return count;
    },
    async close() {
      await live.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function workflowRound(s: EntityState): number | undefined {
  const data = (s.context as { data?: { progress?: Progress } }).data;
  return data?.progress?.round;
}

function machineRound(s: EntityState): number | undefined {
  return (s.context as { round?: number }).round;
}

const plainMachine: Subject = {
  name: 'hand-written machine, plain XState actor',
  durability: 'none (memory)',
  async open() {
    return {
      instance(): Instance {
        const actor = createActor(benchStepMachine);
        const at =
          (round: number) => (s: SnapshotFrom<typeof benchStepMachine>) =>
            s.value === 'waiting' && s.context.round === round;
        return {
          start: async () => {
            actor.start();
            actor.send({ type: 'START' });
          },
          waiting: (round) => waitFor(actor, at(round)),
          go: async () => actor.send({ type: 'GO' }),
          done: async () => {
            await waitFor(actor, (s) => s.status !== 'active');
            actor.stop();
          },
        };
      },
      close: async () => undefined,
    };
  },
};

// ------------------------------------------------------ @deepkit/workflow

/** The part of @deepkit/workflow (and its event and stopwatch packages) used here. */
interface DeepkitWorkflowEvent {
  next(state: string, event?: DeepkitWorkflowEvent): void;
}
interface DeepkitWorkflow {
  state: { get(): string };
  apply(state: string, event?: DeepkitWorkflowEvent): Promise<void>;
}
interface DeepkitModules {
  workflow: {
    WorkflowEvent: new () => DeepkitWorkflowEvent;
    createWorkflow(
      name: string,
      places: Record<string, new (...args: never[]) => DeepkitWorkflowEvent>,
      transitions: Record<string, string | string[]>,
    ): {
      create(
        state: string,
        dispatcher: unknown,
        stopwatch: unknown,
      ): DeepkitWorkflow;
    } & Record<`on${string}`, unknown>;
  };
  event: {
    EventDispatcher: new () => { listen(token: unknown, fn: unknown): unknown };
  };
  stopwatch: { Stopwatch: new () => unknown };
}

/** Where @deepkit/workflow may be installed: the repository, SHARDCHART_BENCH_PEERS, or beside the repository. */
function deepkitPlaces(): string[] {
  const places = [repoRoot];
  const env = process.env.SHARDCHART_BENCH_PEERS;
  if (env) places.push(env);
  places.push(
    join(repoRoot, '.shardchart', 'bench-deps'),
    join(repoRoot, '..', 'bench-peers', 'deepkit'),
    join(repoRoot, '..', 'bench-peers'),
  );
  return places;
}

/** @deepkit/workflow, or why not. */
function loadDeepkit(): DeepkitModules | string {
  const places = deepkitPlaces();
  for (const place of places) {
    if (!existsSync(join(place, 'node_modules', '@deepkit', 'workflow')))
      continue;
    const require = createRequire(join(place, 'package.json'));
    try {
      return {
        workflow: require('@deepkit/workflow') as DeepkitModules['workflow'],
        event: require('@deepkit/event') as DeepkitModules['event'],
        stopwatch: require('@deepkit/stopwatch') as DeepkitModules['stopwatch'],
      };
    } catch (err) {
      return `@deepkit/workflow is installed in ${place} but does not load: ${(err as Error).message}`;
    }
  }
  return `@deepkit/workflow is not installed (looked in ${places.join(', ')}); see the header of bench/workflow.bench.ts`;
}

/**
 * Deepkit's dispatcher asks deepkit's runtime type system for the
 * parameters of every listener, which @deepkit/type-compiler emits into
 * the compiled code as `fn.__type`. Without the compiler this sets what it
 * would emit for `(event: any) => any` (the same array deepkit's own
 * compiled packages carry for such arrows); it only tells the dispatcher
 * that the listener takes the event and nothing to inject.
 */
function untypedListener<F extends (event: never) => unknown>(fn: F): F {
  return Object.assign(fn, { __type: ['event', '', 'P"2!"/"'] });
}

function deepkitSubject(dk: DeepkitModules): Subject {
  interface State {
    round: number;
    data: { progress?: Progress };
  }
  /** Deepkit creates a bare event for `next(state)`; carrying the instance keeps listeners per instance. */
  class StepEvent extends dk.workflow.WorkflowEvent {
    constructor(readonly instance: State) {
      super();
    }
  }
  const definition = dk.workflow.createWorkflow(
    'benchSteps',
    {
      created: StepEvent,
      acting: StepEvent,
      waiting: StepEvent,
      approved: StepEvent,
      done: StepEvent,
    },
    {
      created: 'acting',
      acting: 'waiting',
      waiting: 'approved',
      approved: ['acting', 'done'],
    },
  );
  return {
    name: '@deepkit/workflow',
    durability: 'none (memory; no store)',
    async open() {
      const dispatcher = new dk.event.EventDispatcher();
      dispatcher.listen(
        definition.onActing,
        untypedListener(async (event: StepEvent) => {
          const state = event.instance;
          const round = state.round + 1;
          const result = await work(round);
          state.round = round;
          state.data.progress = { round, result };
          event.next('waiting', new StepEvent(state));
        }),
      );
      dispatcher.listen(
        definition.onApproved,
        untypedListener((event: StepEvent) => {
          const state = event.instance;
          event.next(
            state.round >= ROUNDS ? 'done' : 'acting',
            new StepEvent(state),
          );
        }),
      );
      const stopwatch = new dk.stopwatch.Stopwatch();
      return {
        instance(): Instance {
          const state: State = { round: 0, data: {} };
          const flow = definition.create('created', dispatcher, stopwatch);
          let applying: Promise<void> = Promise.resolve();
          return {
            start: () =>
              (applying = flow.apply('acting', new StepEvent(state))),
            waiting: async (round) => {
              await applying;
              if (flow.state.get() !== 'waiting' || state.round !== round)
                throw new Error(
                  `deepkit instance in ${flow.state.get()} round ${state.round}, expected waiting round ${round}`,
                );
            },
            go: () => (applying = flow.apply('approved', new StepEvent(state))),
            done: async () => {
              await applying;
              if (flow.state.get() !== 'done')
                throw new Error(
                  `deepkit instance ended in ${flow.state.get()}`,
                );
            },
          };
        },
        close: async () => undefined,
      };
    },
  };
}

// ------------------------------------------------------------- the driver

interface Run {
  steps: number;
  seconds: number;
  latencies: Samples;
  instances: number;
}

/** Runs one instance through its rounds; `count` is told each step seen done. */
async function runInstance(
  instance: Instance,
  count: (steps: number) => void,
): Promise<void> {
  await instance.start();
  for (let round = 1; round <= ROUNDS; round++) {
    await instance.waiting(round);
    // This round's action, data write and state change, and (past the
    // first round) the previous round's wait, which its action follows.
    count(round === 1 ? STEPS_PER_ROUND - 1 : STEPS_PER_ROUND);
    await instance.go(round);
  }
  await instance.done();
  // The last round's wait.
  count(1);
}

/**
 * First a warm-up wave: `IN_FLIGHT` instances started at once, which also
 * tells how long an instance takes under this load (`wave`). Instances
 * started together stay in lockstep, so a window shorter than an instance
 * would see all or none of them finish; the measured phase therefore
 * starts its `IN_FLIGHT` loops spread over one `wave`, each running
 * instances one after another. After one more `wave` (every loop running,
 * instances at all stages) plus `warmupSeconds`, a window of `seconds`,
 * and at least two waves, opens: steps count while it is open, and the
 * latencies are those of instances started in it. Instances in flight when
 * it closes finish (nothing is torn down mid-step) without counting.
 */
async function drive(
  make: (n: number) => Instance,
  warmupSeconds: number,
  seconds: number,
): Promise<Run & { lastIndex: number }> {
  let next = 0;
  const waveStart = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, () =>
      runInstance(make(next++), () => undefined),
    ),
  );
  const waveMs = performance.now() - waveStart;
  const windowMs = Math.max(seconds * 1_000, 2 * waveMs);
  const latencies = new Samples();
  let steps = 0;
  const phaseStart = performance.now();
  const windowStart = phaseStart + 2 * waveMs + warmupSeconds * 1_000;
  const windowEnd = windowStart + windowMs;
  const inWindow = (t: number): boolean => t >= windowStart && t < windowEnd;
  const count = (n: number): void => {
    if (inWindow(performance.now())) steps += n;
  };
  const loop = async (i: number): Promise<void> => {
    await delay((i / IN_FLIGHT) * waveMs);
    while (performance.now() < windowEnd) {
      // The in-memory subjects finish an instance in microtasks alone; a
      // loop that never yields a macrotask would starve the timers that
      // start the other loops, and the subject would run one at a time.
      await new Promise((resolve) => setImmediate(resolve));
      const t0 = performance.now();
      await runInstance(make(next++), count);
      if (inWindow(t0)) latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, (_, i) => loop(i)));
  return {
    steps,
    seconds: windowMs / 1_000,
    latencies,
    instances: latencies.length,
    lastIndex: next - 1,
  };
}

interface Measured {
  subject: Subject;
  stepsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  instances: number;
  journalEntries?: number;
}

async function measure(subject: Subject, ctx: BenchContext): Promise<Measured> {
  const setup = await subject.open();
  try {
    ctx.gc();
    const run = await drive(setup.instance, ctx.warmupSeconds, ctx.seconds);
    const sorted = run.latencies.sorted();
    const measured: Measured = {
      subject,
      stepsPerSecond: run.steps / run.seconds,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      instances: run.instances,
    };
    if (setup.journalEntries)
      measured.journalEntries = await setup.journalEntries(run.lastIndex);
    return measured;
  } finally {
    await setup.close();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The subjects run in turn, `ctx.rounds` times, each from a fresh setup;
 * ratios are taken within a round and the median over rounds is reported,
 * as in throughput.bench.ts.
 */
export async function workflow(ctx: BenchContext): Promise<Section> {
  const machineOnLmdb: Subject = {
    name: 'hand-written machine, shardchart entity, LMDB',
    durability: 'every journal entry fsynced (sync: true)',
    open: () => openShardchart('benchSteps', machineRound, ctx),
  };
  const workflowSubject: Subject = {
    name: 'shardchart workflow function, LMDB',
    durability: 'every journal entry fsynced (sync: true)',
    open: () => openShardchart('benchWorkflow', workflowRound, ctx),
  };
  const loaded = loadDeepkit();
  let deepkit: string | undefined =
    typeof loaded === 'string' ? loaded : undefined;
  const subjects: Subject[] = [workflowSubject, machineOnLmdb, plainMachine];
  if (typeof loaded !== 'string') subjects.push(deepkitSubject(loaded));
  const runs: Measured[][] = subjects.map(() => []);
  for (let round = 0; round < ctx.rounds; round++) {
    for (const [i, subject] of subjects.entries()) {
      try {
        runs[i]!.push(await measure(subject, ctx));
      } catch (err) {
        // A peer library that installs but fails at run time (another
        // version, another Node) costs its row, not the others'.
        if (i !== 3) throw err;
        deepkit = `@deepkit/workflow failed: ${(err as Error).message}`;
        subjects.pop();
        runs.pop();
      }
      ctx.gc();
    }
  }
  const baseline = runs[1]!;
  const percent = (v: number): string => `${(v * 100).toFixed(1)}%`;
  const rows = runs.map((list) => {
    const stepsPerSecond = median(list.map((r) => r.stepsPerSecond));
    const ratio = median(
      list.map((r, i) => r.stepsPerSecond / baseline[i]!.stepsPerSecond),
    );
    return [
      list[0]!.subject.name,
      list[0]!.subject.durability,
      Math.round(stepsPerSecond).toLocaleString('en-US'),
      `${median(list.map((r) => r.p50Ms)).toFixed(2)} ms`,
      `${median(list.map((r) => r.p99Ms)).toFixed(2)} ms`,
      percent(ratio),
      list[0]!.journalEntries === undefined
        ? '-'
        : String(list[0]!.journalEntries),
      list
        .map((r) => Math.round(r.stepsPerSecond).toLocaleString('en-US'))
        .join(' / '),
    ];
  });
  if (deepkit !== undefined)
    rows.push([
      '@deepkit/workflow',
      'skipped: see below',
      '-',
      '-',
      '-',
      '-',
      '-',
      '-',
    ]);
  return {
    title: `workflow: ${IN_FLIGHT.toLocaleString('en-US')} instances in flight, ${STEPS_PER_INSTANCE} steps each (${ROUNDS} rounds of action, data write, state change, wait for an event), ${ctx.seconds} s per subject, median of ${ctx.rounds} interleaved rounds`,
    header: [
      'subject',
      'durability',
      'steps/s',
      'instance p50',
      'instance p99',
      'vs machine on LMDB',
      'journal entries/instance',
      'steps/s per round',
    ],
    rows,
    notes: [
      "instance latency: trigger to done, including the driver waiting to see each round's wait before sending its GO; the in-memory subjects never wait for I/O, so an instance runs from trigger to done within one turn of the event loop and its latency is its own CPU time, while a durable instance waits for each journal write together with the others in flight",
      'journal entries/instance: what one finished instance left in its journal, each a durable write that the next step of the same instance waits for (entries of different instances share commits)',
      deepkit !== undefined
        ? `@deepkit/workflow skipped: ${deepkit}`
        : '@deepkit/workflow: listeners carry hand-set reflection data instead of running @deepkit/type-compiler (see the file header)',
    ],
    bars: [],
  };
}
