/**
 * Human tasks (issue 6, part 6): a workflow creates a task with templated
 * title and description and waits for it; people list, read and complete
 * tasks, whose form data is checked against the task's schema; tasks and
 * their completions survive restarts on LMDB; bad input gets typed errors.
 */
import { describe, expect, it } from 'vitest';

import {
  defineWorkflow,
  isShardchartError,
  type ActorSystem,
  type TaskSpec,
} from '../../src/index.js';
import { boot, journalTypes, lmdbDir, until } from './fixtures.js';

const approvalForm = {
  type: 'object',
  required: ['approved'],
  properties: {
    approved: { type: 'boolean' },
    note: { type: 'string', maxLength: 20 },
  },
  additionalProperties: false,
} as const;

/** Creates an approval task for the trigger's invoice and waits for it. */
const approval = defineWorkflow('approval', async (ctx) => {
  const invoiceId = ctx.trigger.invoiceId as string;
  const task = await ctx.tasks.create({
    title: 'Approve invoice ${contextData.invoiceId}',
    description:
      'Amount: ${contextData.amount} EUR, from ${contextData.vendor.name}',
    assignee: (ctx.trigger.assignee as string | undefined) ?? 'maria',
    form: approvalForm,
    context: { invoiceId, amount: 120, vendor: { name: 'Bolt & Sons' } },
  });
  ctx.data.set('taskId', task.id);
  ctx.setState('waiting_for_approval');
  const done = await ctx.tasks.waitFor(task);
  ctx.setState('decided');
  return { data: done.data, by: done.by ?? null };
});

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

async function started(system: ActorSystem, id: string, trigger: object) {
  const ref = system.entity('approval', id);
  await ref.send({ type: 'INVOICE_SUBMITTED', ...trigger });
  const s = await ref.waitFor((st) => st.value === 'waiting_for_approval');
  return {
    ref,
    taskId: (s.context as { data: { taskId: string } }).data.taskId,
  };
}

