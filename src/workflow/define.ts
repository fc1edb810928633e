import { randomBytes, randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import type { PlainDataLimits } from '../codec/plain-data.js';
import { ConfigError } from '../errors.js';
import { defaults } from '../system/runtime.js';
import type { ActionMap, ActionRegistry } from './actions.js';
import {
  createWorkflowLogic,
  type WorkflowBinding,
  type WorkflowLogic,
  type WorkflowSpec,
} from './logic.js';
import {
  workflowDefaults,
  type RegisteredActions,
  type WorkflowContext,
  type WorkflowEvent,
  type WorkflowOptions,
} from './types.js';

/**
 * A workflow: XState actor logic running an async function. Register it as
 * an entity type like a machine; each entity is one instance, started by
 * its first event.
 */
export interface WorkflowDefinition<
  TActions extends ActionMap = ActionMap,
  TInput = unknown,
  TOutput = unknown,
> extends WorkflowLogic {
  readonly name: string;
  /**
   * The same workflow bound to another action registry or logger; the
   * system does this with its own when it hosts the workflow.
   */
  provide(bindings: {
    actions?: ActionRegistry;
    logger?: Logger;
    /** @internal The bound of one journaled event (the system's eventBytesMax). */
    limits?: PlainDataLimits;
  }): WorkflowDefinition<TActions, TInput, TOutput>;
  /** Types only; never set at runtime. */
  readonly '~types'?: { actions: TActions; input: TInput; output: TOutput };
}

/** Whether `value` was made by {@link defineWorkflow}. */
export function isWorkflowDefinition(
  value: unknown,
): value is WorkflowDefinition {
  return (
    typeof value === 'object' &&
    value !== null &&
    '~workflow' in value &&
    typeof (value as { provide?: unknown }).provide === 'function'
  );
}

/**
 * Defines a durable workflow function. Its progress is journaled step by
 * step (action results, events, timers, state names, data writes, time and
 * randomness); after passivation or a crash the function re-runs, replays
 * what was recorded instead of repeating it, and continues live. A code
 * change that makes the replay take another step fails the instance with
 * WORKFLOW_DIVERGED naming the step.
 *
 * The function must be deterministic apart from what `ctx` gives it: no
 * `Date.now()`, `Math.random()` or I/O of its own (do I/O in actions).
 *
 * `ctx.actions` is typed from `options.actions` (or the registry declared
 * in {@link Register}), `ctx.input` from the return type of
 * `options.input`; give that function's parameter a type, as below, so
 * TypeScript reads it before it types `ctx`.
 *
 * @example
 * ```ts
 * const invoiceApproval = defineWorkflow('invoiceApproval', async (ctx) => {
 *   ctx.setState('waiting_for_approval');
 *   const ev = await ctx.events.waitFor('INVOICE_APPROVED', { timeoutMs: 86_400_000 });
 *   if (!ev) await ctx.actions.sendEmail({ to: ctx.input.owner, template: 'reminder' });
 *   const charge = await ctx.actions.chargeCard({ amount: ctx.input.amount });
 *   return { charged: charge.id };
 * }, { actions, input: (trigger: WorkflowEvent) => trigger as { type: string; owner: string; amount: number } });
 *
 * const system = await createActorSystem({ name: 'billing', entities: { invoiceApproval }, actions });
 * await system.entity('invoiceApproval', 'inv-1').send({ type: 'START', owner: 'ann@example.com', amount: 120 });
 * ```
 */
export function defineWorkflow<
  TOutput,
  TActions extends ActionMap = RegisteredActions,
  TInput = WorkflowEvent,
>(
  name: string,
  fn: (ctx: WorkflowContext<TActions, TInput>) => Promise<TOutput>,
  options: WorkflowOptions<TActions, TInput> = {},
): WorkflowDefinition<TActions, TInput, TOutput> {
  if (typeof name !== 'string' || name.length === 0)
    throw new ConfigError(
      `defineWorkflow expects a non-empty name; got ${JSON.stringify(name)}.`,
    );
  if (typeof fn !== 'function')
    throw new ConfigError(
      `defineWorkflow("${name}") expects an async function (ctx) => output as its second argument.`,
    );
  if (typeof options !== 'object' || options === null)
    throw new ConfigError(
      `defineWorkflow("${name}"): options must be an object.`,
    );
  if (options.input !== undefined && typeof options.input !== 'function') {
    throw new ConfigError(
      `defineWorkflow("${name}"): "input" must be a function (trigger) => input.`,
    );
  }
  const spec: WorkflowSpec = {
    name,
    fn: fn,
    input: options.input ?? ((trigger) => trigger),
    stepsMax: bound(
      name,
      'stepsMax',
      options.stepsMax,
      workflowDefaults.stepsMax,
    ),
    inboxMax: bound(
      name,
      'inboxMax',
      options.inboxMax,
      workflowDefaults.inboxMax,
    ),
    entropy: options.entropy ?? cryptoEntropy,
  };
  return build<TActions, TInput, TOutput>(spec, {
    actions: options.actions,
    logger: pino({ level: 'silent' }),
    limits: { bytesMax: defaults.eventBytesMax, depthMax: defaults.depthMax },
  });
}

function build<TActions extends ActionMap, TInput, TOutput>(
  spec: WorkflowSpec,
  binding: WorkflowBinding,
): WorkflowDefinition<TActions, TInput, TOutput> {
  const logic = createWorkflowLogic(spec, binding);
  return Object.assign(logic, {
    name: spec.name,
    provide(bindings: {
      actions?: ActionRegistry;
      logger?: Logger;
      limits?: PlainDataLimits;
    }) {
      return build<TActions, TInput, TOutput>(spec, {
        actions: bindings.actions ?? binding.actions,
        logger: bindings.logger ?? binding.logger,
        limits: bindings.limits ?? binding.limits,
      });
    },
  });
}

function bound(
  workflow: string,
  option: string,
  value: unknown,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new ConfigError(
      `defineWorkflow("${workflow}"): "${option}" must be an integer >= 1; got ${JSON.stringify(value)}.`,
    );
  }
  return value;
}

/** 48 random bits make a double in [0, 1) with no bias. */
const cryptoEntropy = {
  random: (): number => randomBytes(6).readUIntBE(0, 6) / 2 ** 48,
  uuid: (): string => randomUUID(),
};
