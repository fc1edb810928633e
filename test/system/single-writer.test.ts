import { describe, expect, it } from 'vitest';
import { createActorSystem, type Store } from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { counterMachine, quietLogger } from './fixtures.js';

/** A store whose writes take a little while, so passivation overlaps other calls. */
function slowStore(): Store {
  const store = memoryStore();
  const write = store.write.bind(store);
  store.write = async (w) => {
    await new Promise((r) => setTimeout(r, 2));
    return write(w);
  };
  return store;
}

describe('single writer', () => {
  it('single writer - reads and sends racing a passivation never activate the entity twice', async () => {
    // Regression: a read waiting on a passivating host reactivated that host
    // after it had been dropped, while a new send created a second one.
    const store = slowStore();
    let activations = 0;
    const load = store.snapshots.load.bind(store.snapshots);
    store.snapshots.load = (key) => {
      activations++;
      return load(key);
    };
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store, logger: quietLogger() });
    const ref = system.entity('counter', 'c');
    let expected = 0;
    for (let round = 0; round < 30; round++) {
      await ref.send({ type: 'ADD', value: 1 });
      expected++;
      const passivated = ref.passivate();
      // Land the reads inside the passivation's snapshot write.
      await new Promise((r) => setTimeout(r, 1));
      const reads = [ref.snapshot(), ref.waitFor((s) => s.context.n >= expected)];
      await passivated;
      const sends = [ref.send({ type: 'ADD', value: 1 }), ref.send({ type: 'ADD', value: 1 })];
      expected += 2;
      await Promise.all([...reads, ...sends]);
    }
    const final = await ref.snapshot();
    expect(final.context.n).toBe(expected);
    expect(final.seq).toBe(expected);
    expect(system.stats().failures).toBe(0);
    // One activation per passivation, at most, plus the first.
    expect(activations).toBeLessThanOrEqual(31);
    await system.stop();
  });

  it('single writer - eviction under liveEntitiesMax with concurrent reads keeps one actor per entity', async () => {
    const store = slowStore();
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store, liveEntitiesMax: 3, logger: quietLogger() });
    const counts = new Map<string, number>();
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 600; i++) {
      const id = `c${(i * 7) % 10}`;
      counts.set(id, (counts.get(id) ?? 0) + 1);
      ops.push(system.entity('counter', id).send({ type: 'ADD', value: 1 }));
      if (i % 3 === 0) ops.push(system.entity('counter', `c${i % 10}`).snapshot());
    }
    await Promise.all(ops);
    for (const [id, n] of counts) {
      const s = await system.entity('counter', id).snapshot();
      expect(s.context.n, id).toBe(n);
      expect(s.seq, id).toBe(n);
    }
    expect(system.stats().failures).toBe(0);
    await system.stop();
  });

  it('single writer - the live count stays exact when sends arrive during passivation', async () => {
    // Regression: a send landing in a passivation reactivated the host
    // without the live counter going down, so it drifted upwards until
    // eviction passivated every activation again, in a microtask livelock.
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store: slowStore(), liveEntitiesMax: 2, logger: quietLogger() });
    const ref = system.entity('counter', 'c');
    for (let i = 0; i < 20; i++) {
      await ref.send({ type: 'PING' });
      const p = ref.passivate();
      await new Promise((r) => setTimeout(r, 1));
      const s = ref.send({ type: 'ADD', value: 1 });
      await p;
      await s;
      expect(system.stats().liveEntities).toBe(1);
    }
    for (let i = 0; i < 10; i++) await system.entity('counter', `o${i}`).send({ type: 'ADD', value: 1 });
    await new Promise((r) => setTimeout(r, 20));
    expect(system.stats().liveEntities).toBeLessThanOrEqual(2);
    expect((await ref.snapshot()).context.n).toBe(20);
    await system.stop();
  });
});
