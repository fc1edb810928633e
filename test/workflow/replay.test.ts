/**
 * Deterministic replay (issue 6, part 1). A workflow function re-runs from
 * its first line on every activation; these tests count how often each
 * effect ran and check that recorded steps (action results, time,
 * randomness, data, state names) replay instead of repeating, after
 * passivation and after a restart of the whole system on LMDB.
 */
import { afterAll, describe, expect, it } from 'vitest';

import { memoryStore } from '../../adapters/memory/index.js';
import {
  createActionRegistry,
  createSimulatedClock,
  defineWorkflow,
  type WorkflowEvent,
} from '../../src/index.js';
import { memoryLogger } from '../system/fixtures.js';
import {
  boot,
  EffectLog,
  journalTypes,
  lmdbDir,
  settle,
  until,
} from './fixtures.js';

const dirs: { cleanup(): void }[] = [];
afterAll(() => dirs.forEach((d) => d.cleanup()));

/** An order workflow: reserve, wait for payment (1 min), sleep, ship. */
function orderFlow() {
  const effects = new EffectLog();
  const starts = { n: 0 };
  const actions = createActionRegistry()
    .register('reserve', {
      run: (p: { sku: string }, actx) => {
        effects.record('reserve', actx.idempotencyKey, p, actx.attempt);
        return { id: `r-${p.sku}` };
      },
    })
    .register('cancel', {
      run: (p: { id: string }, actx) => {
        effects.record('cancel', actx.idempotencyKey, p, actx.attempt);
        return true;
      },
    })
    .register('ship', {
      run: (p: { id: string; amount: number }, actx) => {
        effects.record('ship', actx.idempotencyKey, p, actx.attempt);
        return { id: `s-${p.id}-${p.amount}` };
      },
    });
  const workflow = defineWorkflow(
    'order',
    async (ctx) => {
      starts.n++;
      ctx.logger.info('order started');
      ctx.setState('reserving');
      const r = await ctx.actions.reserve({ sku: ctx.input.sku });
      const stamp = ctx.now();
      const nonce = ctx.uuid();
      const dice = ctx.random();
      ctx.data.set('reservation', r.id);
      ctx.setState('awaiting_payment');
      const paid = await ctx.events.waitFor('PAID', { timeoutMs: 60_000 });
      if (!paid) {
        await ctx.actions.cancel({ id: r.id });
        ctx.setState('cancelled');
        return { status: 'cancelled', reservation: r.id, stamp, nonce, dice };
      }
      ctx.logger.info({ amount: paid.amount }, 'paid');
      await ctx.sleep(1_000);
      const ship = await ctx.actions.ship({
        id: r.id,
        amount: paid.amount as number,
      });
      ctx.setState('shipped');
      return {
        status: 'shipped',
        reservation: r.id,
        shipment: ship.id,
        stamp,
        nonce,
        dice,
      };
    },
    {
      actions,
      input: (t: WorkflowEvent) => t as { type: string; sku: string },
    },
  );
  return { effects, starts, actions, workflow };
}

