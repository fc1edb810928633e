/**
 * Durable workflow timers (issue 6, part 2): `ctx.sleep` and the timeout of
 * `ctx.events.waitFor` go through XState's scheduler, so the engine's
 * durable-timer index persists them with their deadlines and re-arms them
 * on activation. Driven by a simulated clock, across passivation and
 * across restarts of the system on LMDB.
 */
import { afterAll, describe, expect, it } from 'vitest';

import { createActionRegistry, defineWorkflow } from '../../src/index.js';
import {
  boot,
  EffectLog,
  journalTypes,
  lmdbDir,
  settle,
  until,
} from './fixtures.js';

const DAY = 86_400_000;
const dirs: { cleanup(): void }[] = [];
afterAll(() => dirs.forEach((d) => d.cleanup()));

function approvalFlow() {
  const effects = new EffectLog();
  const actions = createActionRegistry().register('remind', {
    run: (p: { to: string }, actx) => {
      effects.record('remind', actx.idempotencyKey, p, actx.attempt);
      return 'sent';
    },
  });
  const workflow = defineWorkflow(
    'approval',
    async (ctx) => {
      ctx.setState('waiting_for_approval');
      const ev = await ctx.events.waitFor('APPROVED', { timeoutMs: DAY });
      if (!ev) {
        ctx.setState('reminded');
        await ctx.actions.remind({ to: 'owner' });
        return { approved: false };
      }
      return { approved: true, by: ev.by };
    },
    { actions },
  );
  return { effects, workflow };
}

describe('workflow timers', () => {
  it('timers - ctx.sleep fires at its deadline, not before, and is journaled', async () => {
    const workflow = defineWorkflow('nap', async (ctx) => {
      ctx.setState('sleeping');
      await ctx.sleep(60_000);
      return ctx.now();
    });
    const { system, clock } = await boot({ entities: { nap: workflow } });
    const ref = system.entity('nap', 'n');
    await ref.send({ type: 'GO' });
    await ref.waitFor((s) => s.value === 'sleeping');
    await settle();
    clock.advance(59_999);
    await settle();
    expect((await ref.snapshot()).status).toBe('active');
    clock.advance(1);
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toBe(1_060_000);
    expect(
      (await journalTypes(ref)).filter((t) => t === 'xstate.workflow.timer'),
    ).toHaveLength(1);
    await system.stop();
  });

  it('timers - a passivated workflow is woken by its timer without any send', async () => {
    const workflow = defineWorkflow('nap', async (ctx) => {
      await ctx.sleep(30_000);
      ctx.setState('awake');
      return 'rested';
    });
    const { system, clock } = await boot({ entities: { nap: workflow } });
    const ref = system.entity('nap', 'p');
    await ref.send({ type: 'GO' });
    await until(
      async () => (await ref.passivate()) && !ref.isLive(),
      'passivation',
    );
    expect(system.stats().pendingWakeups).toBe(1);
    clock.advance(30_000);
    await until(() => ref.isLive(), 'the wake-up');
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toBe('rested');
    await system.stop();
  });

  it('timers - a waitFor timeout due while the system was down fires once after restart; the reminder runs once', async () => {
    const dir = lmdbDir();
    dirs.push(dir);
    const { effects, workflow } = approvalFlow();
    const first = await boot({
      entities: { approval: workflow },
      store: dir.open(),
    });
    await first.system.entity('approval', 'inv-1').send({ type: 'SUBMITTED' });
    await first.system
      .entity('approval', 'inv-1')
      .waitFor((s) => s.value === 'waiting_for_approval');
    await settle();
    await first.system.stop();
    first.clock.advance(2 * DAY); // down when the day passes

    const second = await boot({
      entities: { approval: workflow },
      store: dir.open(),
      clock: first.clock,
    });
    const ref = second.system.entity('approval', 'inv-1');
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toEqual({ approved: false });
    expect(done.value).toBe('reminded');
    expect(effects.count('remind')).toBe(1);
    expect(
      (await journalTypes(ref)).filter((t) => t === 'xstate.workflow.timer'),
    ).toHaveLength(1);
    await second.system.stop();
    // Once more from the store: nothing left to fire.
    const third = await boot({
      entities: { approval: workflow },
      store: dir.open(),
      clock: first.clock,
    });
    third.clock.advance(3 * DAY);
    await settle();
    expect(third.system.stats().pendingWakeups).toBe(0);
    expect(effects.count('remind')).toBe(1);
    await third.system.stop();
  });

  it('timers - an event before the timeout resolves the wait and cancels its timer durably', async () => {
    const dir = lmdbDir();
    dirs.push(dir);
    const { effects, workflow } = approvalFlow();
    const first = await boot({
      entities: { approval: workflow },
      store: dir.open(),
    });
    const ref = first.system.entity('approval', 'inv-2');
    await ref.send({ type: 'SUBMITTED' });
    await ref.waitFor((s) => s.value === 'waiting_for_approval');
    first.clock.advance(DAY / 2);
    await ref.send({ type: 'APPROVED', by: 'bob' });
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toEqual({ approved: true, by: 'bob' });
    await first.system.stop();
    const second = await boot({
      entities: { approval: workflow },
      store: dir.open(),
      clock: first.clock,
    });
    expect(second.system.stats().pendingWakeups).toBe(0);
    second.clock.advance(2 * DAY);
    await settle();
    expect(effects.count('remind')).toBe(0);
    await second.system.stop();
  });

  it('timers - a sleep longer than one timer delay (90 days) neither fires early nor overflows, across passivation', async () => {
    const workflow = defineWorkflow('long', async (ctx) => {
      const from = ctx.now();
      await ctx.sleep(90 * DAY);
      return (ctx.now() - from) / DAY;
    });
    const { system, clock } = await boot({ entities: { long: workflow } });
    const ref = system.entity('long', 'l');
    await ref.send({ type: 'GO' });
    await settle();
    await ref.passivate();
    // Week by week to one ms before day 90: links fire, the entity wakes and
    // sleeps on, and the workflow stays asleep.
    for (let day = 0; day + 7 < 90; day += 7) {
      clock.advance(7 * DAY);
      await settle();
    }
    clock.advance(90 * DAY - 12 * 7 * DAY - 1);
    await settle();
    expect((await ref.snapshot()).status).toBe('active');
    clock.advance(1);
    await settle();
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toBe(90);
    expect(
      (await journalTypes(ref)).filter((t) => t === 'xstate.workflow.timer'),
    ).toHaveLength(4);
    await system.stop();
  });
});
