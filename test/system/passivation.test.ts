import { describe, expect, it } from 'vitest';
import { assign, fromPromise, setup } from 'xstate';
import { createActorSystem, createSimulatedClock } from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { counterMachine, quietLogger } from './fixtures.js';

const settle = () => new Promise((r) => setTimeout(r, 20));

describe('passivation', () => {
  it('passivation - idle entities are snapshotted and dropped, then reactivated transparently', async () => {
    const clock = createSimulatedClock(0);
    const store = memoryStore();
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store, clock, passivateAfterMs: 1_000, logger: quietLogger() });
    for (let i = 0; i < 20; i++) await system.entity('counter', `c${i}`).send({ type: 'ADD', value: i });
    expect(system.stats().liveEntities).toBe(20);
    clock.advance(500);
    await system.entity('counter', 'c0').send({ type: 'ADD', value: 100 }); // keeps c0 busy
    clock.advance(800);
    await settle();
    expect(system.stats().liveEntities).toBe(1);
    expect(system.entity('counter', 'c0').isLive()).toBe(true);
    // The snapshot is what the next activation starts from.
    expect((await store.snapshots.load({ type: 'counter', id: 'c5' }))?.seq).toBe(1);
    expect(await system.entity('counter', 'c5').send({ type: 'ADD', value: 1 })).toMatchObject({ seq: 2, context: { n: 6 } });
    await system.stop();
  });

  it('passivation - least-recently-used entities beyond liveEntitiesMax are passivated', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, liveEntitiesMax: 10, logger: quietLogger() });
    for (let i = 0; i < 30; i++) await system.entity('counter', `c${i}`).send({ type: 'ADD', value: 1 });
    await settle();
    expect(system.stats().liveEntities).toBeLessThanOrEqual(10);
    expect(system.entity('counter', 'c29').isLive()).toBe(true);
    expect(system.entity('counter', 'c0').isLive()).toBe(false);
    expect((await system.entity('counter', 'c0').snapshot()).context.n).toBe(1);
    await system.stop();
  });

  it('passivation - never while an invocation is in flight, unless forced by stop()', async () => {
    const releases: ((v: number) => void)[] = [];
    let runs = 0;
    const machine = setup({
      actors: {
        slow: fromPromise(() => {
          runs++;
          return new Promise<number>((r) => releases.push(r));
        }),
      },
    }).createMachine({
      context: { v: 0 },
      initial: 'idle',
      states: {
        idle: { on: { GO: 'busy' } },
        busy: { invoke: { id: 'slow', src: 'slow', onDone: { target: 'idle', actions: assign({ v: ({ event }) => event.output }) } } },
      },
    });
    const clock = createSimulatedClock(0);
    const store = memoryStore();
    const system = await createActorSystem({ name: 't', entities: { m: machine }, store, clock, passivateAfterMs: 100, liveEntitiesMax: 1, logger: quietLogger() });
    const ref = system.entity('m', 'x');
    await ref.send({ type: 'GO' });
    expect(await ref.passivate()).toBe(false);
    clock.advance(1_000);
    await system.entity('m', 'other').send({ type: 'GO' }); // over liveEntitiesMax
    clock.advance(1_000);
    await settle();
    expect(ref.isLive()).toBe(true);
    releases[0]!(7); // x's invocation; 'other' stays in flight
    expect((await ref.waitFor((s) => s.value === 'idle')).context.v).toBe(7);
    // stop() forces passivation of 'other' (still in flight): it re-runs next time.
    await system.stop();
    await store.open();
    const again = await createActorSystem({ name: 't', entities: { m: machine }, store, logger: quietLogger() });
    const before = runs;
    expect((await again.entity('m', 'other').snapshot()).value).toBe('busy');
    expect(runs).toBe(before + 1);
    await again.stop();
  });

  it('passivation - a passivated entity holds no host in memory', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    for (let i = 0; i < 100; i++) await system.entity('counter', `c${i}`).send({ type: 'ADD', value: 1 });
    for (let i = 0; i < 100; i++) expect(await system.entity('counter', `c${i}`).passivate()).toBe(true);
    expect(system.stats()).toMatchObject({ liveEntities: 0, passivations: 100 });
    await system.stop();
  });

  it('passivation - stop() snapshots every live entity and closes the store', async () => {
    const store = memoryStore();
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store, snapshotEvery: 1_000, logger: quietLogger() });
    await Promise.all(Array.from({ length: 50 }, (_, i) => system.entity('counter', `c${i}`).send({ type: 'ADD', value: i })));
    await system.stop();
    await expect(system.entity('counter', 'c1').send({ type: 'ADD', value: 1 })).rejects.toMatchObject({ code: 'SYSTEM_STOPPED' });
    await store.open();
    for (let i = 0; i < 50; i += 7) expect((await store.snapshots.load({ type: 'counter', id: `c${i}` }))?.seq).toBe(1);
  });
});
