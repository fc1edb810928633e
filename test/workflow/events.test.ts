/**
 * Events into a workflow (issue 6, parts 2 and 7): an event nobody waits
 * for is kept in the workflow's inbox and taken by a later wait, never
 * dropped; a full inbox refuses the send; predicates wait like types do;
 * nobody can forge the workflow's internal events.
 */
import { describe, expect, it } from 'vitest';

import { defineWorkflow, type WorkflowEvent } from '../../src/index.js';
import { boot, journalTypes, settle } from './fixtures.js';

describe('workflow events', () => {
  it('events - an event that arrives before the wait is buffered and taken by it, in arrival order', async () => {
    const workflow = defineWorkflow('collect', async (ctx) => {
      ctx.setState('busy');
      await ctx.sleep(1_000);
      const first = await ctx.events.waitFor('ITEM');
      const second = await ctx.events.waitFor(['ITEM', 'OTHER']);
      const third = await ctx.events.waitFor('ITEM');
      return [first.n, second.n, third.n];
    });
    const { system, clock } = await boot({ entities: { collect: workflow } });
    const ref = system.entity('collect', 'c');
    await ref.send({ type: 'GO' });
    await ref.waitFor((s) => s.value === 'busy');
    // Nobody waits yet: all three are kept.
    for (const n of [1, 2, 3])
      expect((await ref.send({ type: 'ITEM', n })).changed).toBe(true);
    await ref.passivate();
    clock.advance(1_000);
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toEqual([1, 2, 3]);
    await system.stop();
  });

  it('events - a predicate wait takes the first event it accepts, live and after replay', async () => {
    const workflow = defineWorkflow('big', async (ctx) => {
      ctx.setState('waiting');
      const big = await ctx.events.waitFor(
        (e: WorkflowEvent) => e.type === 'BID' && (e.amount as number) > 100,
      );
      const next = await ctx.events.waitFor('BID');
      return { big: big.amount, next: next.amount };
    });
    const { system } = await boot({ entities: { big: workflow } });
    const ref = system.entity('big', 'b');
    await ref.send({ type: 'GO' });
    await ref.waitFor((s) => s.value === 'waiting');
    await ref.send({ type: 'BID', amount: 50 });
    await settle();
    // The predicate wait is registered again by the replay after this.
    expect(await ref.passivate()).toBe(true);
    await ref.send({ type: 'BID', amount: 500 });
    const done = await ref.waitFor((s) => s.status === 'done');
    // 50 stayed in the inbox, 500 matched the predicate, and the type wait took 50 (the oldest BID).
    expect(done.output).toEqual({ big: 500, next: 50 });
    expect(await journalTypes(ref)).toContain('xstate.workflow.take');
    await system.stop();
  });

  it('events - a predicate that throws ends the wait with its error, which the workflow can catch', async () => {
    const workflow = defineWorkflow('picky', async (ctx) => {
      try {
        await ctx.events.waitFor(() => {
          throw new RangeError('predicate broke');
        });
        return 'matched';
      } catch (err) {
        return `caught ${(err as Error).name}: ${(err as Error).message}`;
      }
    });
    const { system } = await boot({ entities: { picky: workflow } });
    const ref = system.entity('picky', 'p');
    await ref.send({ type: 'GO' });
    await ref.send({ type: 'ANY' });
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toBe('caught RangeError: predicate broke');
    await system.stop();
  });

  it('events - a full inbox refuses the send with EVENT_REJECTED and keeps what it holds', async () => {
    const workflow = defineWorkflow(
      'tiny',
      async (ctx) => {
        await ctx.events.waitFor('NEVER');
        return 'never';
      },
      { inboxMax: 2 },
    );
    const { system } = await boot({ entities: { tiny: workflow } });
    const ref = system.entity('tiny', 't');
    await ref.send({ type: 'GO' });
    await ref.send({ type: 'A' });
    await ref.send({ type: 'B' });
    await expect(ref.send({ type: 'C' })).rejects.toMatchObject({
      code: 'EVENT_REJECTED',
    });
    const types = await journalTypes(ref);
    expect(types.filter((t) => !t.startsWith('xstate.'))).toEqual([
      'GO',
      'A',
      'B',
    ]);
    await system.stop();
  });

  it('events - nobody can send the internal workflow events (EVENT_INVALID), so no step result can be forged', async () => {
    const workflow = defineWorkflow('safe', async (ctx) =>
      ctx.events.waitFor('OK'),
    );
    const { system } = await boot({ entities: { safe: workflow } });
    const ref = system.entity('safe', 's');
    await ref.send({ type: 'GO' });
    for (const type of [
      'xstate.workflow.steps',
      'xstate.workflow.return',
      'xstate.done.actor.workflow.action.0',
    ]) {
      await expect(
        ref.send({ type, output: { ok: true, result: 1 } }),
      ).rejects.toMatchObject({ code: 'EVENT_INVALID' });
    }
    expect((await ref.snapshot()).status).toBe('active');
    await system.stop();
  });

  it('events - a finished workflow refuses further events with ENTITY_STOPPED; a duplicate event id is answered, not applied', async () => {
    const workflow = defineWorkflow('quick', async (ctx) => {
      const ev = await ctx.events.waitFor('DONE');
      return ev.result;
    });
    const { system } = await boot({ entities: { quick: workflow } });
    const ref = system.entity('quick', 'q');
    await ref.send({ type: 'GO' }, { eventId: 'e-1' });
    await ref.send({ type: 'DONE', result: 42 }, { eventId: 'e-2' });
    expect((await ref.waitFor((s) => s.status === 'done')).output).toBe(42);
    expect(
      (await ref.send({ type: 'DONE', result: 1 }, { eventId: 'e-2' }))
        .duplicate,
    ).toBe(true);
    await expect(ref.send({ type: 'DONE', result: 1 })).rejects.toMatchObject({
      code: 'ENTITY_STOPPED',
    });
    await system.stop();
  });

  it('events - setState and data are visible in snapshots and survive time travel (stateAt)', async () => {
    const workflow = defineWorkflow('states', async (ctx) => {
      ctx.setState('one');
      ctx.data.set('k', { v: 1 });
      await ctx.events.waitFor('NEXT');
      ctx.setState('two');
      ctx.data.delete('k');
      ctx.data.set('j', 2);
      await ctx.events.waitFor('NEXT');
      return ctx.data.toObject();
    });
    const { system } = await boot({ entities: { states: workflow } });
    const ref = system.entity('states', 's');
    await ref.send({ type: 'GO' });
    const one = await ref.waitFor((s) => s.value === 'one');
    expect(one.context).toMatchObject({ data: { k: { v: 1 } } });
    await ref.send({ type: 'NEXT' });
    const two = await ref.waitFor((s) => s.value === 'two');
    expect(two.context).toMatchObject({ data: { j: 2 } });
    await ref.send({ type: 'NEXT' });
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toEqual({ j: 2 });
    expect((await ref.stateAt(one.seq)).value).toBe('one');
    expect((await ref.stateAt(one.seq)).context).toMatchObject({
      data: { k: { v: 1 } },
    });
    await system.stop();
  });
});
