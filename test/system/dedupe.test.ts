import { describe, expect, it } from 'vitest';
import { createActorSystem } from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { counterMachine, quietLogger } from './fixtures.js';

describe('effectively-once', () => {
  it('dedupe - a repeated eventId is not applied again and is answered duplicate: true', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c1');
    const a = await ref.send({ type: 'ADD', value: 5 }, { eventId: 'e-1' });
    const b = await ref.send({ type: 'ADD', value: 5 }, { eventId: 'e-1' });
    expect(a).toMatchObject({ seq: 1, changed: true });
    expect(a.duplicate).toBeUndefined();
    expect(b).toMatchObject({ seq: 1, changed: false, duplicate: true, context: { n: 5 } });
    expect(system.stats().duplicates).toBe(1);
    await system.stop();
  });

  it('dedupe - concurrent sends with the same eventId apply once', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c1');
    const rs = await Promise.all(Array.from({ length: 20 }, () => ref.send({ type: 'ADD', value: 1 }, { eventId: 'same' })));
    expect(rs.filter((r) => r.duplicate)).toHaveLength(19);
    expect((await ref.snapshot()).context.n).toBe(1);
    await system.stop();
  });

  it('dedupe - survives passivation and a restart of the system', async () => {
    const store = memoryStore();
    const s1 = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store, snapshotEvery: 3, logger: quietLogger() });
    for (let i = 0; i < 10; i++) await s1.entity('counter', 'c1').send({ type: 'ADD', value: 1 }, { eventId: `e-${i}` });
    await s1.entity('counter', 'c1').passivate();
    // Ids from the snapshot (e-0..e-8) and from the journal tail (e-9).
    for (const id of ['e-0', 'e-5', 'e-9']) {
      expect(await s1.entity('counter', 'c1').send({ type: 'ADD', value: 1 }, { eventId: id })).toMatchObject({ duplicate: true });
    }
    await s1.stop();
    await store.open();
    const s2 = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store, logger: quietLogger() });
    const r = await s2.entity('counter', 'c1').send({ type: 'ADD', value: 1 }, { eventId: 'e-3' });
    expect(r).toMatchObject({ duplicate: true, context: { n: 10 } });
    await s2.stop();
  });

  it('dedupe - the window is bounded: ids older than dedupeWindow are forgotten', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, dedupeWindow: 4, logger: quietLogger() });
    const ref = system.entity('counter', 'c1');
    for (let i = 0; i < 6; i++) await ref.send({ type: 'ADD', value: 1 }, { eventId: `e-${i}` });
    expect(await ref.send({ type: 'ADD', value: 1 }, { eventId: 'e-5' })).toMatchObject({ duplicate: true });
    // e-0 fell out of the window of 4: documented at-most-once limit.
    expect((await ref.send({ type: 'ADD', value: 1 }, { eventId: 'e-0' })).duplicate).toBeUndefined();
    await ref.passivate();
    expect((await ref.send({ type: 'ADD', value: 1 }, { eventId: 'e-1' })).duplicate).toBeUndefined();
    await system.stop();
  });
});
