/**
 * The rate limiter, three ways: as a plain XState actor, invoked as a child
 * of another machine, and as a Shardchart entity on the memory store with a
 * simulated clock (requests stamped with the clock's time; passivation and
 * a restart in the middle must not forget the buckets).
 *
 * The property test sends random requests (few keys, costs around the
 * capacity, times that sometimes go backwards, a small keysMax) to a plain
 * actor and an entity side by side, checks they agree after every step, and
 * checks on the answers: over any window the allowed cost of a key is at
 * most capacity + refill * elapsed; every retryAfterMs is exact (the same
 * request is refused one millisecond earlier and allowed at that time, tried
 * with XState's pure `transition` on the state it was refused in).
 */
import fc from 'fast-check';
import { pino } from 'pino';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { assign, createActor, sendTo, setup, transition } from 'xstate';
import { createActorSystem, createSimulatedClock } from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { toMermaid } from '../../src/graph/index.js';
import { checkMachine } from '../../src/testing/index.js';
import {
  createRateLimiterMachine,
  type RateLimiterContext,
  type RateLimitAnswer,
  type RateLimitDecision,
  type RateLimitRequest,
} from './index.js';

const runs = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? 25);
const logger = pino({ level: 'silent' });

function plainLimiter(options: Parameters<typeof createRateLimiterMachine>[0]) {
  const machine = createRateLimiterMachine(options);
  const actor = createActor(machine).start();
  const answers: RateLimitAnswer[] = [];
  actor.on('*', (a) => answers.push(a));
  const ask = (key: string, at: number, cost?: number): RateLimitDecision => {
    actor.send({
      type: 'REQUEST',
      key,
      at,
      cost,
      correlationId: `c${answers.length}`,
    });
    return actor.getSnapshot().context.last!;
  };
  return { machine, actor, answers, ask };
}

