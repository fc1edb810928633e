/**
 * getTestPaths: paths from xstate/graph with sample events and a timer
 * model. The strongest check replays every path on a real XState actor
 * with a simulated clock (events sent, timer steps as clock jumps) and
 * compares each step's state with the actor's.
 */
import { describe, expect, it } from 'vitest';
import { assign, createActor, fromPromise, setup, type AnyStateMachine } from 'xstate';
import { getSimplePaths } from 'xstate/graph';
import { createSimulatedClock } from '../../src/system/clock.js';
import { ConfigError, DefinitionError } from '../../src/errors.js';
import { getTestPaths, type TestPath } from '../../src/testing/index.js';
import { jobMachine } from './fixtures.js';

/** Two regions with timers of different delays, one targetless, and a tie. */
const lights = setup({ types: { context: {} as { blinks: number; ticks: number } } }).createMachine({
  id: 'lights',
  context: { blinks: 0, ticks: 0 },
  type: 'parallel',
  states: {
    lamp: {
      initial: 'off',
      states: {
        off: { on: { ON: 'on' } },
        on: {
          // Fires once per entry: a targetless after does not re-arm.
          after: { 500: { actions: assign({ blinks: ({ context }) => context.blinks + 1 }) }, 2_000: 'off' },
          on: { OFF: 'off' },
        },
      },
    },
    clock: {
      initial: 'a',
      states: {
        a: { after: { 2_000: { target: 'b', actions: assign({ ticks: ({ context }) => context.ticks + 1 }) } } },
        b: { on: { RESET: 'a' } },
      },
    },
  },
});

/** Replays a path on a real actor and checks every step's state. */
function replay(machine: AnyStateMachine, path: TestPath): void {
  const clock = createSimulatedClock(0);
  const actor = createActor(machine, { clock });
  actor.start();
  for (const [i, step] of path.steps.entries()) {
    if (step.delayMs !== undefined) clock.advance(step.delayMs);
    else actor.send(step.event);
    const s = actor.getSnapshot();
    const where = `${path.description}, step ${i + 1}`;
    expect(s.value, where).toEqual(step.state.value);
    expect(s.context, where).toEqual(step.state.context);
  }
  actor.stop();
}

describe('getTestPaths - parallel regions and timers', () => {
  it('getTestPaths - every shortest and simple path of a parallel machine with timers replays on a real actor', () => {
    const paths = getTestPaths(lights, { kind: 'both', depthMax: 6, pathsMax: 100 });
    expect(paths.filter((p) => p.kind === 'shortest').length).toBeGreaterThan(5);
    expect(paths.filter((p) => p.kind === 'simple').length).toBeGreaterThan(0);
    for (const p of paths) replay(lights, p);
  });

  it('getTestPaths - the earliest timer fires first; a targetless after fires once per entry', () => {
    const paths = getTestPaths(lights, { kind: 'both', depthMax: 6 });
    for (const p of paths) {
      // From the initial state only the 2 s clock timer is pending.
      if (p.steps[0]?.delayMs !== undefined) expect(p.steps[0].delayMs).toBe(2_000);
      let blinksPerEntry = 0;
      for (const step of p.steps) {
        if (step.event.type === 'ON') blinksPerEntry = 0;
        if (step.timerEvents?.some((e) => e.type.includes('.500.'))) blinksPerEntry++;
        expect(blinksPerEntry, p.description).toBeLessThanOrEqual(1);
      }
    }
    const blink = paths.find((p) => p.description === 'reaches {"lamp":"on","clock":"a"} via ON → after 500 ms');
    expect(blink?.state.context).toEqual({ blinks: 1, ticks: 0 });
  });

  it('getTestPaths - timers due at the same instant fire in one step, in scheduling order', () => {
    // ON at once, then 500 ms (blink), then 1500 ms: the lamp's 2 s timer
    // and the clock's 2 s timer fall due together. The clock's was
    // scheduled first (at start), so it fires first.
    const paths = getTestPaths(lights, { kind: 'shortest', depthMax: 6 });
    const tie = paths
      .flatMap((p) => p.steps)
      .find((s) => (s.timerEvents?.length ?? 0) > 1);
    expect(tie?.timerEvents?.map((e) => e.type)).toEqual(['xstate.after.2000.lights.clock.a', 'xstate.after.2000.lights.lamp.on']);
    expect(tie?.event).toEqual(tie?.timerEvents?.[0]);
  });

  it('getTestPaths - the job machine (parallel, deep history, invoke) reaches every state value', () => {
    const paths = getTestPaths(jobMachine, {
      events: { NOTE: [] },
      serializeState: (s) => JSON.stringify(s.value),
      toState: (s) => s.matches({ job: 'paused' }) || s.matches({ job: { running: 'checking' } }),
    });
    expect(paths.length).toBeGreaterThan(0);
    for (const p of paths) {
      expect(p.state.matches({ job: 'paused' }) || p.state.matches({ job: { running: 'checking' } })).toBe(true);
      expect(p.steps.some((s) => s.event.type === 'NOTE')).toBe(false);
    }
    const check = paths.find((p) => p.state.matches({ job: { running: 'checking' } }));
    expect(check?.steps.map((s) => s.event.type)).toEqual(['START', 'CHECK']);
  });
});

