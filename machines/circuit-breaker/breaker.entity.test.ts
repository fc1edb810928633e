/**
 * The circuit breaker as a Shardchart entity: its reset and probe timers
 * are durable across passivation and restarts, and one breaker entity is
 * shared by several workflow entities that call it through the system
 * (the `callThroughBreaker` pattern: the answer is the send result's
 * context).
 */
import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { assign, fromPromise, setup } from 'xstate';
import { createActorSystem, type ActorSystem } from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { checkMachine } from '../../src/testing/index.js';
import {
  createSteppingClock,
  deferred,
  flush,
  propertyRuns,
  runUntil,
  type Deferred,
} from '../retry/test-support.js';
import {
  createCircuitBreakerMachine,
  type BreakerContext,
} from './breaker-machine.js';
import {
  callThroughBreaker,
  decisionFor,
  type BreakerCallResult,
} from './call.js';

const quiet = () => pino({ level: 'silent' });
const breaker = createCircuitBreakerMachine({
  failureThreshold: 2,
  windowMs: 10_000,
  resetTimeoutMs: 5_000,
  halfOpenProbesMax: 1,
  probeTimeoutMs: 3_000,
});

describe('circuit breaker - as an entity', () => {
  it('circuit breaker - the reset timer wakes a passivated breaker, and the probe timeout fires at its deadline after a restart', async () => {
    const clock = createSteppingClock(0);
    const store = memoryStore();
    const boot = () =>
      createActorSystem({
        name: 'cb',
        entities: { breaker },
        store,
        clock,
        logger: quiet(),
        passivateAfterMs: 0,
        rejectUnhandled: true,
      });
    const first = await boot();
    const ref = first.entity('breaker', 'payments');
    await ref.send({ type: 'FAILURE', correlationId: 'a', at: clock.now() });
    clock.advance(1_000);
    const opened = await ref.send({
      type: 'FAILURE',
      correlationId: 'b',
      at: clock.now(),
    });
    expect(opened.value).toBe('open');
    clock.advance(1_000);
    const rejected = await ref.send({
      type: 'CALL',
      correlationId: 'c',
      at: clock.now(),
    });
    expect(decisionFor(rejected.context, 'c')).toEqual({
      correlationId: 'c',
      decision: 'REJECTED',
      state: 'open',
      retryAfterMs: 4_000,
    });
    // A malformed call is refused, not silently dropped.
    await expect(
      ref.send({ type: 'CALL', correlationId: 'd' }),
    ).rejects.toMatchObject({ code: 'EVENT_REJECTED' });

    expect(await ref.passivate()).toBe(true);
    await runUntil(clock, () => ref.isLive());
    expect(clock.now()).toBe(6_000); // opened at 1 000, reset after 5 000
    await flush();
    expect((await ref.snapshot()).value).toBe('halfOpen');
    const probe = await ref.send({
      type: 'CALL',
      correlationId: 'p1',
      at: clock.now(),
    });
    expect(decisionFor(probe.context, 'p1')?.decision).toBe('ALLOWED');

    // The system goes down before the probe reports; the probe timeout
    // (due at 9 000) must still fire at its deadline.
    clock.advance(1_000);
    await first.stop();
    await store.open();
    const second = await boot();
    const again = second.entity('breaker', 'payments');
    expect((await again.snapshot()).value).toBe('halfOpen');
    await runUntil(
      clock,
      async () => (await again.snapshot()).value === 'open',
    );
    expect(clock.now()).toBe(9_000);
    const late = await again.send({
      type: 'CALL',
      correlationId: 'e',
      at: clock.now(),
    });
    expect(decisionFor(late.context, 'e')).toMatchObject({
      decision: 'REJECTED',
      retryAfterMs: 5_000,
    });
    expect(late.context.trips).toBe(2);
    await second.stop();
  });

  it('circuit breaker - two workflow entities share one breaker entity through the system', async () => {
    const clock = createSteppingClock(0);
    const store = memoryStore();
    // The downstream service: fails until `healthy` is set.
    let healthy = false;
    const held: { gate?: Deferred<void> } = {};
    const downstreamCalls: string[] = [];
    const holder: { system?: ActorSystem } = {};

    /** A workflow that makes one protected call per GO and keeps every settlement. */
    const workflow = setup({
      types: {
        context: {} as { id: string; calls: BreakerCallResult<string>[] },
        input: {} as { entityId: string },
      },
      actors: {
        call: fromPromise<BreakerCallResult<string>, { correlationId: string }>(
          ({ input }) =>
            callThroughBreaker(
              holder.system!.entity('breaker', 'payments'),
              { correlationId: input.correlationId, now: () => clock.now() },
              async () => {
                downstreamCalls.push(input.correlationId);
                if (held.gate) await held.gate.promise;
                if (!healthy)
                  throw Object.assign(new Error('payments unavailable'), {
                    code: 'EUNAVAILABLE',
                  });
                return `paid:${input.correlationId}`;
              },
            ),
        ),
      },
    }).createMachine({
      id: 'workflow',
      context: ({ input }) => ({ id: input.entityId, calls: [] }),
      initial: 'idle',
      states: {
        idle: { on: { GO: 'calling' } },
        calling: {
          invoke: {
            id: 'call',
            src: 'call',
            input: ({ context }) => ({
              correlationId: `${context.id}-${context.calls.length + 1}`,
            }),
            onDone: {
              target: 'idle',
              actions: assign({
                calls: ({ context, event }) => [...context.calls, event.output],
              }),
            },
          },
        },
      },
    });

    const system = await createActorSystem({
      name: 'shop',
      entities: { breaker, workflow },
      store,
      clock,
      logger: quiet(),
      passivateAfterMs: 0,
    });
    holder.system = system;
    const w1 = system.entity('workflow', 'w1');
    const w2 = system.entity('workflow', 'w2');
    const goAndSettle = async (ref: typeof w1) => {
      const before = (await ref.snapshot()).context.calls.length;
      await ref.send({ type: 'GO' });
      return (
        await ref.waitFor((s) => s.context.calls.length === before + 1)
      ).context.calls.at(-1)!;
    };

    expect(await goAndSettle(w1)).toMatchObject({
      outcome: 'failed',
      decision: { decision: 'ALLOWED', state: 'closed' },
      error: { code: 'EUNAVAILABLE' },
    });
    clock.advance(100);
    expect(await goAndSettle(w2)).toMatchObject({
      outcome: 'failed',
      decision: { decision: 'ALLOWED' },
    });
    // Two failures in the window: the shared breaker is open for everyone.
    clock.advance(100);
    expect(await goAndSettle(w1)).toEqual({
      outcome: 'rejected',
      decision: {
        correlationId: 'w1-2',
        decision: 'REJECTED',
        state: 'open',
        retryAfterMs: 4_900,
      },
    });
    expect(await goAndSettle(w2)).toMatchObject({ outcome: 'rejected' });
    expect(downstreamCalls).toEqual(['w1-1', 'w2-1']);

    // After the reset timeout one probe goes through; the other workflow is turned away meanwhile.
    healthy = true;
    clock.advance(4_900);
    await flush();
    expect((await system.entity('breaker', 'payments').snapshot()).value).toBe(
      'halfOpen',
    );
    // w2's probe hangs in the downstream call until the gate opens.
    held.gate = deferred<void>();
    await w2.send({ type: 'GO' });
    await runUntil(clock, () => downstreamCalls.length === 3);
    expect(downstreamCalls.at(-1)).toBe('w2-3');
    // Meanwhile w1 asks: the only probe slot is taken.
    expect(await goAndSettle(w1)).toEqual({
      outcome: 'rejected',
      decision: {
        correlationId: 'w1-3',
        decision: 'REJECTED',
        state: 'halfOpen',
      },
    });
    held.gate.resolve();
    const probed = await w2.waitFor((s) => s.context.calls.length === 3);
    expect(probed.context.calls.at(-1)).toMatchObject({
      outcome: 'succeeded',
      result: 'paid:w2-3',
      decision: { decision: 'ALLOWED', state: 'halfOpen' },
    });
    // The probe's success closed the breaker for everyone.
    expect(await goAndSettle(w1)).toMatchObject({
      outcome: 'succeeded',
      result: 'paid:w1-4',
      decision: { state: 'closed' },
    });
    const shared = await system.entity('breaker', 'payments').snapshot();
    expect(shared.value).toBe('closed');
    expect(shared.context.trips).toBe(1);
    await system.stop();
  });

  it('circuit breaker - checkMachine: plain XState and the entity agree under faults, and the breaker rules hold in every state', async () => {
    const ids = ['a', 'b', 'c', 'd'];
    const at = fc.integer({ min: 0, max: 20_000 });
    const report = await checkMachine(breaker, {
      events: {
        CALL: fc.record({
          type: fc.constant('CALL'),
          correlationId: fc.constantFrom(...ids),
          at,
        }),
        SUCCESS: fc.record({
          type: fc.constant('SUCCESS'),
          correlationId: fc.constantFrom(...ids),
          at,
        }),
        FAILURE: fc.record({
          type: fc.constant('FAILURE'),
          correlationId: fc.constantFrom(...ids),
          at,
        }),
      },
      runs: propertyRuns(20),
      invariants: {
        'probes within halfOpenProbesMax, only while half-open': (s) => {
          const ctx = s.context as BreakerContext;
          return (
            ctx.probes.length <= 1 &&
            (s.value === 'halfOpen' || ctx.probes.length === 0)
          );
        },
        'fewer failures kept than the threshold': (s) =>
          (s.context as BreakerContext).failures.length < 2,
        'a CALL is rejected while open and allowed while closed': (
          s,
          where,
        ) => {
          if (where.event.type !== 'CALL') return true;
          const d = (s.context as BreakerContext).lastDecision;
          if (s.value === 'open') return d?.decision === 'REJECTED';
          if (s.value === 'closed') return d?.decision === 'ALLOWED';
          return true;
        },
      },
    });
    expect(
      report.stepKinds.restart + report.stepKinds.passivate,
    ).toBeGreaterThan(0);
  });
});