describe('rate limiter as a plain actor', () => {
  it('rate limiter - allows a burst of capacity, then refuses with the exact wait', () => {
    const { ask, answers } = plainLimiter({ capacity: 3, refillPerSecond: 2 });
    expect(
      [ask('u', 0), ask('u', 0), ask('u', 0)].map((d) => d.allowed),
    ).toEqual([true, true, true]);
    expect(ask('u', 100)).toMatchObject({
      allowed: false,
      reason: 'insufficient-tokens',
      retryAfterMs: 400,
    });
    expect(ask('u', 499).allowed).toBe(false);
    expect(ask('u', 500)).toMatchObject({ allowed: true, remaining: 0 });
    expect(answers.map((a) => a.type)).toEqual([
      'ALLOWED',
      'ALLOWED',
      'ALLOWED',
      'REJECTED',
      'REJECTED',
      'ALLOWED',
    ]);
    expect(answers[3]).toMatchObject({
      type: 'REJECTED',
      correlationId: 'c3',
      key: 'u',
      cost: 1,
    });
  });

  it('rate limiter - keys are independent and a cost takes that many tokens', () => {
    const { ask } = plainLimiter({ capacity: 5, refillPerSecond: 1 });
    expect(ask('a', 0, 5)).toMatchObject({ allowed: true, remaining: 0 });
    expect(ask('b', 0, 4)).toMatchObject({ allowed: true, remaining: 1 });
    expect(ask('a', 0, 2)).toMatchObject({
      allowed: false,
      retryAfterMs: 2_000,
    });
    expect(ask('b', 0, 2)).toMatchObject({
      allowed: false,
      retryAfterMs: 1_000,
    });
  });

  it('rate limiter - fractional refill rates are exact', () => {
    const { ask } = plainLimiter({ capacity: 1, refillPerSecond: 0.003 });
    expect(ask('k', 10).allowed).toBe(true);
    const refused = ask('k', 10);
    expect(refused).toMatchObject({ allowed: false, retryAfterMs: 333_334 });
    expect(ask('k', 10 + 333_333).allowed).toBe(false);
    expect(ask('k', 10 + 333_334).allowed).toBe(true);
  });

  it('rate limiter - time never moves backwards: an old `at` counts as the latest', () => {
    const { ask, actor } = plainLimiter({ capacity: 1, refillPerSecond: 1 });
    expect(ask('k', 5_000).allowed).toBe(true);
    expect(ask('k', 0)).toMatchObject({
      allowed: false,
      at: 5_000,
      retryAfterMs: 1_000,
    });
    expect(actor.getSnapshot().context.now).toBe(5_000);
  });

  it('rate limiter - a cost above capacity is refused for good, malformed requests as invalid', () => {
    const { ask, actor } = plainLimiter({ capacity: 2, refillPerSecond: 1 });
    expect(ask('k', 0, 3)).toMatchObject({
      allowed: false,
      reason: 'cost-exceeds-capacity',
      retryAfterMs: null,
    });
    for (const bad of [
      { key: '', correlationId: 'x' },
      { key: '__proto__', correlationId: 'x' },
      { key: 'k', correlationId: 'x', cost: 0 },
      { key: 'k', correlationId: 'x', cost: 1.5 },
      { key: 'k', correlationId: 'x', at: -1 },
      { key: 'k', correlationId: 'x', at: Number.NaN },
      { key: 'k'.repeat(257), correlationId: 'x' },
      { key: 'k', correlationId: 7 },
    ]) {
      actor.send({ type: 'REQUEST', ...bad } as unknown as RateLimitRequest);
      expect(
        actor.getSnapshot().context.last,
        JSON.stringify(bad),
      ).toMatchObject({
        allowed: false,
        reason: 'invalid',
        retryAfterMs: null,
      });
    }
    expect(actor.getSnapshot().context.buckets).toEqual({});
  });

  it('rate limiter - full buckets are dropped; with every tracked bucket partial, a new key waits exactly for one to refill', () => {
    const { ask, actor } = plainLimiter({
      capacity: 2,
      refillPerSecond: 1,
      keysMax: 2,
    });
    ask('a', 0);
    ask('b', 500);
    expect(Object.keys(actor.getSnapshot().context.buckets)).toEqual([
      'a',
      'b',
    ]);
    // 'a' refills at 1 000, 'b' at 1 500.
    expect(ask('c', 999)).toMatchObject({
      allowed: false,
      reason: 'keys-exhausted',
      retryAfterMs: 1,
    });
    expect(ask('c', 1_000).allowed).toBe(true);
    expect(Object.keys(actor.getSnapshot().context.buckets)).toEqual([
      'b',
      'c',
    ]);
    // An existing key is never refused for want of room.
    expect(ask('b', 1_000).allowed).toBe(true);
  });

  it('rate limiter - context keeps the last decisionsMax answers', () => {
    const { ask, actor } = plainLimiter({
      capacity: 10,
      refillPerSecond: 1,
      decisionsMax: 2,
    });
    for (let i = 0; i < 5; i++) ask('k', 0);
    const c = actor.getSnapshot().context;
    expect(c.decisions.map((d) => d.correlationId)).toEqual(['c3', 'c4']);
    expect([c.allowed, c.rejected]).toEqual([5, 0]);
  });

  it('rate limiter - bad options are refused with CONFIG_INVALID', () => {
    for (const bad of [
      { capacity: 0, refillPerSecond: 1 },
      { capacity: 1.5, refillPerSecond: 1 },
      { capacity: 1, refillPerSecond: 0 },
      { capacity: 1, refillPerSecond: 0.0001 },
      { capacity: 1, refillPerSecond: Number.POSITIVE_INFINITY },
      { capacity: 1, refillPerSecond: 1, keysMax: 0 },
      { capacity: 1, refillPerSecond: 1, decisionsMax: -1 },
    ]) {
      expect(() => createRateLimiterMachine(bad), JSON.stringify(bad)).toThrow(
        expect.objectContaining({ code: 'CONFIG_INVALID' }),
      );
    }
  });
});

/** A gateway that asks its invoked limiter before each call and counts the answers. */
function gatewayMachine() {
  return setup({
    types: {
      context: {} as {
        served: string[];
        refused: { id: string; retryAfterMs: number | null }[];
      },
      events: {} as
        | { type: 'CALL'; id: string; user: string; at: number }
        | RateLimitAnswer,
    },
    actors: {
      limiter: createRateLimiterMachine({ capacity: 2, refillPerSecond: 1 }),
    },
  }).createMachine({
    id: 'gateway',
    context: { served: [], refused: [] },
    invoke: { id: 'limiter', src: 'limiter' },
    on: {
      CALL: {
        actions: sendTo('limiter', ({ event }) => ({
          type: 'REQUEST',
          key: event.user,
          correlationId: event.id,
          at: event.at,
        })),
      },
      ALLOWED: {
        actions: assign({
          served: ({ context, event }) => [
            ...context.served,
            event.correlationId,
          ],
        }),
      },
      REJECTED: {
        actions: assign({
          refused: ({ context, event }) => [
            ...context.refused,
            { id: event.correlationId, retryAfterMs: event.retryAfterMs },
          ],
        }),
      },
    },
  });
}

