/**
 * The action registry (issue 6, parts 3 and 7): params validated before
 * anything runs, retries with backoff and per-attempt timeouts on the
 * system's (simulated) clock, typed errors thrown into the workflow where
 * it can catch them, and idempotency keys stable across attempts.
 */
import { describe, expect, it } from 'vitest';

import {
  ConfigError,
  createActionRegistry,
  defineWorkflow,
  WorkflowError,
  type StandardSchemaV1,
  type WorkflowEvent,
} from '../../src/index.js';
import { boot, EffectLog, journalTypes, settle, until } from './fixtures.js';

/** What a workflow's single call ended with: its result, or its error's code, message and details. */
function callOnce(name: string, params: unknown) {
  return defineWorkflow('call', async (ctx) => {
    try {
      return {
        ok: true,
        result: await (
          ctx.actions as Record<string, (p: unknown) => Promise<unknown>>
        )[name]!(params),
      };
    } catch (err) {
      const e = err as WorkflowError;
      return {
        ok: false,
        code: e.code,
        message: e.message,
        details: e.details ?? null,
        isWorkflowError: e instanceof WorkflowError,
      };
    }
  });
}

/** A Standard Schema validator for `{ amount: positive number }`, as zod or valibot would give. */
const amountSchema: StandardSchemaV1<
  { amount: number },
  { amount: number; cents: number }
> = {
  '~standard': {
    version: 1,
    vendor: 'test',
    validate(value) {
      const amount = (value as { amount?: unknown } | null)?.amount;
      if (typeof amount !== 'number' || amount <= 0)
        return {
          issues: [{ message: 'must be a positive number', path: ['amount'] }],
        };
      return { value: { amount, cents: Math.round(amount * 100) } };
    },
  },
};

