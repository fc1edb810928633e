import { describe, expect, it } from 'vitest';
import { fromPromise, setup, assign } from 'xstate';
import { createActorSystem, isShardchartError } from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { counterMachine, quietLogger } from './fixtures.js';

describe('mailbox', () => {
  it('mailbox - events to one entity are applied one at a time in send order', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c1');
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => ref.send({ type: 'ADD', value: i })));
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    const s = await ref.snapshot();
    expect(s.context.seen).toEqual(Array.from({ length: 500 }, (_, i) => i));
    // Each answer reflects the state right after its own event.
    expect(results[9]!.context.n).toBe(45);
    await system.stop();
  });

  it('mailbox - many entities progress in parallel and each keeps its own order', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) for (let e = 0; e < 200; e++) sends.push(system.entity('counter', `c${e}`).send({ type: 'ADD', value: i }));
    await Promise.all(sends);
    for (let e = 0; e < 200; e += 37) {
      const s = await system.entity('counter', `c${e}`).snapshot();
      expect(s.context.seen).toEqual(Array.from({ length: 50 }, (_, i) => i));
    }
    await system.stop();
  });

  it('mailbox - a full mailbox answers MAILBOX_FULL and never grows past mailboxDepthMax', async () => {
    // A store whose writes hang keeps every applied event waiting for durability.
    const store = memoryStore();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const write = store.write.bind(store);
    store.write = async (w) => {
      await gate;
      return write(w);
    };
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store, mailboxDepthMax: 10, logger: quietLogger() });
    const ref = system.entity('counter', 'c1');
    const sends = Array.from({ length: 25 }, (_, i) => ref.send({ type: 'ADD', value: i }).then(() => 'ok', (e: unknown) => (isShardchartError(e, 'MAILBOX_FULL') && e.retryable ? 'full' : e)));
    release();
    const outcomes = await Promise.all(sends);
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(10);
    expect(outcomes.filter((o) => o === 'full')).toHaveLength(15);
    expect((await ref.snapshot()).context.seen).toEqual(Array.from({ length: 10 }, (_, i) => i));
    await system.stop();
  });

  it('mailbox - sends queued while an entity activates are applied after it, in order', async () => {
    const store = memoryStore();
    const first = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store, logger: quietLogger() });
    await first.entity('counter', 'c1').send({ type: 'ADD', value: 1 });
    await first.entity('counter', 'c1').passivate();
    const ref = first.entity('counter', 'c1');
    expect(ref.isLive()).toBe(false);
    const r = await Promise.all([2, 3, 4].map((v) => ref.send({ type: 'ADD', value: v })));
    expect(r.map((x) => x.seq)).toEqual([2, 3, 4]);
    expect((await ref.snapshot()).context.seen).toEqual([1, 2, 3, 4]);
    await first.stop();
  });

  it('mailbox - group commit: concurrent sends to many entities share store writes', async () => {
    const store = memoryStore();
    let batches = 0;
    const write = store.write.bind(store);
    let inTick = false;
    store.write = (w) => {
      if (!inTick) {
        inTick = true;
        batches++;
        queueMicrotask(() => (inTick = false));
      }
      return write(w);
    };
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, store, logger: quietLogger() });
    await Promise.all(Array.from({ length: 300 }, (_, i) => system.entity('counter', `g${i}`).send({ type: 'ADD', value: 1 })));
    // 300 entities, one event each: their writes are issued together.
    expect(batches).toBeLessThan(10);
    await system.stop();
  });

  it('mailbox - an invoked promise result is journaled before the next send is answered', async () => {
    const machine = setup({ actors: { work: fromPromise(async () => 42) } }).createMachine({
      context: { out: 0 },
      initial: 'a',
      states: { a: { on: { GO: 'b' } }, b: { invoke: { src: 'work', id: 'work', onDone: { target: 'a', actions: assign({ out: ({ event }) => event.output }) } } } },
    });
    const store = memoryStore();
    const system = await createActorSystem({ name: 't', entities: { m: machine }, store, logger: quietLogger() });
    const ref = system.entity('m', 'x');
    await ref.send({ type: 'GO' });
    const s = await ref.waitFor((st) => st.value === 'a' && st.seq === 2, { timeoutMs: 2000 });
    expect(s.context).toEqual({ out: 42 });
    const types: string[] = [];
    for await (const e of ref.journal()) types.push(e.event.type);
    expect(types).toEqual(['GO', 'xstate.done.actor.work']);
    await system.stop();
  });
});
