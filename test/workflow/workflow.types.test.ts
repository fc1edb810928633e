/**
 * Type-level checks (run by `tsc`; the runtime part only keeps vitest
 * happy): `ctx.actions` is typed from the registry, `ctx.input` from the
 * `input` option, and wrong calls do not compile.
 */
import { expect, expectTypeOf, it } from 'vitest';

import {
  createActionRegistry,
  defineWorkflow,
  type StandardSchemaV1,
  type WorkflowEvent,
} from '../../src/index.js';

const amount: StandardSchemaV1<
  { amount: number },
  { amount: number; cents: number }
> = {
  '~standard': {
    version: 1,
    vendor: 'test',
    validate: (value) => ({
      value: { amount: (value as { amount: number }).amount, cents: 0 },
    }),
  },
};

const actions = createActionRegistry()
  .register('sendEmail', {
    run: async (p: { to: string; template: 'reminder' | 'receipt' }) => ({
      messageId: p.to,
    }),
  })
  .register('charge', { params: amount, run: (p) => ({ charged: p.cents }) });

it('types - ctx.actions and ctx.input are inferred from the registry and the input option', () => {
  const workflow = defineWorkflow(
    'typed',
    async (ctx) => {
      expectTypeOf(ctx.actions.sendEmail)
        .parameter(0)
        .toEqualTypeOf<{ to: string; template: 'reminder' | 'receipt' }>();
      expectTypeOf(ctx.actions.sendEmail).returns.toEqualTypeOf<
        Promise<{ messageId: string }>
      >();
      // A Standard Schema types the call by its input, the run by its output.
      expectTypeOf(ctx.actions.charge)
        .parameter(0)
        .toEqualTypeOf<{ amount: number }>();
      expectTypeOf(ctx.actions.charge).returns.toEqualTypeOf<
        Promise<{ charged: number }>
      >();
      expectTypeOf(ctx.input).toEqualTypeOf<{ owner: string }>();
      // @ts-expect-error: not a registered action
      void ctx.actions.refund;
      // @ts-expect-error: wrong params
      void ctx.actions.sendEmail({ to: 'a', template: 'other' });
      const ev = await ctx.events.waitFor('APPROVED', { timeoutMs: 1_000 });
      expectTypeOf(ev).toEqualTypeOf<WorkflowEvent<'APPROVED'> | undefined>();
      const sure = await ctx.events.waitFor(['A', 'B']);
      expectTypeOf(sure.type).toEqualTypeOf<'A' | 'B'>();
      return { done: true as const };
    },
    { actions, input: (t: WorkflowEvent) => ({ owner: String(t.owner) }) },
  );
  expectTypeOf(workflow.name).toEqualTypeOf<string>();
  // @ts-expect-error: each name is registered once (and refused at runtime too)
  expect(() => actions.register('charge', { run: () => 1 })).toThrow(
    /registered already/,
  );
});
