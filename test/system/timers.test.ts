import { describe, expect, it } from 'vitest';
import { assign, setup } from 'xstate';
import { createActorSystem, createSimulatedClock } from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { quietLogger } from './fixtures.js';

const settle = () => new Promise((r) => setTimeout(r, 20));

/** Counts timer firings in context so a double fire is visible. */
const reminder = setup({ types: {} }).createMachine({
  id: 'reminder',
  context: { fired: 0, log: [] },
  initial: 'idle',
  states: {
    idle: { on: { ARM: 'waiting', ARM_NESTED: 'outer' } },
    waiting: {
      after: { 60_000: { target: 'idle', actions: assign({ fired: ({ context }) => context.fired + 1 }) } },
      on: { CANCEL: 'idle' },
    },
    outer: {
      type: 'parallel',
      states: {
        left: { initial: 'l1', states: { l1: { after: { 1_000: 'l2' } }, l2: {} } },
        right: { initial: 'r1', states: { r1: { after: { 5_000: { target: 'r2', actions: assign({ log: ({ context }) => [...context.log, 'right'] }) } } }, r2: {} } },
      },
    },
  },
});

async function boot(store = memoryStore(), clock = createSimulatedClock(1_000_000), extra: object = {}) {
  const system = await createActorSystem({ name: 't', entities: { r: reminder }, store, clock, logger: quietLogger(), ...extra });
  return { system, store, clock };
}

