/**
 * The batch machine, three ways: as a plain XState actor, invoked as a child
 * of another machine, and as a Shardchart entity on the memory store with a
 * simulated clock (where its `after` timer must survive passivation).
 *
 * The property test drives random ADD / FLUSH / clock / passivate commands
 * through a plain actor and an entity side by side, checks that both agree
 * after every step, and checks the machine's promises on the plain side's
 * emitted batches: nothing lost or repeated, in order; no batch over
 * `sizeMax`; no item waits longer than `waitMs` by the simulated clock.
 */
import fc from 'fast-check';
import { pino } from 'pino';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { assign, createActor, sendTo, setup } from 'xstate';
import {
  createActorSystem,
  createSimulatedClock,
  type SimulatedClock,
} from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { toMermaid } from '../../src/graph/index.js';
import { checkMachine } from '../../src/testing/index.js';
import {
  createBatchMachine,
  type BatchContext,
  type BatchEmitted,
} from './index.js';

const runs = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? 25);
const logger = pino({ level: 'silent' });

function plainBatcher(
  options: { sizeMax: number; waitMs: number; historyMax?: number },
  clock: SimulatedClock,
) {
  const actor = createActor(createBatchMachine<number>(options), { clock });
  const emitted: (BatchEmitted<number> & { at: number })[] = [];
  actor.on('BATCH', (b) => emitted.push({ ...b, at: clock.now() }));
  actor.start();
  return { actor, emitted };
}

describe('batch machine as a plain actor', () => {
  it('batch - emits a full batch at sizeMax, at once', () => {
    const clock = createSimulatedClock(0);
    const { actor, emitted } = plainBatcher(
      { sizeMax: 3, waitMs: 1_000 },
      clock,
    );
    for (const n of [1, 2, 3, 4]) actor.send({ type: 'ADD', item: n });
    expect(emitted).toEqual([
      { type: 'BATCH', seq: 1, items: [1, 2, 3], reason: 'full', at: 0 },
    ]);
    expect(actor.getSnapshot().value).toBe('collecting');
    expect(actor.getSnapshot().context.items).toEqual([4]);
  });

  it('batch - the first item starts the wait; later items do not extend it', () => {
    const clock = createSimulatedClock(0);
    const { actor, emitted } = plainBatcher(
      { sizeMax: 10, waitMs: 1_000 },
      clock,
    );
    actor.send({ type: 'ADD', item: 1 });
    clock.advance(600);
    actor.send({ type: 'ADD', item: 2 });
    clock.advance(399);
    expect(emitted).toEqual([]);
    clock.advance(1);
    expect(emitted).toEqual([
      { type: 'BATCH', seq: 1, items: [1, 2], reason: 'timeout', at: 1_000 },
    ]);
    expect(actor.getSnapshot().value).toBe('idle');
  });

  it('batch - FLUSH emits what is pending, and nothing when empty', () => {
    const clock = createSimulatedClock(0);
    const { actor, emitted } = plainBatcher(
      { sizeMax: 10, waitMs: 1_000 },
      clock,
    );
    actor.send({ type: 'FLUSH' });
    actor.send({ type: 'ADD', item: 7 });
    actor.send({ type: 'FLUSH' });
    actor.send({ type: 'FLUSH' });
    expect(emitted.map((b) => [b.reason, b.items])).toEqual([['flush', [7]]]);
    clock.advance(5_000); // the flushed batch's timer was cancelled
    expect(emitted).toHaveLength(1);
  });

  it('batch - an ADD without an item is not accepted', () => {
    const clock = createSimulatedClock(0);
    const { actor } = plainBatcher({ sizeMax: 2, waitMs: 1_000 }, clock);
    actor.send({ type: 'ADD' } as never);
    expect(actor.getSnapshot().value).toBe('idle');
    expect(actor.getSnapshot().context.received).toBe(0);
  });

  it('batch - context keeps the last historyMax batches and the batch seq', () => {
    const clock = createSimulatedClock(0);
    const { actor } = plainBatcher(
      { sizeMax: 1, waitMs: 1_000, historyMax: 2 },
      clock,
    );
    for (const n of [1, 2, 3]) actor.send({ type: 'ADD', item: n });
    const c = actor.getSnapshot().context;
    expect(c.batchSeq).toBe(3);
    expect(c.batches.map((b) => b.items)).toEqual([[2], [3]]);
    expect([c.received, c.emitted]).toEqual([3, 3]);
  });

  it('batch - bad options are refused with CONFIG_INVALID', () => {
    for (const bad of [
      { sizeMax: 0, waitMs: 1 },
      { sizeMax: 1.5, waitMs: 1 },
      { sizeMax: 1, waitMs: 0 },
      { sizeMax: 1, waitMs: 1, historyMax: -1 },
      { sizeMax: 1, waitMs: Number.NaN },
    ]) {
      expect(() => createBatchMachine(bad), JSON.stringify(bad)).toThrow(
        expect.objectContaining({ code: 'CONFIG_INVALID' }),
      );
    }
  });
});