describe('workflow replay', () => {
  it('replay - after passivation the function re-runs and no recorded effect repeats', async () => {
    const { effects, starts, workflow } = orderFlow();
    const { system, clock } = await boot({ entities: { order: workflow } });
    const ref = system.entity('order', 'o-1');
    await ref.send({ type: 'START', sku: 'ab' });
    const waiting = await ref.waitFor((s) => s.value === 'awaiting_payment');
    expect(waiting.context).toEqual({
      input: { type: 'START', sku: 'ab' },
      data: { reservation: 'r-ab' },
    });
    expect(await ref.passivate()).toBe(true);
    expect(ref.isLive()).toBe(false);

    await ref.send({ type: 'PAID', amount: 30 });
    await settle();
    clock.advance(1_000);
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(starts.n).toBe(2);
    expect(effects.count('reserve')).toBe(1);
    expect(effects.count('ship')).toBe(1);
    expect(effects.count('cancel')).toBe(0);
    expect(done.value).toBe('shipped');
    expect(done.output).toMatchObject({
      status: 'shipped',
      reservation: 'r-ab',
      shipment: 's-r-ab-30',
    });
    await system.stop();
  });

  it('replay - time, uuid and random values replay as recorded, not anew', async () => {
    const { workflow } = orderFlow();
    const { system, clock } = await boot({ entities: { order: workflow } });
    const ref = system.entity('order', 'o-2');
    await ref.send({ type: 'START', sku: 'x' });
    await ref.waitFor((s) => s.value === 'awaiting_payment');
    let recorded: { now?: unknown; uuid?: unknown; random?: unknown } = {};
    for await (const e of ref.journal()) {
      if (e.event.type !== 'xstate.workflow.steps') continue;
      for (const step of (
        e.event as unknown as { steps: { kind: string; value: unknown }[] }
      ).steps) {
        if (
          step.kind === 'now' ||
          step.kind === 'uuid' ||
          step.kind === 'random'
        )
          recorded = { ...recorded, [step.kind]: step.value };
      }
    }
    expect(recorded.now).toBe(1_000_000);
    clock.advance(5_000); // a live ctx.now() would see this
    await ref.passivate();
    await ref.send({ type: 'PAID', amount: 1 });
    await settle();
    clock.advance(1_000);
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toMatchObject({
      stamp: recorded.now,
      nonce: recorded.uuid,
      dice: recorded.random,
    });
    await system.stop();
  });

  it('replay - after a restart of the system on LMDB, the workflow resumes where its journal ends', async () => {
    const dir = lmdbDir();
    dirs.push(dir);
    const { effects, starts, workflow } = orderFlow();
    const first = await boot({
      entities: { order: workflow },
      store: dir.open(),
    });
    const ref1 = first.system.entity('order', 'o-3');
    await ref1.send({ type: 'START', sku: 'lm' });
    await ref1.waitFor((s) => s.value === 'awaiting_payment');
    await first.system.stop();

    const second = await boot({
      entities: { order: workflow },
      store: dir.open(),
      clock: first.clock,
    });
    const ref2 = second.system.entity('order', 'o-3');
    expect((await ref2.snapshot()).value).toBe('awaiting_payment');
    await ref2.send({ type: 'PAID', amount: 7 });
    await settle();
    second.clock.advance(1_000);
    const done = await ref2.waitFor((s) => s.status === 'done');
    expect(done.output).toMatchObject({ shipment: 's-r-lm-7' });
    expect(starts.n).toBe(2);
    expect(effects.count('reserve')).toBe(1);
    expect(effects.count('ship')).toBe(1);
    await second.system.stop();
  });

  it('replay - an action in flight when the system stops runs again after the restart, with the same key and params', async () => {
    const dir = lmdbDir();
    dirs.push(dir);
    const effects = new EffectLog();
    let release: (() => void) | undefined;
    const actions = createActionRegistry().register('slow', {
      run: async (p: { n: number }, actx) => {
        effects.record('slow', actx.idempotencyKey, p, actx.attempt);
        if (effects.count('slow') === 1)
          await new Promise<void>((r) => (release = r));
        return p.n * 2;
      },
    });
    const workflow = defineWorkflow(
      'slow',
      async (ctx) => ({ doubled: await ctx.actions.slow({ n: 21 }) }),
      { actions },
    );
    const first = await boot({
      entities: { slow: workflow },
      store: dir.open(),
    });
    const ref1 = first.system.entity('slow', 's-1');
    await ref1.send({ type: 'GO' });
    await until(() => release !== undefined, 'the action to start');
    // An action in flight keeps an unforced passivation away…
    expect(await ref1.passivate()).toBe(false);
    // …but stopping the system passivates with force: the call is abandoned.
    await first.system.stop();
    release!();

    const second = await boot({
      entities: { slow: workflow },
      store: dir.open(),
      clock: first.clock,
    });
    const ref2 = second.system.entity('slow', 's-1');
    const done = await ref2.waitFor((s) => s.status === 'done');
    expect(done.output).toEqual({ doubled: 42 });
    expect(effects.runs.map((r) => [r.key, r.params])).toEqual([
      ['slow/s-1#0', { n: 21 }],
      ['slow/s-1#0', { n: 21 }],
    ]);
    await second.system.stop();
  });

  it('replay - after a crash with an action in flight, the workflow wakes by itself at the action timeout and runs it again', async () => {
    const effects = new EffectLog();
    const actions = createActionRegistry().register('stuck', {
      timeoutMs: 30_000,
      run: (p: { n: number }, actx) => {
        effects.record('stuck', actx.idempotencyKey, p, actx.attempt);
        // The first process never answers: it is about to "crash".
        return effects.count('stuck') === 1
          ? new Promise<never>(() => undefined)
          : p.n;
      },
    });
    const workflow = defineWorkflow(
      'stuck',
      async (ctx) => ctx.actions.stuck({ n: 5 }),
      { actions },
    );
    const store = memoryStore();
    const crashed = await boot({ entities: { stuck: workflow }, store });
    await crashed.system.entity('stuck', 'k').send({ type: 'GO' });
    await until(() => effects.count('stuck') === 1, 'the first run');
    // The first system is abandoned as a crash would leave it: no stop, no
    // snapshot, its clock frozen. A new one opens the same store.
    const clock = createSimulatedClock(crashed.clock.now());
    const second = await boot({ entities: { stuck: workflow }, store, clock });
    expect(second.system.stats().pendingWakeups).toBe(1);
    clock.advance(29_999);
    await settle();
    expect(effects.count('stuck')).toBe(1);
    clock.advance(1);
    await until(
      () => effects.count('stuck') === 2,
      'the wake-up to run the action again',
    );
    const ref = second.system.entity('stuck', 'k');
    expect((await ref.waitFor((s) => s.status === 'done')).output).toBe(5);
    expect(effects.runs.map((r) => r.key)).toEqual(['stuck/k#0', 'stuck/k#0']);
    await second.system.stop();
  });

  it('replay - the logger says nothing for the lines a replay passes again', async () => {
    const { logger, lines } = memoryLogger('info');
    const { workflow } = orderFlow();
    const { system, clock } = await boot({
      entities: { order: workflow },
      logger,
    });
    const ref = system.entity('order', 'o-4');
    await ref.send({ type: 'START', sku: 'q', correlationId: 'corr-9' });
    await ref.waitFor((s) => s.value === 'awaiting_payment');
    await ref.passivate();
    await ref.send({ type: 'PAID', amount: 2 });
    await settle();
    clock.advance(1_000);
    await ref.waitFor((s) => s.status === 'done');
    const mine = lines.filter((l) => l.workflow === 'order');
    expect(mine.map((l) => l.msg)).toEqual(['order started', 'paid']);
    expect(mine[0]).toMatchObject({
      system: 'wf',
      entityType: 'order',
      entityId: 'o-4',
      correlationId: 'corr-9',
    });
    await system.stop();
  });

  it('replay - a changed function that takes another step fails with WORKFLOW_DIVERGED naming the step, and writes no step of its own', async () => {
    const dir = lmdbDir();
    dirs.push(dir);
    const { workflow, actions } = orderFlow();
    const first = await boot({
      entities: { order: workflow },
      store: dir.open(),
    });
    await first.system.entity('order', 'o-5').send({ type: 'START', sku: 'd' });
    await first.system
      .entity('order', 'o-5')
      .waitFor((s) => s.value === 'awaiting_payment');
    await first.system.stop();

    // Version 2 waits for the payment before reserving.
    const v2 = defineWorkflow(
      'order',
      async (ctx) => {
        ctx.setState('reserving');
        await ctx.events.waitFor('PAID');
        return ctx.actions.reserve({ sku: 'd' });
      },
      { actions },
    );
    const second = await boot({
      entities: { order: v2 },
      store: dir.open(),
      clock: first.clock,
      restart: { attemptsMax: 1 },
    });
    const ref = second.system.entity('order', 'o-5');
    const before = await journalTypes(ref);
    await ref.send({ type: 'PAID', amount: 1 }).catch(() => undefined);
    await until(
      async () =>
        (await ref.snapshot().catch((err: unknown) => err)) instanceof Error,
      'the entity to be parked',
    );
    await expect(ref.snapshot()).rejects.toMatchObject({
      code: 'ENTITY_FAILED',
    });
    const [letter] = await second.system.deadLetters();
    expect(letter).toMatchObject({
      code: 'WORKFLOW_DIVERGED',
      event: { type: 'xstate.workflow.throw' },
    });
    expect(letter!.message).toContain('at step 1');
    expect(
      (letter!.event as unknown as { error: { details: unknown } }).error
        .details,
    ).toMatchObject({
      step: '1',
      recorded: { kind: 'action', name: 'reserve' },
      called: { kind: 'wait', name: 'PAID' },
    });
    const after = await journalTypes(ref);
    expect(after.slice(0, before.length)).toEqual(before);
    expect(
      after.slice(before.length).filter((t) => t.startsWith('xstate.')),
    ).toEqual([]);
    await second.system.stop();
  });

  it('replay - a changed function that returns before its recorded steps end is a divergence too', async () => {
    const { workflow, actions } = orderFlow();
    const { system, store, clock } = await boot({
      entities: { order: workflow },
    });
    await system.entity('order', 'o-6').send({ type: 'START', sku: 'e' });
    await system
      .entity('order', 'o-6')
      .waitFor((s) => s.value === 'awaiting_payment');
    await system.stop();
    await store.open();
    const shorter = defineWorkflow(
      'order',
      async (ctx) => {
        ctx.setState('reserving');
        return ctx.actions.reserve({ sku: 'e' });
      },
      { actions },
    );
    const second = await boot({
      entities: { order: shorter },
      store,
      clock,
      restart: { attemptsMax: 1 },
    });
    const ref = second.system.entity('order', 'o-6');
    await until(
      async () =>
        (await ref.snapshot().catch((err: unknown) => err)) instanceof Error,
      'the entity to be parked',
    );
    const [letter] = await second.system.deadLetters();
    expect(letter).toMatchObject({ code: 'WORKFLOW_DIVERGED' });
    expect(letter!.message).toContain('returned after 2 steps');
    await second.system.stop();
  });

  it('replay - an uncaught throw fails the workflow; supervision restarts it by replay (no action repeats) and parks it', async () => {
    const effects = new EffectLog();
    const actions = createActionRegistry().register('once', {
      run: (_p: null, actx) => {
        effects.record('once', actx.idempotencyKey, null, actx.attempt);
        return 1;
      },
    });
    const starts = { n: 0 };
    const workflow = defineWorkflow(
      'boom',
      async (ctx) => {
        starts.n++;
        await ctx.actions.once(null);
        throw new Error('boom after the action');
      },
      { actions },
    );
    const { system, clock } = await boot({
      entities: { boom: workflow },
      restart: { attemptsMax: 3, backoffMs: 10 },
    });
    const ref = system.entity('boom', 'b-1');
    await ref.send({ type: 'GO' });
    await until(async () => {
      clock.advance(100);
      return (
        (await ref.snapshot().catch((err: unknown) => err)) instanceof Error
      );
    }, 'the entity to be parked');
    await expect(ref.snapshot()).rejects.toMatchObject({
      code: 'ENTITY_FAILED',
    });
    expect(starts.n).toBe(3);
    expect(effects.count('once')).toBe(1);
    const letters = await system.deadLetters();
    expect(letters.map((l) => [l.code, l.event.type])).toEqual([
      ['EVENT_FAILED', 'xstate.workflow.throw'],
      ['EVENT_FAILED', 'xstate.workflow.throw'],
      ['EVENT_FAILED', 'xstate.workflow.throw'],
    ]);
    expect(letters[0]!.message).toBe('boom after the action');
    await system.stop();
  });
});