describe('rate limiter invoked as a child', () => {
  it('rate limiter - a parent actor receives ALLOWED and REJECTED through sendParent', () => {
    const actor = createActor(gatewayMachine()).start();
    for (const id of ['1', '2', '3'])
      actor.send({ type: 'CALL', id, user: 'u', at: 0 });
    actor.send({ type: 'CALL', id: '4', user: 'u', at: 1_000 });
    expect(actor.getSnapshot().context).toEqual({
      served: ['1', '2', '4'],
      refused: [{ id: '3', retryAfterMs: 1_000 }],
    });
  });

  it("rate limiter - inside a parent entity, the child's buckets survive passivation", async () => {
    const system = await createActorSystem({
      name: 't',
      entities: { g: gatewayMachine() },
      store: memoryStore(),
      clock: createSimulatedClock(0),
      logger,
      passivateAfterMs: 0,
    });
    const ref = system.entity('g', 'a');
    await ref.send({ type: 'CALL', id: '1', user: 'u', at: 0 });
    await ref.send({ type: 'CALL', id: '2', user: 'u', at: 0 });
    expect(await ref.passivate()).toBe(true);
    await ref.send({ type: 'CALL', id: '3', user: 'u', at: 500 });
    expect((await ref.snapshot()).context).toEqual({
      served: ['1', '2'],
      refused: [{ id: '3', retryAfterMs: 500 }],
    });
    await system.stop();
  });
});

describe('rate limiter as an entity', () => {
  it('rate limiter - buckets survive passivation and restarts; a retried request is not charged twice', async () => {
    const clock = createSimulatedClock(1_700_000_000_000);
    const store = memoryStore();
    const limiter = createRateLimiterMachine({
      capacity: 2,
      refillPerSecond: 0.5,
    });
    const boot = () =>
      createActorSystem({
        name: 't',
        entities: { limiter },
        store,
        clock,
        logger,
        passivateAfterMs: 0,
      });
    let system = await boot();
    const tenant = system.entity('limiter', 'tenant-1');
    const ask = async (user: string, eventId: string) =>
      (
        await system.entity('limiter', 'tenant-1').send(
          {
            type: 'REQUEST',
            key: user,
            correlationId: eventId,
            at: clock.now(),
          },
          { eventId },
        )
      ).context.last!;
    expect((await ask('u', 'r1')).allowed).toBe(true);
    expect((await ask('u', 'r1')).correlationId).toBe('r1'); // duplicate: answered, not applied
    expect(await tenant.passivate()).toBe(true);
    expect(await ask('u', 'r2')).toMatchObject({ allowed: true, remaining: 0 });
    await system.stop();
    await store.open();
    system = await boot();
    clock.advance(1_999);
    expect(await ask('u', 'r3')).toMatchObject({
      allowed: false,
      retryAfterMs: 1,
    });
    clock.advance(1);
    expect((await ask('u', 'r4')).allowed).toBe(true);
    expect(
      (await system.entity('limiter', 'tenant-1').snapshot()).context,
    ).toMatchObject({ allowed: 3, rejected: 1 });
    await system.stop();
  });
});

interface Req {
  key: string;
  cost: number;
  /** Moves the caller's clock; negative values model skew between callers. */
  dtMs: number;
  passivate: boolean;
}

