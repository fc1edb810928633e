import { describe, expect, it } from 'vitest';
import { createActorSystem, isShardchartError } from '../../src/index.js';
import type { EntityState } from '../../src/index.js';
import { counterMachine, quietLogger } from './fixtures.js';

const observableKey: string | symbol = (Symbol as { observable?: symbol }).observable ?? '@@observable';

describe('entity refs', () => {
  it('ref - a ref made before passivation keeps working after it, and refs of one entity share its state', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const a = system.entity('counter', 'c1');
    const b = system.entity('counter', 'c1');
    expect(a).not.toBe(b);
    expect({ type: a.type, id: a.id }).toEqual({ type: 'counter', id: 'c1' });
    await a.send({ type: 'ADD', value: 2 });
    expect(await a.passivate()).toBe(true);
    expect(a.isLive()).toBe(false);
    expect((await b.send({ type: 'ADD', value: 3 })).context).toMatchObject({ n: 5 });
    expect(a.isLive()).toBe(true);
    expect((await a.stateAt(1)).context).toMatchObject({ n: 2 });
    const seqs: number[] = [];
    for await (const entry of a.journal()) seqs.push(entry.seq);
    expect(seqs).toEqual([1, 2]);
    await system.stop();
  });

  it('ref - waitFor resolves on a later state and times out with a TIMEOUT error that names the wait, not a send', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c1');
    const reached = ref.waitFor((s) => (s.context as { n: number }).n >= 3);
    await ref.send({ type: 'ADD', value: 1 });
    await ref.send({ type: 'ADD', value: 2 });
    expect((await reached).context).toMatchObject({ n: 3 });

    const error = await ref.waitFor((s) => (s.context as { n: number }).n > 100, { timeoutMs: 30 }).catch((e: unknown) => e);
    expect(isShardchartError(error, 'TIMEOUT')).toBe(true);
    expect((error as Error).message).toMatch(/counter\/c1 did not reach the awaited state within 30 ms/);
    await system.stop();
  });

  it('ref - a predicate that throws rejects waitFor with that error', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c1');
    await expect(
      ref.waitFor(() => {
        throw new Error('bad predicate');
      }),
    ).rejects.toThrow('bad predicate');
    await system.stop();
  });

  it('ref - is an observable (Symbol.observable / @@observable) whose subscribe delivers states and unsubscribes', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c1');
    const interop = (ref as unknown as Record<string | symbol, () => typeof ref>)[observableKey]!;
    expect(interop.call(ref)).toBe(ref);
    const seen: number[] = [];
    const sub = ref.subscribe({ next: (s: EntityState) => seen.push(s.seq) });
    await ref.send({ type: 'ADD', value: 1 });
    sub.unsubscribe();
    await ref.send({ type: 'ADD', value: 1 });
    expect(seen).toEqual([1]);
    await system.stop();
  });
});
