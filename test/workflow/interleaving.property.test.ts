/**
 * Goal: interruptions do not change what a workflow computes (issue 6,
 * "random interleavings of events, timer firings and passivations produce
 * the same final result as an uninterrupted run").
 *
 * Method: fast-check generates a script of external inputs (events of two
 * types, clock advances that fire sleeps and wait timeouts) with
 * interruptions mixed in (passivation, forced passivation, a stop and a
 * restart of the whole system on the same store). The script runs twice:
 * once as is, once without its interruptions; after each step both runs
 * settle until their journals stop growing. The final state (value,
 * context, status, output) must be the same, and every action must have
 * run exactly once per recorded call in both. The workflow ends with two
 * parallel branches, so the order in which concurrent steps finish varies
 * too.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { memoryStore } from '../../adapters/memory/index.js';
import {
  createActionRegistry,
  createSimulatedClock,
  defineWorkflow,
  type EntityState,
  type Store,
} from '../../src/index.js';
import { boot, settle } from './fixtures.js';

type Op =
  | { kind: 'event'; type: 'A' | 'B'; n: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'passivate' }
  | { kind: 'passivateForced' }
  | { kind: 'restart' };

function makeWorkflow(effects: string[]) {
  const actions = createActionRegistry().register('score', {
    run: (p: { n: number; round: number }, actx) => {
      effects.push(actx.idempotencyKey);
      return p.n * 10 + p.round;
    },
  });
  const workflow = defineWorkflow(
    'game',
    async (ctx) => {
      const start = ctx.now();
      const log: (string | number)[] = [];
      for (let round = 0; round < 4; round++) {
        ctx.setState(`round_${round}`);
        const ev = await ctx.events.waitFor(['A', 'B'], { timeoutMs: 5_000 });
        log.push(ev === undefined ? 'timeout' : `${ev.type}${String(ev.n)}`);
        const score = await ctx.actions.score({
          n: ev === undefined ? 0 : (ev.n as number),
          round,
        });
        ctx.data.set(`r${round}`, score);
        if (ev?.type === 'B') await ctx.sleep(2_000);
        log.push(ctx.now() - start);
      }
      // Two branches that finish in whatever order the script's events and
      // clock advances make: replay must not depend on it.
      ctx.setState('branches');
      const branches = await ctx.parallel([
        async () => {
          const e = await ctx.events.waitFor('A', { timeoutMs: 4_000 });
          const score = await ctx.actions.score({
            n: e === undefined ? 0 : (e.n as number),
            round: 10,
          });
          return [e === undefined ? 'timeout' : e.n, score, ctx.now() - start];
        },
        async () => {
          const e = await ctx.events.waitFor('B', { timeoutMs: 3_000 });
          await ctx.sleep(1_000);
          const score = await ctx.actions.score({
            n: e === undefined ? 0 : (e.n as number),
            round: 20,
          });
          return [e === undefined ? 'timeout' : e.n, score, ctx.now() - start];
        },
      ]);
      ctx.setState('finished');
      return [...log, ...branches];
    },
    { actions },
  );
  return workflow;
}

/** Runs `ops` from scratch; interruptions are skipped unless `interrupt`. */
async function run(
  ops: readonly Op[],
  interrupt: boolean,
): Promise<{ state: EntityState; effects: string[] }> {
  const effects: string[] = [];
  const workflow = makeWorkflow(effects);
  const store: Store = memoryStore();
  const clock = createSimulatedClock(0);
  let { system } = await boot({ entities: { game: workflow }, store, clock });
  const quiesce = async (): Promise<void> => {
    // Settled when the journal length holds still across a few turns.
    let last = -1;
    for (let still = 0; still < 3;) {
      await settle();
      const len = (await system.entity('game', 'g').snapshot()).seq;
      still = len === last ? still + 1 : 0;
      last = len;
    }
  };
  await system.entity('game', 'g').send({ type: 'A', n: 0 }); // the trigger
  await quiesce();
  for (const op of ops) {
    const ref = system.entity('game', 'g');
    switch (op.kind) {
      case 'event':
        await ref
          .send({ type: op.type, n: op.n })
          .catch((err: { code?: string }) => {
            if (err.code !== 'ENTITY_STOPPED') throw err as Error;
          });
        break;
      case 'advance':
        clock.advance(op.ms);
        break;
      case 'passivate':
        if (interrupt) await ref.passivate();
        break;
      case 'passivateForced':
        if (interrupt) await ref.passivate({ force: true });
        break;
      case 'restart':
        if (interrupt) {
          await system.stop();
          await store.open();
          ({ system } = await boot({
            entities: { game: workflow },
            store,
            clock,
          }));
        }
        break;
    }
    await quiesce();
  }
  const state = await system.entity('game', 'g').snapshot();
  await system.stop();
  return { state, effects };
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('event' as const),
      type: fc.constantFrom('A' as const, 'B' as const),
      n: fc.integer({ min: 1, max: 9 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      ms: fc.constantFrom(500, 1_999, 2_000, 3_000, 5_000, 6_000),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'passivate' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'passivateForced' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'restart' as const }) },
);

describe('workflow interleavings', () => {
  it('property - passivations and restarts between events and timer firings do not change the result', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 10, maxLength: 30 }),
        async (ops) => {
          const plain = await run(ops, false);
          const interrupted = await run(ops, true);
          expect(interrupted.state).toEqual(plain.state);
          // Every call ran once: each key once, and the same keys in both runs.
          expect(new Set(interrupted.effects).size).toBe(
            interrupted.effects.length,
          );
          expect([...interrupted.effects].sort()).toEqual(
            [...plain.effects].sort(),
          );
        },
      ),
      { numRuns: 40 },
    );
  });
});