describe('durable timers', () => {
  it('timers - a delayed transition fires while the entity is live and is journaled', async () => {
    const { system, clock } = await boot();
    const ref = system.entity('r', 'a');
    await ref.send({ type: 'ARM' });
    clock.advance(60_000);
    const s = await ref.waitFor((st) => st.context.fired === 1, { timeoutMs: 1_000 });
    expect(s.value).toBe('idle');
    const journal: string[] = [];
    for await (const e of ref.journal()) journal.push(e.event.type);
    expect(journal).toEqual(['ARM', 'xstate.after.60000.reminder.waiting']);
    await system.stop();
  });

  it('timers - a passivated entity is woken when its timer is due, without any send', async () => {
    const { system, clock } = await boot();
    const ref = system.entity('r', 'a');
    await ref.send({ type: 'ARM' });
    expect(await ref.passivate()).toBe(true);
    expect(system.stats().pendingWakeups).toBe(1);
    clock.advance(59_000);
    await settle();
    expect(ref.isLive()).toBe(false);
    clock.advance(1_000);
    await settle();
    await settle();
    expect(ref.isLive()).toBe(true);
    expect((await ref.snapshot()).context.fired).toBe(1);
    await system.stop();
  });

  it('timers - after a restart, an overdue timer fires once at activation, and never again', async () => {
    const store = memoryStore();
    const clock = createSimulatedClock(1_000_000);
    const first = await boot(store, clock);
    await first.system.entity('r', 'a').send({ type: 'ARM' });
    await first.system.stop();
    clock.advance(120_000); // the system is down when the deadline passes
    await store.open();
    const second = await boot(store, clock);
    await settle();
    await settle();
    const ref = second.system.entity('r', 'a');
    expect((await ref.waitFor((s) => s.context.fired === 1, { timeoutMs: 1_000 })).value).toBe('idle');
    await second.system.stop();
    clock.advance(120_000);
    await store.open();
    const third = await boot(store, clock);
    await settle();
    expect((await third.system.entity('r', 'a').snapshot()).context.fired).toBe(1);
    await third.system.stop();
  });

  it('timers - re-armed at the original deadline, not restarted', async () => {
    const store = memoryStore();
    const clock = createSimulatedClock(1_000_000);
    const first = await boot(store, clock);
    await first.system.entity('r', 'a').send({ type: 'ARM' });
    clock.advance(40_000);
    await first.system.stop();
    await store.open();
    const second = await boot(store, clock);
    const ref = second.system.entity('r', 'a');
    await ref.snapshot();
    clock.advance(19_999);
    await settle();
    expect((await ref.snapshot()).context.fired).toBe(0);
    clock.advance(1);
    expect((await ref.waitFor((s) => s.context.fired === 1, { timeoutMs: 1_000 })).value).toBe('idle');
    await second.system.stop();
  });

  it("timers - timerResume 'restart' restarts the full delay after a restore", async () => {
    const store = memoryStore();
    const clock = createSimulatedClock(1_000_000);
    const first = await boot(store, clock, { timerResume: 'restart' });
    await first.system.entity('r', 'a').send({ type: 'ARM' });
    clock.advance(40_000);
    await first.system.stop();
    await store.open();
    const second = await boot(store, clock, { timerResume: 'restart' });
    const ref = second.system.entity('r', 'a');
    await ref.snapshot();
    clock.advance(59_000);
    await settle();
    expect((await ref.snapshot()).context.fired).toBe(0);
    clock.advance(1_000);
    expect((await ref.waitFor((s) => s.context.fired === 1, { timeoutMs: 1_000 })).context.fired).toBe(1);
    await second.system.stop();
  });

  it("timers - passivation within one run keeps the deadline even with timerResume 'restart'", async () => {
    // Regression: idle passivation used to restart the delay each time, so
    // an idle entity's timer was postponed forever.
    const { system, clock } = await boot(memoryStore(), createSimulatedClock(1_000_000), { timerResume: 'restart', passivateAfterMs: 1_000 });
    const ref = system.entity('r', 'a');
    await ref.send({ type: 'ARM' });
    for (let t = 0; t < 60; t++) {
      clock.advance(1_000);
      await settle();
    }
    expect(system.stats().passivations).toBeGreaterThan(0);
    expect((await ref.waitFor((s) => s.context.fired === 1, { timeoutMs: 1_000 })).value).toBe('idle');
    await system.stop();
  });

  it('timers - an overdue timer fires before the send that activates the entity', async () => {
    // The timer was due first; applying the send first would differ from
    // what plain XState did without the restart in between.
    const store = memoryStore();
    const clock = createSimulatedClock(1_000_000);
    const first = await boot(store, clock);
    await first.system.entity('r', 'a').send({ type: 'ARM' });
    await first.system.stop();
    clock.advance(61_000);
    await store.open();
    const second = await boot(store, clock);
    // CANCEL only matters in 'waiting'; after the timer it is unhandled.
    const r = await second.system.entity('r', 'a').send({ type: 'CANCEL' });
    expect(r).toMatchObject({ value: 'idle', changed: false, context: { fired: 1 } });
    const types: string[] = [];
    for await (const e of second.system.entity('r', 'a').journal()) types.push(e.event.type);
    expect(types).toEqual(['ARM', 'xstate.after.60000.reminder.waiting']);
    await second.system.stop();
  });

  it('timers - a cancelled timer (state left) does not fire after restore', async () => {
    const store = memoryStore();
    const clock = createSimulatedClock(1_000_000);
    const first = await boot(store, clock);
    const ref1 = first.system.entity('r', 'a');
    await ref1.send({ type: 'ARM' });
    await ref1.send({ type: 'CANCEL' });
    await first.system.stop();
    await store.open();
    const second = await boot(store, clock);
    expect(second.system.stats().pendingWakeups).toBe(0);
    const ref = second.system.entity('r', 'a');
    await ref.snapshot();
    clock.advance(120_000);
    await settle();
    expect((await ref.snapshot()).context.fired).toBe(0);
    await second.system.stop();
  });

  it('timers - timers in parallel regions resume independently', async () => {
    const store = memoryStore();
    const clock = createSimulatedClock(1_000_000);
    const first = await boot(store, clock);
    await first.system.entity('r', 'a').send({ type: 'ARM_NESTED' });
    clock.advance(1_000);
    await settle();
    expect((await first.system.entity('r', 'a').snapshot()).value).toEqual({ outer: { left: 'l2', right: 'r1' } });
    await first.system.stop();
    await store.open();
    const second = await boot(store, clock);
    const ref = second.system.entity('r', 'a');
    clock.advance(4_000);
    const s = await ref.waitFor((st) => st.context.log.length > 0, { timeoutMs: 1_000 });
    expect(s.value).toEqual({ outer: { left: 'l2', right: 'r2' } });
    expect(s.context.log).toEqual(['right']);
    await second.system.stop();
  });
});