describe('action registry', () => {
  it('actions - JSON schema params: an invalid call is refused with ACTION_PARAMS_INVALID listing every field, and never runs', async () => {
    const effects = new EffectLog();
    const actions = createActionRegistry().register('email', {
      params: {
        type: 'object',
        properties: {
          to: { type: 'string', format: undefined as never, minLength: 3 },
          template: { enum: ['reminder', 'receipt'] },
        },
        required: ['to', 'template'],
        additionalProperties: false,
      },
      run: (p: { to: string }, actx) =>
        effects.record('email', actx.idempotencyKey, p, actx.attempt),
    });
    const { system } = await boot({
      entities: { call: callOnce('email', { to: 'x', cc: 'y' }) },
      actions,
    });
    const ref = system.entity('call', 'c-1');
    await ref.send({ type: 'GO' });
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toMatchObject({
      ok: false,
      code: 'ACTION_PARAMS_INVALID',
      isWorkflowError: true,
    });
    const out = done.output as {
      message: string;
      details: { issues: { path: string }[] };
    };
    expect(out.details.issues.map((i) => i.path).sort()).toEqual([
      '/cc',
      '/template',
      '/to',
    ]);
    expect(out.message).toContain('/to');
    expect(effects.runs).toEqual([]);
    // A refused call takes no step: nothing but the start and the end is journaled.
    expect(await journalTypes(ref)).toEqual(['GO', 'xstate.workflow.return']);
    await system.stop();
  });

  it('actions - a Standard Schema validator: issues become ACTION_PARAMS_INVALID, a valid call runs with the validated value', async () => {
    const effects = new EffectLog();
    const actions = createActionRegistry().register('charge', {
      params: amountSchema,
      run: (p, actx) => {
        effects.record('charge', actx.idempotencyKey, p, actx.attempt);
        return { charged: p.cents };
      },
    });
    const { system } = await boot({
      entities: {
        bad: callOnce('charge', { amount: -1 }),
        good: callOnce('charge', { amount: 1.25 }),
      },
      actions,
    });
    await system.entity('bad', 'b').send({ type: 'GO' });
    await system.entity('good', 'g').send({ type: 'GO' });
    const bad = await system
      .entity('bad', 'b')
      .waitFor((s) => s.status === 'done');
    const good = await system
      .entity('good', 'g')
      .waitFor((s) => s.status === 'done');
    expect(bad.output).toMatchObject({
      ok: false,
      code: 'ACTION_PARAMS_INVALID',
      details: {
        issues: [{ path: '/amount', message: 'must be a positive number' }],
      },
    });
    expect(good.output).toEqual({ ok: true, result: { charged: 125 } });
    expect(effects.runs.map((r) => r.params)).toEqual([
      { amount: 1.25, cents: 125 },
    ]);
    await system.stop();
  });

  it('actions - an unknown action is ACTION_UNKNOWN naming the registered ones', async () => {
    const actions = createActionRegistry().register('known', { run: () => 1 });
    const { system } = await boot({
      entities: { call: callOnce('nope', {}) },
      actions,
    });
    await system.entity('call', 'u').send({ type: 'GO' });
    const done = await system
      .entity('call', 'u')
      .waitFor((s) => s.status === 'done');
    expect(done.output).toMatchObject({
      ok: false,
      code: 'ACTION_UNKNOWN',
      details: { action: 'nope', registered: ['known'] },
    });
    await system.stop();
  });

  it('actions - params that cannot be journaled are refused before anything runs', async () => {
    const actions = createActionRegistry().register('any', { run: () => 1 });
    const { system } = await boot({
      entities: { call: callOnce('any', { when: new Date(0) }) },
      actions,
    });
    await system.entity('call', 'p').send({ type: 'GO' });
    const done = await system
      .entity('call', 'p')
      .waitFor((s) => s.status === 'done');
    expect(done.output).toMatchObject({
      ok: false,
      code: 'ACTION_PARAMS_INVALID',
      details: { issues: [{ path: '/when' }] },
    });
    await system.stop();
  });

  it('actions - a failing action is retried with backoff on the system clock, with the same idempotency key each attempt', async () => {
    const effects = new EffectLog();
    const actions = createActionRegistry().register('flaky', {
      retry: {
        attemptsMax: 4,
        backoff: { initialMs: 1_000, multiplier: 3, maxMs: 5_000 },
      },
      run: (p: { n: number }, actx) => {
        effects.record('flaky', actx.idempotencyKey, p, actx.attempt);
        if (actx.attempt < 4) throw new Error(`transient ${actx.attempt}`);
        return p.n + 1;
      },
    });
    const { system, clock } = await boot({
      entities: { call: callOnce('flaky', { n: 1 }) },
      actions,
    });
    const ref = system.entity('call', 'r');
    await ref.send({ type: 'GO' });
    await until(() => effects.count('flaky') === 1, 'attempt 1');
    // Backoff 1 s, then 3 s, then 9 s capped at 5 s: nothing runs early.
    clock.advance(999);
    await settle();
    expect(effects.count('flaky')).toBe(1);
    clock.advance(1);
    await until(() => effects.count('flaky') === 2, 'attempt 2');
    clock.advance(3_000);
    await until(() => effects.count('flaky') === 3, 'attempt 3');
    clock.advance(4_999);
    await settle();
    expect(effects.count('flaky')).toBe(3);
    clock.advance(1);
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toEqual({ ok: true, result: 2 });
    expect(effects.runs.map((r) => [r.attempt, r.key])).toEqual([
      [1, 'call/r#0'],
      [2, 'call/r#0'],
      [3, 'call/r#0'],
      [4, 'call/r#0'],
    ]);
    // Only the outcome is journaled, not the attempts.
    expect(await journalTypes(ref)).toEqual([
      'GO',
      'xstate.workflow.steps',
      'xstate.done.actor.workflow.action.0',
      'xstate.workflow.return',
    ]);
    await system.stop();
  });

  it('actions - an action that throws on every attempt becomes ACTION_FAILED in the workflow, which can catch it and go on', async () => {
    const effects = new EffectLog();
    const actions = createActionRegistry()
      .register('broken', {
        retry: { attemptsMax: 2, backoff: 10 },
        run: (_p: null, actx) => {
          effects.record('broken', actx.idempotencyKey, null, actx.attempt);
          throw new TypeError('the service is down');
        },
      })
      .register('fallback', { run: () => 'fallback used' });
    const workflow = defineWorkflow(
      'resilient',
      async (ctx) => {
        try {
          await ctx.actions.broken(null);
          return 'unreachable';
        } catch (err) {
          const e = err as WorkflowError;
          ctx.data.set('failure', {
            code: e.code,
            cause: (e.cause as Error).message,
            attempts: e.details?.attempts,
          });
          return ctx.actions.fallback(undefined);
        }
      },
      { actions },
    );
    const { system, clock } = await boot({ entities: { resilient: workflow } });
    const ref = system.entity('resilient', 'f');
    await ref.send({ type: 'GO' });
    await until(() => effects.count('broken') === 1, 'attempt 1');
    clock.advance(10);
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toBe('fallback used');
    expect(done.context).toMatchObject({
      data: {
        failure: {
          code: 'ACTION_FAILED',
          cause: 'the service is down',
          attempts: 2,
        },
      },
    });
    expect(effects.count('broken')).toBe(2);
    await system.stop();
  });

  it('actions - isRetryable false stops at the first failure', async () => {
    const effects = new EffectLog();
    const actions = createActionRegistry().register('strict', {
      retry: { attemptsMax: 5 },
      isRetryable: (err) => !(err instanceof RangeError),
      run: (_p: null, actx) => {
        effects.record('strict', actx.idempotencyKey, null, actx.attempt);
        throw new RangeError('amount out of range');
      },
    });
    const { system } = await boot({
      entities: { call: callOnce('strict', null) },
      actions,
    });
    await system.entity('call', 's').send({ type: 'GO' });
    const done = await system
      .entity('call', 's')
      .waitFor((s) => s.status === 'done');
    expect(done.output).toMatchObject({
      ok: false,
      code: 'ACTION_FAILED',
      details: {
        attempts: 1,
        cause: { name: 'RangeError', message: 'amount out of range' },
      },
    });
    expect(effects.count('strict')).toBe(1);
    await system.stop();
  });

  it('actions - an action that hangs times out per attempt (ACTION_TIMEOUT) and its signal aborts', async () => {
    const effects = new EffectLog();
    const aborted: unknown[] = [];
    const actions = createActionRegistry().register('hang', {
      timeoutMs: 2_000,
      retry: { attemptsMax: 2, backoff: 500 },
      run: (_p: null, actx) => {
        effects.record('hang', actx.idempotencyKey, null, actx.attempt);
        return new Promise((_resolve, reject) =>
          actx.signal.addEventListener('abort', () => {
            aborted.push((actx.signal.reason as WorkflowError).code);
            reject(new Error('aborted'));
          }),
        );
      },
    });
    const { system, clock } = await boot({
      entities: { call: callOnce('hang', null) },
      actions,
    });
    const ref = system.entity('call', 'h');
    await ref.send({ type: 'GO' });
    await until(() => effects.count('hang') === 1, 'attempt 1');
    clock.advance(2_000);
    await settle();
    clock.advance(500);
    await until(() => effects.count('hang') === 2, 'attempt 2');
    clock.advance(2_000);
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toMatchObject({
      ok: false,
      code: 'ACTION_TIMEOUT',
      details: { attempts: 2, timeoutMs: 2_000 },
    });
    expect(aborted).toEqual(['ACTION_TIMEOUT', 'ACTION_TIMEOUT']);
    await system.stop();
  });

  it('actions - a result that cannot be journaled is ACTION_FAILED, not a corrupted journal', async () => {
    const actions = createActionRegistry().register('dated', {
      run: () => ({ at: new Date(0) }),
    });
    const { system } = await boot({
      entities: { call: callOnce('dated', null) },
      actions,
    });
    await system.entity('call', 'd').send({ type: 'GO' });
    const done = await system
      .entity('call', 'd')
      .waitFor((s) => s.status === 'done');
    expect(done.output).toMatchObject({
      ok: false,
      code: 'ACTION_FAILED',
      details: { path: '$.at' },
    });
    await system.stop();
  });

  it("actions - isolation 'tenant' needs a tenant (TENANT_INVALID without one) and puts it in the idempotency key", async () => {
    const effects = new EffectLog();
    const actions = createActionRegistry().register('tenantMail', {
      isolation: 'tenant',
      run: (_p: null, actx) => {
        effects.record(
          'tenantMail',
          actx.idempotencyKey,
          actx.tenant,
          actx.attempt,
        );
        return actx.tenant;
      },
    });
    const { system } = await boot({
      entities: { call: callOnce('tenantMail', null) },
      actions,
    });
    await system.entity('call', 'no-tenant').send({ type: 'GO' });
    await system
      .entity('call', 'with-tenant')
      .send({ type: 'GO', tenant: 'acme' });
    const none = await system
      .entity('call', 'no-tenant')
      .waitFor((s) => s.status === 'done');
    const acme = await system
      .entity('call', 'with-tenant')
      .waitFor((s) => s.status === 'done');
    expect(none.output).toMatchObject({ ok: false, code: 'TENANT_INVALID' });
    expect(acme.output).toEqual({ ok: true, result: 'acme' });
    expect(effects.runs.map((r) => r.key)).toEqual(['acme/call/with-tenant#0']);
    await system.stop();
  });

  it('actions - registration refuses duplicates, bad schemas and bad policies at once', () => {
    const base = createActionRegistry().register('a', { run: () => 1 });
    expect(() =>
      (base as ReturnType<typeof createActionRegistry>).register('a', {
        run: () => 2,
      }),
    ).toThrow(ConfigError);
    expect(() =>
      createActionRegistry().register('b', {
        params: { type: 'nonsense' },
        run: () => 1,
      }),
    ).toThrow(/not a valid JSON schema/);
    expect(() =>
      createActionRegistry().register('c', {
        retry: { attemptsMax: 0 },
        run: () => 1,
      }),
    ).toThrow(/attemptsMax/);
    expect(() =>
      createActionRegistry().register('d', { timeoutMs: -5, run: () => 1 }),
    ).toThrow(/timeoutMs/);
    expect(() =>
      createActionRegistry().register('then', { run: () => 1 }),
    ).toThrow(ConfigError);
    expect(() => createActionRegistry().register('e', {} as never)).toThrow(
      /"run" function/,
    );
    // Registries are values: registering on one does not change another.
    const more = base.register('b', { run: () => 2 });
    expect(base.names()).toEqual(['a']);
    expect(more.names()).toEqual(['a', 'b']);
  });

  it('actions - a workflow-level registry is used when the system has none, and typed input flows from the trigger', async () => {
    const actions = createActionRegistry().register('greet', {
      run: (p: { name: string }) => `hello ${p.name}`,
    });
    const workflow = defineWorkflow(
      'greeter',
      async (ctx) => ctx.actions.greet({ name: ctx.input.who }),
      { actions, input: (t: WorkflowEvent) => ({ who: String(t.who) }) },
    );
    const { system } = await boot({ entities: { greeter: workflow } });
    await system.entity('greeter', 'g').send({ type: 'HI', who: 'ann' });
    expect(
      (await system.entity('greeter', 'g').waitFor((s) => s.status === 'done'))
        .output,
    ).toBe('hello ann');
    await system.stop();
  });
});
