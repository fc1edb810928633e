/**
 * checkMachine with invoked actors: both sides run them, the check waits
 * for them to settle, and the one legitimate difference (a restart or a
 * forced passivation re-runs an invocation in flight) is explained or, on
 * request, avoided.
 */
import { describe, expect, it } from 'vitest';
import { assign, fromCallback, fromPromise, sendParent, setup } from 'xstate';
import { CheckFailedError } from '../../src/errors.js';
import { checkMachine, type CheckFailure } from '../../src/testing/index.js';

const envRuns = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? '');
// The environment may ask for more runs, never fewer: a test that must
// find a planted bug, or see every kind of fault, needs its minimum.
const runs = (n: number): number => Math.max(n, envRuns > 0 ? envRuns : 0);
const macrotask = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('checkMachine - invoked actors', () => {
  it('checkMachine - a promise that takes several macrotasks, and one that never settles, agree under faults', async () => {
    const machine = setup({
      actors: {
        lag: fromPromise(async ({ input }: { input: { n: number } }) => {
          for (let i = 0; i < 5; i++) await macrotask();
          return input.n + 1;
        }),
        never: fromPromise(() => new Promise<number>(() => undefined)),
      },
    }).createMachine({
      context: { n: 0 },
      initial: 'idle',
      states: {
        idle: { on: { GO: 'lagging', HANG: 'hanging' } },
        lagging: {
          invoke: {
            id: 'lag',
            src: 'lag',
            input: ({ context }) => ({ n: context.n }),
            onDone: { target: 'idle', actions: assign({ n: ({ event }) => event.output }) },
          },
        },
        hanging: { invoke: { id: 'never', src: 'never' }, on: { CANCEL: 'idle' } },
      },
    });
    const report = await checkMachine(machine, { runs: runs(30), settleTurnsMax: 50 });
    expect(report.stepKinds.restart).toBeGreaterThan(0);
  });

  it('checkMachine - a child machine with its own timer and sendParent agrees under faults', async () => {
    const child = setup({}).createMachine({
      id: 'child',
      initial: 'wait',
      states: {
        wait: { after: { 1000: { target: 'done', actions: sendParent({ type: 'CHILD_TICK' }) } } },
        done: { type: 'final' },
      },
    });
    const parent = setup({ actors: { child } }).createMachine({
      id: 'parent',
      context: { ticks: 0, finished: 0 },
      initial: 'idle',
      states: {
        idle: { on: { START: 'running' } },
        running: {
          invoke: { id: 'kid', src: 'child', onDone: { target: 'idle', actions: assign({ finished: ({ context }) => context.finished + 1 }) } },
          on: { CHILD_TICK: { actions: assign({ ticks: ({ context }) => context.ticks + 1 }) }, STOP: 'idle' },
        },
      },
    });
    const report = await checkMachine(parent, {
      // CHILD_TICK comes from the child only, so it is not sent from outside.
      events: [{ type: 'START' }, { type: 'STOP' }],
      runs: runs(40),
      invariants: {
        // Checked on every state, also between the tick and the child's end.
        'a child finishes only after its tick': (s) => {
          const c = s.context as { ticks: number; finished: number };
          return c.finished <= c.ticks && c.ticks <= c.finished + 1;
        },
      },
    });
    expect(report.stepKinds.advance).toBeGreaterThan(0);
  });

  const pinging = setup({
    actors: {
      pinger: fromCallback(({ sendBack }) => {
        sendBack({ type: 'PONG' });
        return () => undefined;
      }),
    },
  }).createMachine({
    context: { pongs: 0 },
    initial: 'idle',
    states: {
      idle: { on: { GO: 'live' } },
      live: {
        invoke: { id: 'pinger', src: 'pinger' },
        on: { PONG: { actions: assign({ pongs: ({ context }) => context.pongs + 1 }) }, STOP: 'idle' },
      },
    },
  });

  it('checkMachine - a callback re-run by a restart is reported with a note on at-least-once', async () => {
    const err = await checkMachine(pinging, { runs: runs(40), settleTurnsMax: 20 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckFailedError);
    const failure = (err as CheckFailedError).details!.failure as CheckFailure;
    expect(failure.kind).toBe('divergence');
    expect((err as Error).message).toMatch(/caught invoked "pinger" in flight/);
    expect((err as Error).message).toContain('faultsWhileInvoking: false');
  });

  it('checkMachine - faultsWhileInvoking: false skips faults while an invocation runs', async () => {
    const report = await checkMachine(pinging, { runs: runs(40), settleTurnsMax: 20, faultsWhileInvoking: false });
    expect(report.runs).toBe(runs(40));
  });
});