/** A parent that feeds numbers to an invoked batcher and keeps the batches it is sent. */
function parentMachine() {
  return setup({
    types: {
      context: {} as { got: { items: number[]; reason: string }[] },
      events: {} as
        { type: 'ITEM'; n: number } | { type: 'DONE' } | BatchEmitted<number>,
    },
    actors: {
      batcher: createBatchMachine<number>({ sizeMax: 3, waitMs: 1_000 }),
    },
  }).createMachine({
    id: 'parent',
    context: { got: [] },
    invoke: { id: 'batcher', src: 'batcher' },
    on: {
      ITEM: {
        actions: sendTo('batcher', ({ event }) => ({
          type: 'ADD',
          item: event.n,
        })),
      },
      DONE: { actions: sendTo('batcher', { type: 'FLUSH' }) },
      BATCH: {
        actions: assign({
          got: ({ context, event }) => [
            ...context.got,
            { items: event.items, reason: event.reason },
          ],
        }),
      },
    },
  });
}

describe('batch machine invoked as a child', () => {
  it('batch - a parent actor receives every batch through sendParent', () => {
    const clock = createSimulatedClock(0);
    const actor = createActor(parentMachine(), { clock }).start();
    for (const n of [1, 2, 3, 4]) actor.send({ type: 'ITEM', n });
    clock.advance(1_000);
    actor.send({ type: 'ITEM', n: 5 });
    actor.send({ type: 'DONE' });
    expect(actor.getSnapshot().context.got).toEqual([
      { items: [1, 2, 3], reason: 'full' },
      { items: [4], reason: 'timeout' },
      { items: [5], reason: 'flush' },
    ]);
  });

  it("batch - inside a parent entity, the child's timer is durable across passivation", async () => {
    const clock = createSimulatedClock(0);
    const system = await createActorSystem({
      name: 't',
      entities: { p: parentMachine() },
      store: memoryStore(),
      clock,
      logger,
      passivateAfterMs: 0,
    });
    const ref = system.entity('p', 'a');
    for (const n of [1, 2, 3, 4]) await ref.send({ type: 'ITEM', n });
    expect((await ref.snapshot()).context.got).toEqual([
      { items: [1, 2, 3], reason: 'full' },
    ]);
    clock.advance(400);
    expect(await ref.passivate()).toBe(true);
    clock.advance(599);
    expect((await ref.snapshot()).context.got).toHaveLength(1);
    clock.advance(1);
    const s = await ref.waitFor((st) => st.context.got.length === 2, {
      timeoutMs: 1_000,
    });
    expect(s.context.got[1]).toEqual({ items: [4], reason: 'timeout' });
    await system.stop();
  });
});

describe('batch machine as an entity', () => {
  it('batch - a passivated entity wakes at the deadline and emits the timeout batch into its context', async () => {
    const clock = createSimulatedClock(1_000_000);
    const store = memoryStore();
    const system = await createActorSystem({
      name: 't',
      entities: {
        b: createBatchMachine<string>({ sizeMax: 5, waitMs: 10_000 }),
      },
      store,
      clock,
      logger,
      passivateAfterMs: 0,
    });
    const ref = system.entity('b', 'x');
    await ref.send({ type: 'ADD', item: 'a' }, { eventId: 'a' });
    await ref.send({ type: 'ADD', item: 'a' }, { eventId: 'a' }); // a retry: not added twice
    clock.advance(5_000);
    await ref.send({ type: 'ADD', item: 'b' });
    expect(await ref.passivate()).toBe(true);
    clock.advance(5_000);
    const s = await ref.waitFor((st) => st.context.batchSeq === 1, {
      timeoutMs: 1_000,
    });
    expect(s.value).toBe('idle');
    expect(s.context.batches).toEqual([
      { seq: 1, items: ['a', 'b'], reason: 'timeout' },
    ]);
    await system.stop();
    // The history is durable: a new system on the same store reads it back.
    await store.open();
    const again = await createActorSystem({
      name: 't',
      entities: {
        b: createBatchMachine<string>({ sizeMax: 5, waitMs: 10_000 }),
      },
      store,
      clock,
      logger,
    });
    expect(
      (await again.entity('b', 'x').snapshot()).context.batches[0]!.items,
    ).toEqual(['a', 'b']);
    await again.stop();
  });
});

/** `advance` moves the clock by `tenths` tenths of `waitMs`, so the steps stay on the scale of the timer. */
type Command =
  | { kind: 'add'; count: number }
  | { kind: 'flush' }
  | { kind: 'advance'; tenths: number }
  | { kind: 'passivate' };

