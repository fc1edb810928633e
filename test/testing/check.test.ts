/**
 * checkMachine must catch real bugs and pass correct machines. Each bug is
 * planted in a fixture machine (see fixtures.ts); the tests check what the
 * CheckFailedError reports: the kind of failure, a shrunk step list of the
 * minimal length, and a seed and path that replay it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assign, fromPromise, setup } from 'xstate';
import { CheckFailedError, isShardchartError } from '../../src/errors.js';
import { checkMachine } from '../../src/testing/index.js';
import type { CheckFailure, CheckStep } from '../../src/testing/index.js';
import { jobMachine, ledgerMachine, orderMachine, tokenMachine } from './fixtures.js';

const envRuns = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? '');
// The environment may ask for more runs, never fewer: a test that must
// find a planted bug, or see every kind of fault, needs its minimum.
const runs = (n: number): number => Math.max(n, envRuns > 0 ? envRuns : 0);

async function failureOf(p: Promise<unknown>): Promise<CheckFailedError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'checkMachine should have failed').toBeInstanceOf(CheckFailedError);
  expect(isShardchartError(err, 'CHECK_FAILED')).toBe(true);
  return err as CheckFailedError;
}

const refundedShips = (s: { value: unknown; context: unknown }): boolean =>
  !(s.value === 'shipped' && (s.context as { refunded: boolean }).refunded);

describe('checkMachine - catches bugs', () => {
  it('checkMachine - an invariant broken only by PAY, REFUND, SHIP is reported with exactly those 3 steps', async () => {
    const err = await failureOf(
      checkMachine(orderMachine, { invariants: { 'a refunded order never ships': refundedShips }, runs: runs(100) }),
    );
    const details = err.details as { steps: CheckStep[]; failure: CheckFailure; seed: number; path: string };
    expect(details.failure).toMatchObject({ kind: 'invariant', name: 'a refunded order never ships', index: 3 });
    // Shrunk to the minimum: every fault and every NOTE/extra event is gone.
    expect(details.steps).toEqual([
      { kind: 'send', event: { type: 'PAY' } },
      { kind: 'send', event: { type: 'REFUND' } },
      { kind: 'send', event: { type: 'SHIP' } },
    ]);
    expect(err.message).toContain('invariant "a refunded order never ships" does not hold at step 3 of 3');
    expect(err.message).toContain('1. send {"type":"PAY"}');
    expect(err.message).toContain('3. send {"type":"SHIP"}');
    expect(err.message).toContain(`seed: ${details.seed}, path: ${JSON.stringify(details.path)}`);

    // The printed seed and path replay the same counterexample.
    const again = await failureOf(
      checkMachine(orderMachine, {
        invariants: { 'a refunded order never ships': refundedShips },
        runs: runs(100),
        seed: details.seed,
        path: details.path,
      }),
    );
    expect((again.details as { steps: CheckStep[] }).steps).toEqual(details.steps);
  });

  it('checkMachine - an invariant that throws counts as violated, with its message', async () => {
    const err = await failureOf(
      checkMachine(orderMachine, {
        // Sample events instead of arbitraries; CANCEL is never sent.
        events: [{ type: 'PAY' }, { type: 'SHIP' }, { type: 'NOTE' }],
        invariants: (s) => {
          if (s.status === 'done') throw new Error('finished too early');
        },
        runs: runs(50),
      }),
    );
    expect(err.message).toContain('(it threw: finished too early)');
    expect((err.details as { steps: CheckStep[] }).steps).toEqual([
      { kind: 'send', event: { type: 'PAY' } },
      { kind: 'send', event: { type: 'SHIP' } },
    ]);
  });

  it('checkMachine - state kept outside context diverges when the entity is rebuilt from its journal', async () => {
    const err = await failureOf(
      checkMachine(ledgerMachine, {
        events: {
          SET: fc.integer({ min: 1, max: 9 }).map((amount) => ({ type: 'SET', amount })),
          COMMIT: fc.constant({ type: 'COMMIT' }),
          PING: fc.constant({ type: 'PING' }),
        },
        runs: runs(100),
      }),
    );
    const details = err.details as { steps: CheckStep[]; failure: CheckFailure };
    expect(details.failure.kind).toBe('divergence');
    expect(err.message).toContain('entity rebuilt from snapshot and journal');
    expect(err.message).toMatch(/first at context\.total/);
    // The shortest way: live COMMIT adds 0 (nothing set yet), the replayed
    // COMMIT adds the amount SET has left in the variable since.
    expect(details.steps.map((s) => (s.kind === 'send' ? s.event.type : s.kind))).toEqual(['COMMIT', 'SET']);
  });

  it('checkMachine - Math.random in an assign diverges on the first step', async () => {
    const err = await failureOf(checkMachine(tokenMachine, { runs: runs(20) }));
    expect((err.details as { failure: CheckFailure }).failure).toMatchObject({ kind: 'divergence', where: 'live entity', index: 1 });
    expect((err.details as { steps: CheckStep[] }).steps).toEqual([{ kind: 'send', event: { type: 'ROLL' } }]);
  });

  it('checkMachine - timers that restart their delay after a restart (timerResume) diverge from plain XState', async () => {
    const reminder = setup({}).createMachine({
      context: { fired: 0 },
      initial: 'idle',
      states: {
        idle: { on: { ARM: 'waiting' } },
        waiting: { after: { 60_000: { target: 'idle', actions: assign({ fired: ({ context }) => context.fired + 1 }) } } },
      },
    });
    // The default ('deadline') keeps plain XState's timing across restarts.
    await checkMachine(reminder, { runs: runs(40) });
    const err = await failureOf(checkMachine(reminder, { runs: runs(100), timerResume: 'restart' }));
    const steps = (err.details as { steps: CheckStep[] }).steps;
    expect((err.details as { failure: CheckFailure }).failure.kind).toBe('divergence');
    // Armed, restarted (the entity wakes at the old deadline and starts the
    // minute again), then time passes: the plain timer fires, the entity's
    // does not.
    expect(steps.map((s) => s.kind)).toEqual(['send', 'restart', 'advance']);
    expect(steps[0]).toEqual({ kind: 'send', event: { type: 'ARM' } });
  });

  it('checkMachine - a context the entity cannot persist is reported as an entity error', async () => {
    const dated = setup({ types: { context: {} as { at: unknown } } }).createMachine({
      context: { at: null },
      on: { STAMP: { actions: assign({ at: () => new Map([[1, 2]]) }) } },
    });
    const err = await failureOf(checkMachine(dated, { runs: runs(10) }));
    expect((err.details as { failure: CheckFailure }).failure).toMatchObject({ kind: 'error', side: 'entity' });
    expect(err.message).toContain('CONTEXT_NOT_SERIALIZABLE');
  });

  it('checkMachine - an invocation that counts its calls diverges (it ran on both sides)', async () => {
    let calls = 0;
    const counting = setup({
      actors: { count: fromPromise(async () => ++calls) },
    }).createMachine({
      context: { got: 0 },
      initial: 'idle',
      states: {
        idle: { on: { GO: 'busy' } },
        busy: { invoke: { id: 'count', src: 'count', onDone: { target: 'idle', actions: assign({ got: ({ event }) => event.output }) } } },
      },
    });
    const err = await failureOf(checkMachine(counting, { runs: runs(10) }));
    expect((err.details as { failure: CheckFailure }).failure.kind).toBe('divergence');
  });
});

describe('checkMachine - passes correct machines', () => {
  it('checkMachine - parallel regions, deep history, hour-long timers and an invoked promise agree on both sides', async () => {
    const report = await checkMachine(jobMachine, {
      events: {
        START: fc.constant({ type: 'START' }),
        STEP: fc.constant({ type: 'STEP' }),
        FAST: fc.constant({ type: 'FAST' }),
        PAUSE: fc.constant({ type: 'PAUSE' }),
        RESUME: fc.constant({ type: 'RESUME' }),
        CHECK: fc.constant({ type: 'CHECK' }),
        DROP: fc.constant({ type: 'DROP' }),
        NOTE: fc.string({ maxLength: 4 }).map((text) => ({ type: 'NOTE', text })),
        FINISH: fc.constant({ type: 'FINISH' }),
      },
      invariants: {
        'done never decreases below 0': (s) => (s.context as { done: number }).done >= 0,
        'log keeps at most 5 notes': (s) => (s.context as { log: string[] }).log.length <= 6,
      },
      runs: runs(40),
    });
    expect(report.runs).toBe(runs(40));
    expect(report.graphPaths).toBeGreaterThan(10);
    // The run exercised what it claims to: timers fired (an hour-long one
    // included, on the simulated clock), and faults were injected.
    expect(report.timerEvents).toBeGreaterThan(0);
    expect(report.stepKinds.advance).toBeGreaterThan(0);
    expect(report.stepKinds.passivate).toBeGreaterThan(0);
    expect(report.stepKinds.restart).toBeGreaterThan(0);
  });

  it('checkMachine - examples run first, on every snapshot interval', async () => {
    const example: CheckStep[] = [
      { kind: 'send', event: { type: 'START' } },
      { kind: 'send', event: { type: 'PAUSE' } },
      { kind: 'passivate', force: false },
      { kind: 'advance', ms: 3_600_000 },
      { kind: 'restart' },
      { kind: 'send', event: { type: 'START' } },
    ];
    const report = await checkMachine(jobMachine, { examples: [example], runs: 1, snapshotEvery: [1, 2] });
    expect(report.runs).toBe(3);
    expect(report.timerEvents).toBeGreaterThanOrEqual(2);
  });

  it('checkMachine - a failing example is reported even when generation would not find it', async () => {
    const err = await failureOf(
      checkMachine(orderMachine, {
        invariants: { 'a refunded order never ships': refundedShips },
        weights: { send: 0 },
        graphPaths: false,
        runs: 5,
        examples: [
          [
            { kind: 'send', event: { type: 'NOTE' } },
            { kind: 'send', event: { type: 'PAY' } },
            { kind: 'restart' },
            { kind: 'send', event: { type: 'REFUND' } },
            { kind: 'send', event: { type: 'SHIP' } },
          ],
        ],
      }),
    );
    expect((err.details as { steps: CheckStep[] }).steps).toHaveLength(3);
  });
});

describe('checkMachine - options', () => {
  it('checkMachine - refuses what is not a machine and invalid options, before running anything', async () => {
    await expect(checkMachine({} as never)).rejects.toMatchObject({ code: 'MACHINE_INVALID' });
    const bad: [string, Parameters<typeof checkMachine>[1]][] = [
      ['runs', { runs: 0 }],
      ['stepsMax', { stepsMax: -1 }],
      ['snapshotEvery', { snapshotEvery: [] }],
      ['snapshotEvery[0]', { snapshotEvery: [0] }],
      ['clockJumpsMs[0]', { clockJumpsMs: [1.5] }],
      ['weights.restart', { weights: { restart: -1 } }],
      ['events.PAY', { events: { PAY: { type: 'PAY' } as never } }],
      ['events[1]', { events: [{ type: 'PAY' }, 'SHIP' as never] }],
      ['invariants.x', { invariants: { x: true as never } }],
      ['path', { path: '0:1' }],
      ['input', { input: { entityId: 'x' } as never }],
      ['examples[0][1]', { examples: [[{ kind: 'restart' }, { kind: 'advance', ms: -5 }]] }],
      ['examples[0][0]', { examples: [[{ kind: 'send', event: 'PAY' } as never]] }],
    ];
    for (const [name, options] of bad) {
      const err = await checkMachine(orderMachine, options).catch((e: unknown) => e);
      expect(err, name).toMatchObject({ code: 'CONFIG_INVALID' });
      expect((err as Error).message, name).toContain(name);
    }
  });

  it('checkMachine - only the given events are sent, by random sequences and by graph walks alike', async () => {
    const seen = new Set<string>();
    const report = await checkMachine(orderMachine, {
      events: [{ type: 'PAY' }, { type: 'NOTE' }],
      invariants: (_s, at) => void seen.add(at.event.type),
      runs: runs(40),
    });
    expect(report.graphPaths).toBeGreaterThan(0);
    expect([...seen].sort()).toEqual(['NOTE', 'PAY', 'xstate.init']);
  });

  it('checkMachine - the entity gets the input an entity type gets, or the one given', async () => {
    const echo = setup({ types: { input: {} as { entityId: string; entityType: string } } }).createMachine({
      context: ({ input }) => ({ id: input.entityId, type: input.entityType }),
      on: { PING: {} },
    });
    const seen: unknown[] = [];
    await checkMachine(echo, { runs: 1, invariants: (s) => void seen.push(s.context) });
    expect(seen[0]).toEqual({ id: 'c-1', type: 'checked' });
    seen.length = 0;
    await checkMachine(echo, { runs: 1, input: (id) => ({ entityId: `x-${id}`, entityType: 't' }), invariants: (s) => void seen.push(s.context) });
    expect(seen[0]).toEqual({ id: 'x-c-1', type: 't' });
  });
});
