/**
 * A workflow is XState actor logic (issue 6: "without a second engine"):
 * `createActor` runs it without any system, and XState's own pure
 * `transition()` rebuilds a workflow's state from its journal, which is how
 * the engine recovers every entity.
 */
import { describe, expect, it } from 'vitest';
import {
  createActor,
  initialTransition,
  transition,
  type AnyActorLogic,
} from 'xstate';

import {
  createActionRegistry,
  defineWorkflow,
  type WorkflowSnapshot,
} from '../../src/index.js';
import { boot, settle } from './fixtures.js';

const actions = createActionRegistry().register('add', {
  run: (p: { a: number; b: number }) => p.a + p.b,
});
const adder = defineWorkflow(
  'adder',
  async (ctx) => {
    ctx.setState('adding');
    const sum = await ctx.actions.add({ a: 2, b: 3 });
    ctx.data.set('sum', sum);
    const more = await ctx.events.waitFor('MORE');
    ctx.setState('adding again');
    return ctx.actions.add({ a: sum, b: more.n as number });
  },
  { actions },
);

describe('workflow logic', () => {
  it('logic - createActor runs a workflow without a system', async () => {
    const actor = createActor(adder, {
      input: { entityId: 'solo', entityType: 'adder' },
    });
    const done = new Promise<unknown>((resolve) =>
      actor.subscribe({ complete: () => resolve(actor.getSnapshot().output) }),
    );
    actor.start();
    actor.send({ type: 'GO' });
    await settle();
    expect((actor.getSnapshot() as unknown as WorkflowSnapshot).value).toBe(
      'adding',
    );
    actor.send({ type: 'MORE', n: 10 });
    expect(await done).toBe(15);
  });

  it("logic - XState's pure transition() rebuilds the live state from the journal, running nothing", async () => {
    let runs = 0;
    const counted = createActionRegistry().register('add', {
      run: (p: { a: number; b: number }) => {
        runs++;
        return p.a + p.b;
      },
    });
    const { system } = await boot({ entities: { adder }, actions: counted });
    const ref = system.entity('adder', 'a-1');
    await ref.send({ type: 'GO' });
    await ref.waitFor((s) => s.context.data?.sum === 5);
    await ref.send({ type: 'MORE', n: 1 });
    const live = await ref.waitFor((s) => s.status === 'done');
    expect(runs).toBe(2);
    const logic = adder as unknown as AnyActorLogic;
    let [snap] = initialTransition(logic, {
      entityId: 'a-1',
      entityType: 'adder',
    });
    for await (const entry of ref.journal())
      [snap] = transition(logic, snap, entry.event);
    const replayed = snap as unknown as WorkflowSnapshot;
    expect({
      value: replayed.value,
      context: replayed.context,
      status: replayed.status,
      output: replayed.output,
    }).toEqual({
      value: live.value,
      context: live.context,
      status: live.status,
      output: live.output,
    });
    expect(runs).toBe(2);
    await system.stop();
  });
});