describe('batch machine properties', () => {
  it('batch - no item lost or repeated, batches within sizeMax, no item waits over waitMs (plain and entity agree)', async () => {
    const command: fc.Arbitrary<Command> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          kind: fc.constant('add' as const),
          count: fc.integer({ min: 1, max: 2 }),
        }),
      },
      { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant('advance' as const),
          tenths: fc.integer({ min: 0, max: 15 }),
        }),
      },
      { weight: 1, arbitrary: fc.constant({ kind: 'passivate' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 1_000 }),
        fc.array(command, { minLength: 10, maxLength: 40 }),
        async (sizeMax, waitMs, commands) => {
          const options = { sizeMax, waitMs, historyMax: 1_000 };
          const plainClock = createSimulatedClock(0);
          const engineClock = createSimulatedClock(0);
          const plain = plainBatcher(options, plainClock);
          const system = await createActorSystem({
            name: 'p',
            entities: { b: createBatchMachine<number>(options) },
            store: memoryStore(),
            clock: engineClock,
            logger,
            passivateAfterMs: 0,
          });
          const ref = system.entity('b', 'x');
          const addedAt = new Map<number, number>();
          let next = 0;
          try {
            for (const cmd of commands) {
              if (cmd.kind === 'add') {
                for (let k = 0; k < cmd.count; k++) {
                  const item = next++;
                  addedAt.set(item, plainClock.now());
                  plain.actor.send({ type: 'ADD', item });
                  await ref.send({ type: 'ADD', item });
                }
              } else if (cmd.kind === 'flush') {
                plain.actor.send({ type: 'FLUSH' });
                await ref.send({ type: 'FLUSH' });
              } else if (cmd.kind === 'advance') {
                const ms = Math.round((waitMs * cmd.tenths) / 10);
                plainClock.advance(ms);
                engineClock.advance(ms);
              } else {
                expect(await ref.passivate()).toBe(true);
              }
              const snap = plain.actor.getSnapshot();
              const state = await ref.snapshot();
              expect({ value: state.value, context: state.context }).toEqual({
                value: snap.value,
                context: snap.context,
              });

              const emittedItems = plain.emitted.flatMap((b) => b.items);
              expect([...emittedItems, ...snap.context.items]).toEqual([
                ...Array(next).keys(),
              ]);
              expect(plain.emitted.map((b) => b.seq)).toEqual(
                plain.emitted.map((_, i) => i + 1),
              );
              for (const b of plain.emitted) {
                expect(b.items.length).toBeGreaterThan(0);
                expect(b.items.length).toBeLessThanOrEqual(sizeMax);
                expect(b.items.length === sizeMax).toBe(b.reason === 'full');
                for (const item of b.items)
                  expect(b.at - addedAt.get(item)!).toBeLessThanOrEqual(waitMs);
              }
              for (const item of snap.context.items)
                expect(plainClock.now() - addedAt.get(item)!).toBeLessThan(
                  waitMs,
                );
            }
          } finally {
            await system.stop();
          }
        },
      ),
      { numRuns: runs },
    );
  });

  it('batch - invariants hold in every state, and plain XState and the entity agree, under checkMachine faults', async () => {
    const sizeMax = 3;
    const historyMax = 2;
    const report = await checkMachine(
      createBatchMachine<number>({ sizeMax, waitMs: 1_000, historyMax }),
      {
        events: {
          ADD: fc.nat(99).map((item) => ({ type: 'ADD', item })),
          FLUSH: fc.constant({ type: 'FLUSH' }),
        },
        invariants: {
          'a pending batch is never full': (s) =>
            (s.context as BatchContext).items.length < sizeMax,
          'idle exactly when nothing is pending': (s) =>
            (s.value === 'idle') ===
            ((s.context as BatchContext).items.length === 0),
          'every item received is emitted or pending': (s) => {
            const c = s.context as BatchContext;
            return c.received === c.emitted + c.items.length;
          },
          'history is bounded, in seq order, each batch within sizeMax': (
            s,
          ) => {
            const c = s.context as BatchContext;
            return (
              c.batches.length <= historyMax &&
              c.batches.every(
                (b, i) =>
                  b.seq === c.batchSeq - c.batches.length + 1 + i &&
                  b.items.length > 0 &&
                  b.items.length <= sizeMax &&
                  (b.items.length === sizeMax) === (b.reason === 'full'),
              )
            );
          },
        },
      },
    );
    expect(report.timerEvents).toBeGreaterThan(0);
    expect(
      report.stepKinds.passivate + report.stepKinds.restart,
    ).toBeGreaterThan(0);
  });
});

describe('batch machine README', () => {
  it('batch - the README diagram is what toMermaid draws today', () => {
    const readme = readFileSync(
      new URL('./README.md', import.meta.url),
      'utf8',
    );
    const block = /```mermaid\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block?.trimEnd()).toBe(
      toMermaid(createBatchMachine({ sizeMax: 100, waitMs: 5_000 })).trimEnd(),
    );
  });
});
