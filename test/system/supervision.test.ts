import { describe, expect, it } from 'vitest';
import { createActorSystem, createSimulatedClock, isShardchartError } from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { faultyMachine, quietLogger } from './fixtures.js';

const settle = (ms = 20) => new Promise((r) => setTimeout(r, ms));

async function boot(machine = faultyMachine(), extra: object = {}) {
  const clock = createSimulatedClock(0);
  const store = memoryStore();
  const system = await createActorSystem({ name: 't', entities: { f: machine }, store, clock, restart: { attemptsMax: 3, backoffMs: 100 }, logger: quietLogger(), ...extra });
  return { system, clock, store };
}

describe('supervision', () => {
  it('supervision - a throwing action rejects the send with EVENT_FAILED, dead-letters it, and the entity goes on', async () => {
    const { system, clock } = await boot();
    const ref = system.entity('f', 'a');
    await ref.send({ type: 'INC' });
    const err: unknown = await ref.send({ type: 'THROW' }, { eventId: 'bad-1' }).catch((e: unknown) => e);
    expect(isShardchartError(err, 'EVENT_FAILED')).toBe(true);
    expect((err as Error).message).toContain('action exploded');
    await settle(); // the restart arms its backoff timer asynchronously
    clock.advance(100);
    expect(await ref.send({ type: 'INC' })).toMatchObject({ seq: 2, context: { n: 2 } });
    const letters = await system.deadLetters();
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ key: { type: 'f', id: 'a' }, event: { type: 'THROW' }, eventId: 'bad-1', code: 'EVENT_FAILED', message: 'action exploded', seq: 1 });
    await system.stop();
  });

  it('supervision - a throwing guard is contained the same way', async () => {
    const { system, clock } = await boot();
    const ref = system.entity('f', 'a');
    await expect(ref.send({ type: 'GUARD' })).rejects.toMatchObject({ code: 'EVENT_FAILED' });
    await settle(); // the restart arms its backoff timer asynchronously
    clock.advance(100);
    expect((await ref.send({ type: 'INC' })).context.n).toBe(1);
    await system.stop();
  });

  it('supervision - events queued behind a failing one are applied after the restart', async () => {
    const { system, clock } = await boot();
    const ref = system.entity('f', 'a');
    await ref.snapshot();
    const sends = [ref.send({ type: 'INC' }), ref.send({ type: 'THROW' }), ref.send({ type: 'INC' }), ref.send({ type: 'INC' })];
    const settled = Promise.allSettled(sends);
    await settle();
    await settle(); // the restart arms its backoff timer asynchronously
    clock.advance(100);
    const out = await settled;
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((await ref.snapshot()).context.n).toBe(3);
    await system.stop();
  });

  it('supervision - a failure later in a cascade keeps the earlier, valid steps', async () => {
    const { system, clock } = await boot();
    const ref = system.entity('f', 'a');
    // SELF_THEN_THROW increments, then sends THROW to itself: the first step is valid.
    const r = await ref.send({ type: 'SELF_THEN_THROW' });
    expect(r.context.n).toBe(1);
    await settle();
    await settle(); // the restart arms its backoff timer asynchronously
    clock.advance(100);
    expect((await ref.snapshot()).context.n).toBe(1);
    expect((await system.deadLetters()).map((d) => d.event.type)).toEqual(['THROW']);
    await system.stop();
  });

  it('supervision - a rejected invoke without onError restarts with backoff and parks after attemptsMax', async () => {
    const { system, clock } = await boot(faultyMachine({ rejectTimes: Infinity }));
    const ref = system.entity('f', 'a');
    await ref.send({ type: 'INC' });
    await ref.send({ type: 'CALL' });
    // Each restart re-runs the invocation (at-least-once) and fails again.
    for (let i = 0; i < 6; i++) {
      await settle();
      clock.advance(1_000);
    }
    await settle();
    const err: unknown = await ref.send({ type: 'INC' }).catch((e: unknown) => e);
    expect(isShardchartError(err, 'ENTITY_FAILED')).toBe(true);
    expect(system.stats().failures).toBe(3);
    const letters = await system.deadLetters();
    expect(letters.length).toBe(3);
    expect(letters[0]!.event.type).toBe('xstate.error.actor.flaky');
    await system.stop();
  });

  it('supervision - ref.restart() un-parks an entity; it resumes from its durable state', async () => {
    const calls = { n: 0 };
    const { system, clock } = await boot(faultyMachine({ rejectTimes: 3, calls }));
    const ref = system.entity('f', 'a');
    await ref.send({ type: 'CALL' });
    for (let i = 0; i < 6; i++) {
      await settle();
      clock.advance(1_000);
    }
    await expect(ref.send({ type: 'INC' })).rejects.toMatchObject({ code: 'ENTITY_FAILED' });
    await ref.restart(); // the 4th call succeeds
    const s = await ref.waitFor((st) => st.value === 'idle', { timeoutMs: 1_000 });
    expect(s.value).toBe('idle');
    expect(calls.n).toBe(4);
    expect((await ref.send({ type: 'INC' })).context.n).toBe(1);
    await system.stop();
  });

  it('supervision - a context that cannot be persisted is refused and nothing is applied', async () => {
    const { system, clock } = await boot();
    const ref = system.entity('f', 'a');
    await ref.send({ type: 'INC' });
    await expect(ref.send({ type: 'FN' })).rejects.toMatchObject({ code: 'CONTEXT_NOT_SERIALIZABLE' });
    await settle(); // the restart arms its backoff timer asynchronously
    clock.advance(100);
    const s = await ref.snapshot();
    expect(s.context).toEqual({ n: 1 });
    expect(s.seq).toBe(1);
    await system.stop();
  });

  it('supervision - the process survives a storm of failures across many entities', async () => {
    const { system, clock } = await boot();
    const all = Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => system.entity('f', `e${i % 20}`).send({ type: i % 3 === 0 ? 'THROW' : 'INC' })),
    );
    // Sends queued behind a failure wait out the backoff on the simulated clock.
    for (let i = 0; i < 10; i++) {
      await settle(5);
      clock.advance(1_000);
    }
    const results = await all;
    expect(results.some((r) => r.status === 'rejected')).toBe(true);
    expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
    for (let e = 0; e < 20; e++) expect((await system.entity('f', `e${e}`).snapshot()).status).toBe('active');
    await system.stop();
  });
});
