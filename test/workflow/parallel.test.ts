/**
 * Parallel steps with dependencies (issue 6, part 4): `ctx.parallel` and
 * `ctx.dag`. Branches finish in an order the test controls; replay after
 * passivation must give each branch its own results back (never another
 * branch's), run no effect twice, and a DAG must take the same decisions
 * (skips, halts, undos) it took live.
 */
import { describe, expect, it } from 'vitest';

import {
  createActionRegistry,
  defineWorkflow,
  type WorkflowContext,
  type WorkflowDagResult,
  type WorkflowDagStep,
} from '../../src/index.js';
import { boot, EffectLog, settle, until } from './fixtures.js';

/** An action whose calls finish when the test says, by param `tag`. */
function latchedActions() {
  const effects = new EffectLog();
  const latches = new Map<string, () => void>();
  const actions = createActionRegistry()
    .register('work', {
      run: async (p: { tag: string; hold?: boolean }, actx) => {
        effects.record('work', actx.idempotencyKey, p, actx.attempt);
        if (p.hold) await new Promise<void>((r) => latches.set(p.tag, r));
        return `done:${p.tag}`;
      },
    })
    .register('fail', {
      retry: { attemptsMax: 1 },
      run: (p: { tag: string }, actx) => {
        effects.record('fail', actx.idempotencyKey, p, actx.attempt);
        throw new Error(`failed:${p.tag}`);
      },
    })
    .register('undo', {
      run: (p: { tag: string }, actx) => {
        effects.record('undo', actx.idempotencyKey, p, actx.attempt);
        return true;
      },
    });
  const release = async (tag: string): Promise<void> => {
    await until(() => latches.has(tag), `${tag} to start`);
    latches.get(tag)!();
  };
  return { effects, actions, release };
}

describe('parallel steps', () => {
  it('parallel - branches that finish out of order replay with their own results, each effect once', async () => {
    const { effects, actions, release } = latchedActions();
    const workflow = defineWorkflow(
      'par',
      async (ctx) => {
        const [a, b] = await ctx.parallel([
          async () => {
            const a1 = await ctx.actions.work({ tag: 'a1', hold: true });
            return [a1, await ctx.actions.work({ tag: `a2<-${a1}` })];
          },
          async () => {
            const b1 = await ctx.actions.work({ tag: 'b1' });
            return [b1, await ctx.actions.work({ tag: `b2<-${b1}` })];
          },
        ] as const);
        ctx.setState('joined');
        await ctx.events.waitFor('FINISH');
        return { a, b };
      },
      { actions },
    );
    const { system } = await boot({ entities: { par: workflow } });
    const ref = system.entity('par', 'p');
    await ref.send({ type: 'GO' });
    await until(() => effects.count('work') === 3, 'b1, b2 and a1 to start');
    await release('a1');
    await ref.waitFor((s) => s.value === 'joined');
    expect(await ref.passivate()).toBe(true);
    await ref.send({ type: 'FINISH' });
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toEqual({
      a: ['done:a1', 'done:a2<-done:a1'],
      b: ['done:b1', 'done:b2<-done:b1'],
    });
    expect(effects.count('work')).toBe(4);
    // Keys name the branch and the position in it, not the finishing order.
    expect(effects.runs.map((r) => r.key).sort()).toEqual([
      'par/p#0:0.0',
      'par/p#0:0.1',
      'par/p#0:1.0',
      'par/p#0:1.1',
    ]);
    await system.stop();
  });

  it('parallel - concurrent sequences outside ctx.parallel are caught on replay (WORKFLOW_DIVERGED), not mixed up', async () => {
    const { effects, actions, release } = latchedActions();
    const workflow = defineWorkflow(
      'mixed',
      async (ctx) => {
        const branch = async (tag: string, hold: boolean) => {
          const first = await ctx.actions.work({ tag, hold });
          return ctx.actions.work({ tag: `${tag}-after-${first}` });
        };
        const both = await Promise.all([branch('x', true), branch('y', false)]);
        await ctx.events.waitFor('FINISH');
        return both;
      },
      { actions },
    );
    const { system } = await boot({
      entities: { mixed: workflow },
      restart: { attemptsMax: 1 },
    });
    const ref = system.entity('mixed', 'm');
    await ref.send({ type: 'GO' });
    await until(() => effects.count('work') === 3, 'x, y and y-after to start');
    await release('x');
    await until(() => effects.count('work') === 4, 'x-after to run');
    await settle();
    expect(await ref.passivate()).toBe(true);
    await ref.send({ type: 'FINISH' }).catch(() => undefined);
    await until(
      async () =>
        (await ref.snapshot().catch((err: unknown) => err)) instanceof Error,
      'the entity to be parked',
    );
    const [letter] = await system.deadLetters();
    expect(letter).toMatchObject({ code: 'WORKFLOW_DIVERGED' });
    expect(letter!.message).toContain('other params');
    await system.stop();
  });

  it('parallel - a failed branch rejects with the first failure by position, after every branch finished', async () => {
    const { effects, actions } = latchedActions();
    const workflow = defineWorkflow(
      'parfail',
      async (ctx) => {
        try {
          await ctx.parallel([
            () => ctx.actions.work({ tag: 'ok' }),
            () => ctx.actions.fail({ tag: 'first' }),
            () => ctx.actions.fail({ tag: 'second' }),
          ]);
          return 'unreachable';
        } catch (err) {
          return (err as Error & { details: { cause: { message: string } } })
            .details.cause.message;
        }
      },
      { actions },
    );
    const { system } = await boot({ entities: { parfail: workflow } });
    await system.entity('parfail', 'f').send({ type: 'GO' });
    const done = await system
      .entity('parfail', 'f')
      .waitFor((s) => s.status === 'done');
    expect(done.output).toBe('failed:first');
    expect(effects.count('work') + effects.count('fail')).toBe(3);
    await system.stop();
  });
});

