import { describe, expect, it } from 'vitest';
import { assign, sendTo, sendParent, setup } from 'xstate';
import { createActorSystem, createSimulatedClock } from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { quietLogger } from './fixtures.js';

const settle = () => new Promise((r) => setTimeout(r, 20));

/** The child counts BUMPs it receives from the parent and reports at 3. */
const child = setup({ types: {} }).createMachine({
  id: 'child',
  context: { bumps: 0 },
  initial: 'counting',
  states: {
    counting: {
      on: { BUMP: { actions: assign({ bumps: ({ context }) => context.bumps + 1 }) } },
      always: { guard: ({ context }) => context.bumps >= 3, target: 'reported' },
      after: { 5_000: { actions: sendParent({ type: 'CHILD_TICK' }) } },
    },
    reported: { entry: sendParent({ type: 'CHILD_DONE' }) },
  },
});

const parent = setup({ actors: { child }, types: {} }).createMachine({
  id: 'parent',
  context: { done: false, ticks: 0 },
  invoke: { id: 'kid', src: 'child' },
  on: {
    BUMP: { actions: sendTo('kid', { type: 'BUMP' }) },
    CHILD_DONE: { actions: assign({ done: true }) },
    CHILD_TICK: { actions: assign({ ticks: ({ context }) => context.ticks + 1 }) },
  },
});

describe('invoked child machines', () => {
  it('children - a child machine state that no root event carries survives passivation and restart', async () => {
    const store = memoryStore();
    const clock = createSimulatedClock(0);
    const s1 = await createActorSystem({ name: 't', entities: { p: parent }, store, clock, logger: quietLogger() });
    const ref = s1.entity('p', 'a');
    await ref.send({ type: 'BUMP' });
    await ref.send({ type: 'BUMP' });
    await ref.passivate();
    const again = await ref.send({ type: 'BUMP' }); // the child must still remember 2
    await settle();
    expect((await ref.snapshot()).context.done).toBe(true);
    expect(again.seq).toBeGreaterThan(0);
    await s1.stop();
    await store.open();
    const s2 = await createActorSystem({ name: 't', entities: { p: parent }, store, clock, logger: quietLogger() });
    const snap = (await s2.entity('p', 'a').snapshot()) as unknown as { context: { done: boolean } };
    expect(snap.context.done).toBe(true);
    await s2.stop();
  });

  it("children - a child's own timer is durable and reaches the parent after a restart", async () => {
    const store = memoryStore();
    const clock = createSimulatedClock(0);
    const s1 = await createActorSystem({ name: 't', entities: { p: parent }, store, clock, logger: quietLogger() });
    await s1.entity('p', 'a').send({ type: 'BUMP' });
    clock.advance(3_000);
    await s1.stop();
    clock.advance(1_000);
    await store.open();
    const s2 = await createActorSystem({ name: 't', entities: { p: parent }, store, clock, logger: quietLogger() });
    const ref = s2.entity('p', 'a');
    await ref.snapshot();
    clock.advance(1_000); // the child's 5 s timer was due 1 s from now
    const s = await ref.waitFor((st) => st.context.ticks === 1, { timeoutMs: 1_000 });
    expect(s.context.ticks).toBe(1);
    await s2.stop();
  });
});