describe('rate limiter properties', () => {
  it('rate limiter - allowed cost within capacity + refill * elapsed, retryAfterMs exact (plain and entity agree)', async () => {
    const req: fc.Arbitrary<Req> = fc.record({
      key: fc.constantFrom('a', 'b', 'c'),
      cost: fc.integer({ min: 1, max: 3 }),
      dtMs: fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: 0, max: 30 }) },
        { weight: 1, arbitrary: fc.integer({ min: -100, max: 2_000 }) },
      ),
      passivate: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom(0.3, 0.5, 1, 2.5, 3, 7),
        fc.integer({ min: 1, max: 2 }),
        fc.array(req, { minLength: 5, maxLength: 40 }),
        async (capacity, refillPerSecond, keysMax, reqs) => {
          const options = {
            capacity,
            refillPerSecond,
            keysMax,
            decisionsMax: 1_000,
          };
          const plain = plainLimiter(options);
          const system = await createActorSystem({
            name: 'p',
            entities: { l: createRateLimiterMachine(options) },
            store: memoryStore(),
            clock: createSimulatedClock(0),
            logger,
            passivateAfterMs: 0,
          });
          const ref = system.entity('l', 'x');
          let t = 1_000;
          try {
            for (const [i, r] of reqs.entries()) {
              t = Math.max(0, t + r.dtMs);
              const event: RateLimitRequest = {
                type: 'REQUEST',
                key: r.key,
                cost: r.cost,
                at: t,
                correlationId: `r${i}`,
              };
              const before = plain.actor.getSnapshot();
              plain.actor.send(event);
              const state = await ref.send(event);
              if (r.passivate) expect(await ref.passivate()).toBe(true);
              const snap = plain.actor.getSnapshot();
              expect(state.context).toEqual(snap.context);
              expect(
                Object.keys(snap.context.buckets).length,
              ).toBeLessThanOrEqual(keysMax);

              const d = snap.context.last!;
              if (!d.allowed && d.retryAfterMs !== null) {
                const retry = (atMs: number) =>
                  transition(plain.machine, before, { ...event, at: atMs })[0]
                    .context.last!;
                expect(
                  retry(d.at + d.retryAfterMs).allowed,
                  JSON.stringify(d),
                ).toBe(true);
                if (d.retryAfterMs > 0)
                  expect(
                    retry(d.at + d.retryAfterMs - 1).allowed,
                    JSON.stringify(d),
                  ).toBe(false);
              }
            }
            // Window bound, in integers: cost * 1e6 <= capacity * 1e6 + refill(milli-tokens/s) * elapsed(ms).
            const allowed = plain.actor
              .getSnapshot()
              .context.decisions.filter((d) => d.allowed);
            const refillMilli = Math.round(refillPerSecond * 1_000);
            for (const key of ['a', 'b', 'c']) {
              const mine = allowed.filter((d) => d.key === key);
              for (let i = 0; i < mine.length; i++) {
                let cost = 0;
                for (let j = i; j < mine.length; j++) {
                  cost += mine[j]!.cost;
                  const elapsed = mine[j]!.at - mine[i]!.at;
                  expect(
                    cost * 1_000_000,
                    `${key} ${i}..${j}`,
                  ).toBeLessThanOrEqual(
                    capacity * 1_000_000 + refillMilli * elapsed,
                  );
                }
              }
            }
          } finally {
            await system.stop();
          }
        },
      ),
      { numRuns: runs },
    );
  });

  it('rate limiter - context invariants hold, and plain XState and the entity agree, under checkMachine faults', async () => {
    const capacity = 3;
    const keysMax = 2;
    const report = await checkMachine(
      createRateLimiterMachine({
        capacity,
        refillPerSecond: 0.7,
        keysMax,
        decisionsMax: 4,
      }),
      {
        events: {
          // Times in any order: the machine must clamp the ones that go back.
          REQUEST: fc.record({
            type: fc.constant('REQUEST'),
            key: fc.constantFrom('a', 'b', 'c'),
            cost: fc.integer({ min: 1, max: 4 }),
            at: fc.integer({ min: 0, max: 20_000 }),
            correlationId: fc.constantFrom('x', 'y'),
          }),
        },
        invariants: {
          'at most keysMax partial buckets': (s) =>
            Object.keys((s.context as RateLimiterContext).buckets).length <=
            keysMax,
          'tracked buckets are partial and not from the future': (s) => {
            const c = s.context as RateLimiterContext;
            return Object.values(c.buckets).every(
              (b) =>
                b.micro >= 0 && b.micro < capacity * 1_000_000 && b.at <= c.now,
            );
          },
          'answers are counted and the last one is kept': (s) => {
            const c = s.context as RateLimiterContext;
            return (
              c.decisions.length <= 4 &&
              c.decisions.length === Math.min(4, c.allowed + c.rejected) &&
              (c.last === null
                ? c.decisions.length === 0
                : c.decisions.at(-1) === c.last ||
                  JSON.stringify(c.decisions.at(-1)) === JSON.stringify(c.last))
            );
          },
          'a refusal for want of tokens waits a positive time': (s) => {
            const d = (s.context as RateLimiterContext).last;
            return (
              d === null ||
              d.allowed ||
              d.reason !== 'insufficient-tokens' ||
              (d.retryAfterMs ?? 0) > 0
            );
          },
        },
      },
    );
    expect(
      report.stepKinds.passivate + report.stepKinds.restart,
    ).toBeGreaterThan(0);
  });
});

describe('rate limiter README', () => {
  it('rate - the README diagram is what toMermaid draws today', () => {
    const readme = readFileSync(
      new URL('./README.md', import.meta.url),
      'utf8',
    );
    const block = /```mermaid\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block?.trimEnd()).toBe(
      toMermaid(
        createRateLimiterMachine({ capacity: 10, refillPerSecond: 1 }),
      ).trimEnd(),
    );
  });
});