describe('dag steps', () => {
  type Ctx = WorkflowContext<
    NonNullable<ReturnType<typeof latchedActions>['actions']['~actions']>
  >;

  function dagWorkflow(
    name: string,
    steps: (ctx: Ctx) => WorkflowDagStep[],
    actions: ReturnType<typeof latchedActions>['actions'],
    concurrencyMax?: number,
  ) {
    return defineWorkflow(
      name,
      async (ctx) => {
        const result = await ctx.dag(
          steps(ctx),
          concurrencyMax === undefined ? {} : { concurrencyMax },
        );
        ctx.setState('dag done');
        await ctx.events.waitFor('FINISH');
        return result;
      },
      { actions },
    );
  }

  it('dag - a diamond passes results along its edges and replays without running anything again', async () => {
    const { effects, actions, release } = latchedActions();
    const workflow = dagWorkflow(
      'diamond',
      (ctx) => [
        { id: 'fetch', run: () => ctx.actions.work({ tag: 'fetch' }) },
        {
          id: 'resize',
          dependsOn: ['fetch'],
          run: (r) =>
            ctx.actions.work({ tag: `resize(${String(r.fetch)})`, hold: true }),
        },
        {
          id: 'scan',
          dependsOn: ['fetch'],
          run: (r) => ctx.actions.work({ tag: `scan(${String(r.fetch)})` }),
        },
        {
          id: 'publish',
          dependsOn: ['resize', 'scan'],
          run: (r) =>
            ctx.actions.work({
              tag: `publish(${String(r.resize)},${String(r.scan)})`,
            }),
        },
      ],
      actions,
    );
    const { system } = await boot({ entities: { diamond: workflow } });
    const ref = system.entity('diamond', 'd');
    await ref.send({ type: 'GO' });
    await until(
      () => effects.count('work') === 3,
      'fetch, resize and scan to start',
    );
    await release('resize(done:fetch)');
    await ref.waitFor((s) => s.value === 'dag done');
    await ref.passivate();
    await ref.send({ type: 'FINISH' });
    const done = (await ref.waitFor((s) => s.status === 'done'))
      .output as WorkflowDagResult;
    expect(done.outcome).toBe('completed');
    expect(done.completed).toEqual(['fetch', 'scan', 'resize', 'publish']);
    expect(done.results.publish).toBe(
      'done:publish(done:resize(done:fetch),done:scan(done:fetch))',
    );
    expect(effects.count('work')).toBe(4);
    await system.stop();
  });

  it("dag - 'continue' skips the failed step's dependents; 'retry' retries after a durable backoff", async () => {
    const { effects, actions: base } = latchedActions();
    // Fails the first time it ever runs, then succeeds: a transient fault.
    const actions = base.register('flaky', {
      retry: { attemptsMax: 1 },
      run: (p: { tag: string }, actx) => {
        effects.record('flaky', actx.idempotencyKey, p, actx.attempt);
        if (effects.count('flaky') === 1) throw new Error('transient');
        return p.tag;
      },
    });
    const workflow = defineWorkflow(
      'strategies',
      async (ctx) => {
        const result = await ctx.dag([
          {
            id: 'bad',
            onError: 'continue',
            run: () => ctx.actions.fail({ tag: 'bad' }),
          },
          {
            id: 'afterBad',
            dependsOn: ['bad'],
            run: () => ctx.actions.work({ tag: 'never' }),
          },
          {
            id: 'flaky',
            onError: 'retry',
            retry: { attemptsMax: 3, backoffMs: 5_000 },
            run: () => ctx.actions.flaky({ tag: 'flaky' }),
          },
        ]);
        ctx.setState('dag done');
        await ctx.events.waitFor('FINISH');
        return result;
      },
      { actions },
    );
    const { system, clock } = await boot({
      entities: { strategies: workflow },
    });
    const ref = system.entity('strategies', 's');
    await ref.send({ type: 'GO' });
    await until(
      () => effects.count('fail') === 1 && effects.count('flaky') === 1,
      'the two failures',
    );
    await settle();
    expect(await ref.passivate()).toBe(true); // the retry waits on a durable timer
    clock.advance(5_000);
    await ref.waitFor((s) => s.value === 'dag done');
    await ref.send({ type: 'FINISH' });
    const done = (await ref.waitFor((s) => s.status === 'done'))
      .output as WorkflowDagResult;
    expect(done.outcome).toBe('completedWithFailures');
    expect(done.steps.map((s) => [s.id, s.status, s.attempts])).toEqual([
      ['bad', 'failed', 1],
      ['afterBad', 'skipped', 0],
      ['flaky', 'succeeded', 2],
    ]);
    expect(done.steps[0]!.error).toMatchObject({ code: 'ACTION_FAILED' });
    expect(effects.count('work')).toBe(0);
    expect(effects.count('flaky')).toBe(2);
    await system.stop();
  });

  it("dag - 'compensate' halts and undoes the completed steps in reverse order of completion", async () => {
    const { effects, actions, release } = latchedActions();
    const workflow = dagWorkflow(
      'saga',
      (ctx) => [
        {
          id: 'reserve',
          run: () => ctx.actions.work({ tag: 'reserve' }),
          compensate: () => ctx.actions.undo({ tag: 'reserve' }),
        },
        {
          id: 'charge',
          dependsOn: ['reserve'],
          run: () => ctx.actions.work({ tag: 'charge', hold: true }),
          compensate: () => ctx.actions.undo({ tag: 'charge' }),
        },
        {
          id: 'ship',
          dependsOn: ['reserve'],
          onError: 'compensate',
          run: () => ctx.actions.fail({ tag: 'ship' }),
        },
        {
          id: 'notify',
          dependsOn: ['charge', 'ship'],
          run: () => ctx.actions.work({ tag: 'notify' }),
        },
      ],
      actions,
    );
    const { system } = await boot({ entities: { saga: workflow } });
    const ref = system.entity('saga', 'g');
    await ref.send({ type: 'GO' });
    await until(() => effects.count('fail') === 1, 'ship to fail');
    await settle();
    await release('charge'); // running when the DAG halted: it finishes, then is undone
    await ref.waitFor((s) => s.value === 'dag done');
    await ref.passivate();
    await ref.send({ type: 'FINISH' });
    const done = (await ref.waitFor((s) => s.status === 'done'))
      .output as WorkflowDagResult;
    expect(done.outcome).toBe('compensated');
    expect(done.completed).toEqual(['reserve', 'charge']);
    expect(done.undone).toEqual(['charge', 'reserve']);
    expect(done.steps.find((s) => s.id === 'notify')!.status).toBe('skipped');
    expect(
      effects.runs
        .filter((r) => r.name === 'undo')
        .map((r) => (r.params as { tag: string }).tag),
    ).toEqual(['charge', 'reserve']);
    await system.stop();
  });

  it("dag - 'stop' (the default) lets running steps finish, starts nothing more, and ends failed", async () => {
    const { effects, actions } = latchedActions();
    const workflow = dagWorkflow(
      'stopper',
      (ctx) => [
        { id: 'a', run: () => ctx.actions.fail({ tag: 'a' }) },
        { id: 'b', run: () => ctx.actions.work({ tag: 'b' }) },
        {
          id: 'c',
          dependsOn: ['b'],
          run: () => ctx.actions.work({ tag: 'c' }),
        },
      ],
      actions,
      1,
    );
    const { system } = await boot({ entities: { stopper: workflow } });
    const ref = system.entity('stopper', 'x');
    await ref.send({ type: 'GO' });
    await ref.waitFor((s) => s.value === 'dag done');
    await ref.send({ type: 'FINISH' });
    const done = (await ref.waitFor((s) => s.status === 'done'))
      .output as WorkflowDagResult;
    expect(done.outcome).toBe('failed');
    expect(done.started).toEqual(['a']);
    expect(done.steps.map((s) => s.status)).toEqual([
      'failed',
      'skipped',
      'skipped',
    ]);
    expect(effects.count('work')).toBe(0);
    await system.stop();
  });

  it('dag - a cycle or a missing dependency is a DefinitionError the workflow can catch, before any step runs', async () => {
    const workflow = defineWorkflow('cyclic', async (ctx) => {
      const errors: string[] = [];
      for (const steps of [
        [
          { id: 'a', dependsOn: ['b'], run: () => Promise.resolve(1) },
          { id: 'b', dependsOn: ['a'], run: () => Promise.resolve(2) },
        ],
        [{ id: 'a', dependsOn: ['ghost'], run: () => Promise.resolve(1) }],
        [{ id: 'bad id', run: () => Promise.resolve(1) }],
      ]) {
        await ctx
          .dag(steps)
          .catch((err: { code: string }) => errors.push(err.code));
      }
      return errors;
    });
    const { system } = await boot({ entities: { cyclic: workflow } });
    await system.entity('cyclic', 'c').send({ type: 'GO' });
    const done = await system
      .entity('cyclic', 'c')
      .waitFor((s) => s.status === 'done');
    expect(done.output).toEqual([
      'DAG_CYCLE',
      'DAG_DEPENDENCY_MISSING',
      'CONFIG_INVALID',
    ]);
    await system.stop();
  });
});
