/**
 * The circuit breaker as a plain XState actor and as an invoked child: its
 * graph (every state reachable, probe and decision invariants in every
 * state) and property tests on random call/result/time sequences against
 * the rules it promises.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assign,
  createActor,
  sendTo,
  setup,
  type AnyMachineSnapshot,
  type EventObject,
} from 'xstate';
import { toMermaid } from '../../src/graph/index.js';
import { getTestPaths } from '../../src/testing/index.js';
import {
  createSteppingClock,
  edgesFrom,
  propertyRuns,
  readmeMermaidBlocks,
} from '../retry/test-support.js';
import {
  createCircuitBreakerMachine,
  type BreakerAnswer,
  type BreakerContext,
  type BreakerDecision,
} from './breaker-machine.js';

describe('circuit breaker - graph', () => {
  const machine = createCircuitBreakerMachine({
    failureThreshold: 2,
    windowMs: 1_000,
    resetTimeoutMs: 500,
    halfOpenProbesMax: 2,
    decisionsMax: 3,
  });
  const eventsFor = (type: string): EventObject[] => {
    if (type === 'CALL')
      return ['a', 'b', 'c'].map((correlationId) => ({
        type,
        correlationId,
        at: 0,
      }));
    if (type === 'SUCCESS' || type === 'FAILURE')
      return ['a', 'b'].map((correlationId) => ({
        type,
        correlationId,
        at: 0,
      }));
    return [{ type }];
  };
  // `trips` and the timer-derived times grow on every open/half-open cycle;
  // states are told apart by what decides behaviour, so the walk is finite.
  const serialize = (s: AnyMachineSnapshot) => {
    const c = s.context as BreakerContext;
    return JSON.stringify([
      s.value,
      c.failures.length,
      c.probes,
      c.probesSucceeded,
      c.decisions.map((d) => [d.correlationId, d.decision]),
    ]);
  };
  const samples = Object.fromEntries(
    ['CALL', 'SUCCESS', 'FAILURE'].map((type) => [type, eventsFor(type)]),
  );
  const reached = getTestPaths(machine, {
    events: samples,
    serializeState: serialize,
  });

  const edges = edgesFrom(
    machine,
    reached.map((r) => r.state),
    eventsFor,
  );

  it('circuit breaker - closed, open and halfOpen are all reachable, and every way between them', () => {
    const values = new Set(reached.map((r) => r.state.value as string));
    expect([...values].sort()).toEqual(['closed', 'halfOpen', 'open']);
    const moves = new Set(
      edges
        .filter((e) => e.from.value !== e.to.value)
        .map((e) => `${e.from.value as string}->${e.to.value as string}`),
    );
    expect([...moves].sort()).toEqual([
      'closed->open',
      'halfOpen->closed',
      'halfOpen->open',
      'open->halfOpen',
    ]);
  });

  it('circuit breaker - in every reachable state: probes within halfOpenProbesMax, bounded memory', () => {
    expect(reached.length).toBeGreaterThan(20);
    for (const { state } of reached) {
      const ctx = state.context;
      expect(ctx.probes.length).toBeLessThanOrEqual(2);
      expect(ctx.failures.length).toBeLessThan(2);
      expect(ctx.decisions.length).toBeLessThanOrEqual(3);
      if (state.value !== 'halfOpen') expect(ctx.probes).toEqual([]);
      if (state.value === 'closed') expect(ctx.openedAt).toBeNull();
      else expect(ctx.openedAt).not.toBeNull();
    }
  });

  it('circuit breaker - on every edge: a CALL is answered by the state it arrived in, never ALLOWED while open', () => {
    for (const { from, event, to } of edges) {
      if (event.type !== 'CALL') continue;
      const d = (to.context as BreakerContext).lastDecision!;
      expect(d.correlationId).toBe(
        (event as unknown as { correlationId: string }).correlationId,
      );
      expect(d.state).toBe(from.value);
      expect(to.value).toBe(from.value);
      if (from.value === 'open')
        expect(d).toMatchObject({
          decision: 'REJECTED',
          retryAfterMs: expect.any(Number),
        });
      if (from.value === 'closed') expect(d.decision).toBe('ALLOWED');
      if (from.value === 'halfOpen') {
        const probes = (from.context as BreakerContext).probes;
        const known = probes.includes(d.correlationId);
        expect(d.decision).toBe(
          known || probes.length < 2 ? 'ALLOWED' : 'REJECTED',
        );
      }
    }
  });

  it('circuit breaker - on every edge: half-open closes only on the last probe success, re-opens on a probe failure', () => {
    for (const { from, event, to } of edges) {
      if (from.value !== 'halfOpen') continue;
      const ctx = from.context as BreakerContext;
      const id = (event as { correlationId?: string }).correlationId;
      if (to.value === 'closed') {
        expect(event.type).toBe('SUCCESS');
        expect(new Set([...ctx.probesSucceeded, id]).size).toBe(2);
      }
      if (event.type === 'FAILURE')
        expect(to.value).toBe(ctx.probes.includes(id!) ? 'open' : 'halfOpen');
    }
  });
});

type Command =
  | { k: 'call' }
  | { k: 'succeed' | 'fail'; pick: number }
  | { k: 'stale'; fail: boolean }
  | { k: 'advance'; ms: number };

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Command>({ k: 'call' }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('succeed' as const),
      pick: fc.nat(20),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant('fail' as const), pick: fc.nat(20) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('stale' as const),
      fail: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('advance' as const),
      // Mostly short steps, so calls land in every phase of the cycle.
      ms: fc.oneof(
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 0, max: 3_000 }),
      ),
    }),
  },
);

const config = fc.record({
  failureThreshold: fc.integer({ min: 1, max: 4 }),
  windowMs: fc.integer({ min: 50, max: 4_000 }),
  resetTimeoutMs: fc.integer({ min: 50, max: 1_000 }),
  halfOpenProbesMax: fc.integer({ min: 1, max: 3 }),
  probeTimeoutMs: fc.integer({ min: 200, max: 3_000 }),
});

describe('circuit breaker - properties', () => {
  it('circuit breaker - never allows while open, at most halfOpenProbesMax per half-open episode, opens exactly at the windowed threshold', () => {
    fc.assert(
      fc.property(
        config,
        fc.array(command, { minLength: 20, maxLength: 80 }),
        (cfg, commands) => {
          const clock = createSteppingClock(1_000);
          const actor = createActor(createCircuitBreakerMachine(cfg), {
            clock,
          });
          // Answers and changes of state, each with its time and its place
          // in one shared order (several can happen at the same instant).
          let order = 0;
          const answers: (BreakerAnswer & { at: number; order: number })[] = [];
          actor.on('*', (a) =>
            answers.push({
              ...a,
              at: clock.now(),
              order: order++,
            }),
          );
          const moves: {
            at: number;
            order: number;
            from: string;
            to: string;
          }[] = [];
          let value = 'closed';
          let episodeAllowed = new Set<string>();
          let episodeSucceeded = new Set<string>();
          let closedFailures: number[] = [];
          // Probe successes seen at each close (checked after the run: a
          // throw inside a subscriber would be swallowed by XState).
          const closedWith: number[] = [];
          actor.subscribe((s) => {
            const next = s.value as string;
            if (next === value) return;
            moves.push({
              at: clock.now(),
              order: order++,
              from: value,
              to: next,
            });
            if (next === 'halfOpen') {
              episodeAllowed = new Set();
              episodeSucceeded = new Set();
            }
            if (next === 'closed') {
              closedWith.push(episodeSucceeded.size);
              closedFailures = [];
            }
            value = next;
          });
          actor.start();

          let n = 0;
          const inFlight: string[] = [];
          for (const c of commands) {
            const at = clock.now();
            if (c.k === 'advance') {
              clock.advance(c.ms);
              continue;
            }
            if (c.k === 'call') {
              const correlationId = `c${++n}`;
              const before = value;
              actor.send({ type: 'CALL', correlationId, at });
              const d = actor.getSnapshot().context
                .lastDecision as BreakerDecision;
              expect(d.correlationId).toBe(correlationId);
              expect(answers.at(-1)).toMatchObject({
                type: d.decision,
                correlationId,
              });
              expect(d.state).toBe(before);
              if (d.decision === 'ALLOWED') {
                expect(before).not.toBe('open');
                inFlight.push(correlationId);
                if (before === 'halfOpen') {
                  episodeAllowed.add(correlationId);
                  expect(episodeAllowed.size).toBeLessThanOrEqual(
                    cfg.halfOpenProbesMax,
                  );
                }
              } else {
                expect(before).not.toBe('closed');
              }
              continue;
            }
            let correlationId = 'unknown';
            const fail = c.k === 'stale' ? c.fail : c.k === 'fail';
            if (c.k !== 'stale') {
              if (inFlight.length === 0) continue;
              correlationId = inFlight.splice(c.pick % inFlight.length, 1)[0]!;
            }
            const before = value;
            const probe =
              before === 'halfOpen' && episodeAllowed.has(correlationId);
            if (probe && !fail) episodeSucceeded.add(correlationId);
            actor.send({
              type: fail ? 'FAILURE' : 'SUCCESS',
              correlationId,
              at,
            });
            // One probe failure re-opens a half-open breaker.
            if (probe && fail) expect(value).toBe('open');
            if (before === 'closed' && fail) {
              closedFailures = [
                ...closedFailures.filter((t) => t > at - cfg.windowMs),
                at,
              ];
              // Opens exactly when the failures inside the window reach the threshold.
              expect(value).toBe(
                closedFailures.length >= cfg.failureThreshold
                  ? 'open'
                  : 'closed',
              );
              if (value === 'open') closedFailures = [];
            }
          }

          // Closing takes halfOpenProbesMax distinct probe successes.
          for (const n of closedWith) expect(n).toBe(cfg.halfOpenProbesMax);

          // Time-based rules, from the recorded moves and answers.
          for (const m of moves) {
            if (m.to !== 'open') continue;
            const until = m.at + cfg.resetTimeoutMs;
            const allowedEarly = answers.filter(
              (a) => a.type === 'ALLOWED' && a.order > m.order && a.at < until,
            );
            expect(allowedEarly).toEqual([]);
            const halfOpened = moves.find(
              (x) =>
                x.order > m.order && x.from === 'open' && x.to === 'halfOpen',
            );
            if (halfOpened) expect(halfOpened.at).toBe(until);
          }
          for (const m of moves) {
            if (m.from === 'halfOpen' && m.to === 'open') {
              const entered = moves
                .filter((x) => x.to === 'halfOpen' && x.order < m.order)
                .at(-1)!;
              expect(m.at - entered.at).toBeLessThanOrEqual(cfg.probeTimeoutMs);
            }
          }
          actor.stop();
        },
      ),
      { numRuns: propertyRuns(100) },
    );
  });

  it('circuit breaker - the failure window slides: old failures stop counting', () => {
    const clock = createSteppingClock(0);
    const actor = createActor(
      createCircuitBreakerMachine({
        failureThreshold: 3,
        windowMs: 1_000,
        resetTimeoutMs: 5_000,
        halfOpenProbesMax: 1,
      }),
      { clock },
    ).start();
    actor.send({ type: 'FAILURE', correlationId: 'a', at: 0 });
    actor.send({ type: 'FAILURE', correlationId: 'b', at: 600 });
    actor.send({ type: 'FAILURE', correlationId: 'c', at: 1_000 }); // 'a' (at 0) has left the window
    expect(actor.getSnapshot().value).toBe('closed');
    expect(actor.getSnapshot().context.failures).toEqual([600, 1_000]);
    actor.send({ type: 'FAILURE', correlationId: 'd', at: 1_500 });
    expect(actor.getSnapshot().value).toBe('open');
    actor.send({ type: 'CALL', correlationId: 'e', at: 2_000 });
    expect(actor.getSnapshot().context.lastDecision).toEqual({
      correlationId: 'e',
      decision: 'REJECTED',
      state: 'open',
      retryAfterMs: 4_500,
    });
  });

  it('circuit breaker - malformed events are not accepted', () => {
    const actor = createActor(
      createCircuitBreakerMachine({
        failureThreshold: 1,
        windowMs: 1_000,
        resetTimeoutMs: 1_000,
        halfOpenProbesMax: 1,
      }),
    ).start();
    const before = actor.getSnapshot();
    actor.send({ type: 'CALL', correlationId: '', at: 0 });
    actor.send({ type: 'FAILURE', correlationId: 'x', at: Number.NaN });
    actor.send({ type: 'CALL' } as never);
    expect(actor.getSnapshot()).toBe(before);
  });
});

describe('circuit breaker - as a plain actor and as a child', () => {
  it('circuit breaker - a parent invoking it gets ALLOWED/REJECTED through replyTo', () => {
    const clock = createSteppingClock(0);
    const breaker = createCircuitBreakerMachine({
      failureThreshold: 1,
      windowMs: 1_000,
      resetTimeoutMs: 2_000,
      halfOpenProbesMax: 1,
    });
    const parent = setup({
      types: {
        context: {} as { answers: string[] },
        events: {} as
          | { type: 'ASK'; id: string }
          | { type: 'BROKE'; id: string }
          | BreakerAnswer,
      },
      actors: { breaker },
    }).createMachine({
      context: { answers: [] },
      invoke: { id: 'breaker', src: 'breaker' },
      on: {
        ASK: {
          actions: sendTo('breaker', ({ event, self }) => ({
            type: 'CALL',
            correlationId: (event as { id: string }).id,
            at: clock.now(),
            replyTo: self,
          })),
        },
        BROKE: {
          actions: sendTo('breaker', ({ event }) => ({
            type: 'FAILURE',
            correlationId: (event as { id: string }).id,
            at: clock.now(),
          })),
        },
        ALLOWED: {
          actions: assign({
            answers: ({ context, event }) => [
              ...context.answers,
              `${event.correlationId}:allowed`,
            ],
          }),
        },
        REJECTED: {
          actions: assign({
            answers: ({ context, event }) => [
              ...context.answers,
              `${event.correlationId}:rejected:${event.retryAfterMs}`,
            ],
          }),
        },
      },
    });
    const actor = createActor(parent, { clock }).start();
    actor.send({ type: 'ASK', id: 'a' });
    actor.send({ type: 'BROKE', id: 'a' });
    clock.advance(500);
    actor.send({ type: 'ASK', id: 'b' });
    clock.advance(1_500); // the child's reset timer: half-open
    actor.send({ type: 'ASK', id: 'c' });
    actor.send({ type: 'ASK', id: 'd' });
    expect(actor.getSnapshot().context.answers).toEqual([
      'a:allowed',
      'b:rejected:1500',
      'c:allowed',
      'd:rejected:undefined',
    ]);
  });

  it('circuit breaker - emits its answers to listeners of a plain actor', () => {
    const actor = createActor(
      createCircuitBreakerMachine({
        failureThreshold: 1,
        windowMs: 10,
        resetTimeoutMs: 10,
        halfOpenProbesMax: 1,
      }),
    ).start();
    const heard: string[] = [];
    actor.on('ALLOWED', (a) => heard.push(`+${a.correlationId}`));
    actor.on('REJECTED', (a) => heard.push(`-${a.correlationId}`));
    actor.send({ type: 'CALL', correlationId: 'x', at: 1 });
    actor.send({ type: 'FAILURE', correlationId: 'x', at: 2 });
    actor.send({ type: 'CALL', correlationId: 'y', at: 3 });
    expect(heard).toEqual(['+x', '-y']);
    actor.stop();
  });

  it('circuit breaker - bad options are refused with CONFIG_INVALID', () => {
    const ok = {
      failureThreshold: 1,
      windowMs: 1,
      resetTimeoutMs: 1,
      halfOpenProbesMax: 1,
    };
    expect(() =>
      createCircuitBreakerMachine({ ...ok, failureThreshold: 0 }),
    ).toThrow(/failureThreshold/);
    expect(() =>
      createCircuitBreakerMachine({ ...ok, halfOpenProbesMax: 1_001 }),
    ).toThrow(/halfOpenProbesMax/);
    expect(() => createCircuitBreakerMachine({ ...ok, windowMs: -1 })).toThrow(
      /windowMs/,
    );
    expect(() =>
      createCircuitBreakerMachine({ ...ok, decisionsMax: 1.5 }),
    ).toThrow(/decisionsMax/);
  });
});

describe('circuit breaker - README', () => {
  it('circuit breaker - the README diagram is what toMermaid draws today', () => {
    const machine = createCircuitBreakerMachine({
      failureThreshold: 5,
      windowMs: 10_000,
      resetTimeoutMs: 30_000,
      halfOpenProbesMax: 2,
    });
    expect(
      readmeMermaidBlocks(new URL('./README.md', import.meta.url)),
    ).toEqual([toMermaid(machine).trimEnd()]);
  });
});