describe('human tasks', () => {
  it('tasks - lifecycle across an LMDB restart: created, listed, refused with bad form data, completed once, the workflow resumed', async () => {
    const dir = lmdbDir();
    try {
      const first = await boot({ entities: { approval }, store: dir.open() });
      const clock = first.clock;
      let system = first.system;
      const { taskId } = await started(system, 'inv-1', {
        tenant: 'acme',
        invoiceId: 'inv-1',
      });
      const summary = {
        id: taskId,
        tenant: 'acme',
        assignee: 'maria',
        title: 'Approve invoice inv-1',
        description: 'Amount: 120 EUR, from Bolt &amp; Sons',
        workflow: { type: 'approval', id: 'inv-1' },
      };
      expect(await system.tasks.list({ tenant: 'acme' })).toMatchObject([
        summary,
      ]);
      await system.stop();

      ({ system } = await boot({
        entities: { approval },
        store: dir.open(),
        clock,
      }));
      // Every filter finds it after the restart, and only the right ones.
      for (const filter of [
        {},
        { tenant: 'acme' },
        { assignee: 'maria' },
        { tenant: 'acme', assignee: 'maria' },
      ])
        expect(
          await system.tasks.list(filter),
          JSON.stringify(filter),
        ).toMatchObject([summary]);
      for (const filter of [
        { tenant: 'globex' },
        { assignee: 'bob' },
        { tenant: 'acme', assignee: 'bob' },
      ])
        expect(await system.tasks.list(filter)).toEqual([]);
      expect(await system.tasks.get(taskId)).toMatchObject({
        ...summary,
        status: 'open',
        form: approvalForm,
        context: { invoiceId: 'inv-1', amount: 120 },
        workflow: { name: 'approval', type: 'approval', id: 'inv-1', step: 0 },
      });

      const invalid = await rejection(
        system.tasks.complete(taskId, {
          approved: 'yes',
          note: 'x'.repeat(30),
          extra: 1,
        }),
      );
      expect(isShardchartError(invalid, 'PAYLOAD_INVALID')).toBe(true);
      const issues = (invalid as { details: { issues: { path: string }[] } })
        .details.issues;
      expect(issues.map((i) => i.path).sort()).toEqual([
        '/approved',
        '/extra',
        '/note',
      ]);
      expect((invalid as Error).message).toContain('/approved');
      expect((await system.tasks.get(taskId)).status).toBe('open');

      const completed = await system.tasks.complete(
        taskId,
        { approved: true, note: 'ok' },
        { by: 'maria' },
      );
      expect(completed).toMatchObject({
        status: 'completed',
        data: { approved: true, note: 'ok' },
        completedBy: 'maria',
        delivery: 'delivered',
      });
      const done = await system
        .entity('approval', 'inv-1')
        .waitFor((s) => s.status === 'done');
      expect(done.output).toEqual({
        data: { approved: true, note: 'ok' },
        by: 'maria',
      });
      expect(await system.tasks.list()).toEqual([]);

      const again = await rejection(
        system.tasks.complete(taskId, { approved: false }),
      );
      expect(again).toMatchObject({
        code: 'TASK_ALREADY_COMPLETED',
        details: { taskId, completedBy: 'maria' },
      });
      expect(await rejection(system.tasks.get('task_nope'))).toMatchObject({
        code: 'TASK_NOT_FOUND',
      });
      expect(
        await rejection(system.tasks.complete('task_nope', {})),
      ).toMatchObject({ code: 'TASK_NOT_FOUND' });
      await system.stop();

      // The completion is durable, and the task's history is its journal.
      ({ system } = await boot({
        entities: { approval },
        store: dir.open(),
        clock,
      }));
      expect(await system.tasks.get(taskId)).toMatchObject({
        status: 'completed',
        data: { approved: true, note: 'ok' },
      });
      const created = await system.entity('shardchart.task', taskId).stateAt(1);
      expect(created.value).toBe('open');
      await system.stop();
    } finally {
      dir.cleanup();
    }
  });

  it('tasks - titles and descriptions are filled from the context, HTML-escaped; a missing field is TEMPLATE_FIELD_MISSING and records nothing', async () => {
    const titled = defineWorkflow('titled', async (ctx) => {
      const spec = ctx.trigger.spec as TaskSpec;
      try {
        const task = await ctx.tasks.create(spec);
        return { title: task.title, description: task.description ?? null };
      } catch (err) {
        const e = err as { code: string; details?: unknown; message: string };
        return { code: e.code, details: e.details ?? null, message: e.message };
      }
    });
    const { system } = await boot({ entities: { titled } });
    const run = async (id: string, spec: Partial<TaskSpec>) => {
      const ref = system.entity('titled', id);
      await ref.send({
        type: 'GO',
        spec: { assignee: 'ann', form: { type: 'object' }, ...spec },
      });
      return {
        ref,
        output: (await ref.waitFor((s) => s.status === 'done')).output,
      };
    };
    const escaped = await run('esc', {
      title: '${contextData.who} <b>wants</b> ${contextData.n}',
      description: '${contextData.list} / ${contextData.none} / $${literal}',
      context: {
        who: '<script>alert("x")</script> & \'co\'',
        n: 3,
        list: [1, 'a'],
        none: null,
      },
    });
    expect(escaped.output).toEqual({
      // The template's own markup stays; only the values are escaped.
      title:
        '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39; <b>wants</b> 3',
      description: '[1,&quot;a&quot;] /  / ${literal}',
    });
    const missing = await run('missing', {
      title: 'Approve ${contextData.invoice.number}',
      context: { invoice: { id: 1 } },
    });
    expect(missing.output).toMatchObject({
      code: 'TEMPLATE_FIELD_MISSING',
      details: {
        field: 'contextData.invoice.number',
        missing: 'contextData.invoice.number',
        template: 'title',
      },
    });
    expect((missing.output as { message: string }).message).toContain(
      'invoice.number',
    );
    // Nothing inherited counts as a field.
    const inherited = await run('inherited', {
      title: '${contextData.constructor}',
      context: {},
    });
    expect(inherited.output).toMatchObject({ code: 'TEMPLATE_FIELD_MISSING' });
    const malformed = await run('malformed', {
      title: 'Approve ${contextData.x',
      context: { x: 1 },
    });
    expect(malformed.output).toMatchObject({
      code: 'ACTION_PARAMS_INVALID',
      details: { issues: [{ path: '/title' }] },
    });
    const otherRoot = await run('root', {
      title: '${context.x}',
      context: { x: 1 },
    });
    expect(otherRoot.output).toMatchObject({ code: 'ACTION_PARAMS_INVALID' });
    // A refused create took no step: the journal holds no action call.
    for (const ref of [missing.ref, malformed.ref])
      expect(
        (await journalTypes(ref)).filter((t) => t === 'xstate.workflow.steps'),
      ).toHaveLength(0);
    expect(await system.tasks.list()).toMatchObject([
      { title: expect.stringContaining('wants') },
    ]);
    await system.stop();
  });

  it('tasks - bad specs are ACTION_PARAMS_INVALID naming the field: no assignee, a schema Ajv cannot compile, a non-object context', async () => {
    const bad = defineWorkflow('bad', async (ctx) => {
      try {
        await ctx.tasks.create(ctx.trigger.spec as TaskSpec);
        return 'created';
      } catch (err) {
        const e = err as {
          code: string;
          details: { issues: { path: string }[] };
        };
        return `${e.code} ${e.details.issues[0]!.path}`;
      }
    });
    const { system } = await boot({ entities: { bad } });
    const cases: [Partial<TaskSpec>, string][] = [
      [{ title: 't', form: {} }, 'ACTION_PARAMS_INVALID /assignee'],
      [{ title: '', assignee: 'a', form: {} }, 'ACTION_PARAMS_INVALID /title'],
      [
        { title: 't', assignee: 'a', form: { type: 'nonsense' } },
        'ACTION_PARAMS_INVALID /form',
      ],
      [
        { title: 't', assignee: 'a', form: {}, context: [] as never },
        'ACTION_PARAMS_INVALID /context',
      ],
    ];
    for (const [i, [spec, expected]] of cases.entries()) {
      const ref = system.entity('bad', `b${i}`);
      await ref.send({ type: 'GO', spec });
      expect((await ref.waitFor((s) => s.status === 'done')).output).toBe(
        expected,
      );
    }
    await system.stop();
  });

  it('tasks - two completions at once: one wins, the other is TASK_ALREADY_COMPLETED; a completion before the wait is kept for it', async () => {
    const early = defineWorkflow('early', async (ctx) => {
      const task = await ctx.tasks.create({
        title: 'Check',
        assignee: 'bo',
        form: { type: 'object', properties: { n: { type: 'number' } } },
      });
      ctx.data.set('taskId', task.id);
      ctx.setState('sleeping');
      await ctx.sleep(1_000);
      return (await ctx.tasks.waitFor(task)).data;
    });
    const { system, clock } = await boot({ entities: { early } });
    const ref = system.entity('early', 'e');
    await ref.send({ type: 'GO' });
    const s = await ref.waitFor((st) => st.value === 'sleeping');
    const taskId = (s.context as { data: { taskId: string } }).data.taskId;
    const results = await Promise.allSettled([
      system.tasks.complete(taskId, { n: 1 }),
      system.tasks.complete(taskId, { n: 2 }),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({
      code: 'TASK_ALREADY_COMPLETED',
    });
    const winner = (won[0] as PromiseFulfilledResult<{ data: unknown }>).value
      .data;
    // The completion arrived while the workflow slept; its wait takes it.
    clock.advance(1_000);
    expect((await ref.waitFor((st) => st.status === 'done')).output).toEqual(
      winner,
    );
    await system.stop();
  });

  it('tasks - waitFor with a timeout resolves undefined (a reminder can go out) and the task stays open for a second wait', async () => {
    const reminding = defineWorkflow('reminding', async (ctx) => {
      const task = await ctx.tasks.create({
        title: 'Sign',
        assignee: 'cy',
        form: true,
      });
      ctx.setState('waiting');
      const first = await ctx.tasks.waitFor(task, { timeoutMs: 86_400_000 });
      if (first !== undefined) return 'on time';
      ctx.setState('reminded');
      const second = await ctx.tasks.waitFor(task.id);
      return `late: ${JSON.stringify(second.data)}`;
    });
    const { system, clock } = await boot({ entities: { reminding } });
    const ref = system.entity('reminding', 'r');
    await ref.send({ type: 'GO', tenant: 'acme' });
    await ref.waitFor((s) => s.value === 'waiting');
    clock.advance(86_400_000);
    await ref.waitFor((s) => s.value === 'reminded');
    const [task] = await system.tasks.list({ tenant: 'acme', assignee: 'cy' });
    await system.tasks.complete(task!.id, 'signed');
    expect((await ref.waitFor((s) => s.status === 'done')).output).toBe(
      'late: "signed"',
    );
    await system.stop();
  });

  it('tasks - a completion its workflow cannot take yet is retried durably, across a restart, until it is delivered', async () => {
    // Goal: the completion's delivery outlives failures and restarts.
    // Method: the workflow's inbox (1 entry) is full, so the delivery is
    // refused (EVENT_REJECTED) and the task waits to retry on its timer;
    // the system restarts; the workflow then makes room and waits for the
    // task; the retry timer delivers it.
    const blocked = defineWorkflow(
      'blocked',
      async (ctx) => {
        const task = await ctx.tasks.create({
          title: 'Unblock',
          assignee: 'dee',
          form: { type: 'object' },
        });
        ctx.data.set('taskId', task.id);
        ctx.setState('blocked');
        await ctx.events.waitFor('UNBLOCK');
        return (await ctx.tasks.waitFor(task)).data;
      },
      { inboxMax: 1 },
    );
    const dir = lmdbDir();
    try {
      const first = await boot({ entities: { blocked }, store: dir.open() });
      const clock = first.clock;
      let system = first.system;
      const ref = system.entity('blocked', 'b');
      await ref.send({ type: 'GO' });
      const s = await ref.waitFor((st) => st.value === 'blocked');
      const taskId = (s.context as { data: { taskId: string } }).data.taskId;
      await ref.send({ type: 'JUNK' });
      const completed = await system.tasks.complete(taskId, { ok: 1 });
      expect(completed).toMatchObject({
        status: 'completed',
        delivery: 'pending',
      });
      expect(await system.tasks.list()).toEqual([]);
      await system.stop();

      ({ system } = await boot({
        entities: { blocked },
        store: dir.open(),
        clock,
      }));
      await system.entity('blocked', 'b').send({ type: 'UNBLOCK' });
      clock.advance(1_000);
      const done = await system
        .entity('blocked', 'b')
        .waitFor((st) => st.status === 'done');
      expect(done.output).toEqual({ ok: 1 });
      await until(
        async () => (await system.tasks.get(taskId)).delivery === 'delivered',
        'the task to record its delivery',
      );
      await system.stop();
    } finally {
      dir.cleanup();
    }
  });

  it('tasks - the tasks of a workflow without a tenant are listed by assignee and in the full list', async () => {
    const { system } = await boot({ entities: { approval } });
    // No tenant: listed under every tenant-less filter.
    await started(system, 'plain', { invoiceId: 'p-1', assignee: 'zed' });
    const [task] = await system.tasks.list({ assignee: 'zed' });
    expect(task).toMatchObject({
      assignee: 'zed',
      title: 'Approve invoice p-1',
    });
    expect(task!.tenant).toBeUndefined();
    expect(await system.tasks.list()).toHaveLength(1);
    expect(await rejection(system.tasks.list({ tenant: '' }))).toMatchObject({
      code: 'TENANT_INVALID',
    });
    await system.stop();
  });
});