describe('getTestPaths - events and limits', () => {
  const cart = setup({
    types: { context: {} as { items: string[] } },
    actors: { pay: fromPromise(async () => 'ok') },
  }).createMachine({
    id: 'cart',
    context: { items: [] },
    initial: 'open',
    states: {
      open: {
        on: {
          ADD: { actions: assign({ items: ({ context, event }) => [...context.items, event.sku as string] }) },
          PAY: 'paying',
        },
      },
      paying: { invoke: { id: 'pay', src: 'pay', onDone: 'paid', onError: 'declined' } },
      declined: { on: { PAY: 'paying' } },
      paid: { type: 'final' },
    },
  });

  it('getTestPaths - sample events are used per type; invoke results are offered only while the child runs', () => {
    const paths = getTestPaths(cart, { events: { ADD: [{ type: 'ADD', sku: 'tea' }] }, depthMax: 3 });
    const types = new Set(paths.flatMap((p) => p.steps.map((s) => s.event.type)));
    expect(types).toEqual(new Set(['ADD', 'PAY', 'xstate.done.actor.pay', 'xstate.error.actor.pay']));
    for (const p of paths) {
      p.steps.forEach((s, i) => {
        if (s.event.type === 'ADD') expect(s.event).toEqual({ type: 'ADD', sku: 'tea' });
        if (s.event.type.startsWith('xstate.')) expect(p.steps[i - 1]?.event.type).toBe('PAY');
      });
    }
    const paid = paths.find((p) => p.state.status === 'done');
    expect(paid?.description).toBe('reaches "paid" (done) via PAY → xstate.done.actor.pay');
  });

  it('getTestPaths - a step that makes the machine throw ends no path; a sample fixes it', () => {
    const fetcher = setup({ actors: { load: fromPromise(async () => ({ rows: [1, 2] })) } }).createMachine({
      context: { count: 0 },
      initial: 'loading',
      states: {
        loading: {
          invoke: {
            id: 'load',
            src: 'load',
            onDone: { target: 'ready', actions: assign({ count: ({ event }) => (event.output).rows.length }) },
          },
        },
        ready: {},
      },
    });
    expect(getTestPaths(fetcher).map((p) => p.state.value)).toEqual(['loading']);
    const withSample = getTestPaths(fetcher, { events: { 'xstate.done.actor.load': [{ type: 'xstate.done.actor.load', output: { rows: [1, 2] } }] } });
    expect(withSample.map((p) => [p.state.value, p.state.context.count])).toEqual([
      ['loading', 0],
      ['ready', 2],
    ]);
  });

  it('getTestPaths - an empty sample list leaves a type out; a function gives samples per state', () => {
    const noAdd = getTestPaths(cart, { events: { ADD: [] } });
    expect(noAdd.flatMap((p) => p.steps).some((s) => s.event.type === 'ADD')).toBe(false);
    const perState = getTestPaths(cart, {
      events: (s) => [{ type: 'ADD', sku: `n${(s.context).items.length}` }],
      depthMax: 3,
    });
    const longest = perState.reduce((a, b) => (b.steps.length > a.steps.length ? b : a));
    expect(longest.state.context.items).toEqual(['n0', 'n1', 'n2']);
  });

  it('getTestPaths - depthMax, statesMax and pathsMax bound an infinite state space', () => {
    const counter = setup({}).createMachine({
      context: { n: 0 },
      on: { INC: { actions: assign({ n: ({ context }) => context.n + 1 }) }, DEC: { actions: assign({ n: ({ context }) => context.n - 1 }) } },
    });
    const shallow = getTestPaths(counter, { depthMax: 3, kind: 'both' });
    expect(Math.max(...shallow.map((p) => p.steps.length))).toBe(3);
    // n from -3 to 3: seven states.
    expect(shallow.filter((p) => p.kind === 'shortest')).toHaveLength(7);
    expect(getTestPaths(counter, { statesMax: 4 }).length).toBeLessThanOrEqual(1 + 4 * 2);
    expect(getTestPaths(counter, { kind: 'simple', pathsMax: 10 })).toHaveLength(10);
  });

  it('getTestPaths - simple paths equal those of xstate/graph getSimplePaths', () => {
    const toggles = setup({}).createMachine({
      type: 'parallel',
      states: {
        a: { initial: 'off', states: { off: { on: { A: 'on' } }, on: { on: { A: 'off', B: 'off' } } } },
        b: { initial: 'off', states: { off: { on: { B: 'on' } }, on: { on: { B: 'off' } } } },
      },
    });
    const key = (events: readonly { type: string }[]) => events.map((e) => e.type).join(',');
    const ours = getTestPaths(toggles, { kind: 'simple' }).map((p) => key(p.steps.map((s) => s.event)));
    const theirs = getSimplePaths(toggles).map((p) => key(p.steps.slice(1).map((s) => s.event)));
    expect(new Set(ours)).toEqual(new Set(theirs));
    expect(ours).toHaveLength(theirs.length);
  });

  it('getTestPaths - refuses what is not a machine and bad limits', () => {
    expect(() => getTestPaths({} as AnyStateMachine)).toThrow(DefinitionError);
    expect(() => getTestPaths(cart, { depthMax: -1 })).toThrow(ConfigError);
    expect(() => getTestPaths(cart, { pathsMax: 1.5 })).toThrow(/pathsMax must be an integer/);
    expect(() => getTestPaths(cart, { kind: 'all' as 'both' })).toThrow(ConfigError);
  });
});
