import type { Logger } from 'pino';
import { ConfigError } from '../errors.js';
import {
  compileParams,
  type JsonSchema,
  type ParamsCheck,
  type StandardSchemaV1,
} from './schema.js';

/**
 * The action registry: the named side effects a workflow may call. Each
 * call gets an idempotency key stable across replays and restarts, its
 * params are validated before anything runs, and it is retried and timed
 * out per the action's policy. Actions run at least once: an action whose
 * result was not yet durable when its process died runs again, with the
 * same key and the same params, after recovery.
 */

/** Retry backoff: the delay before attempt n+1 is `initialMs * multiplier^(n-1)`, capped at `maxMs`. */
export interface BackoffPolicy {
  /** Default 1_000. */
  initialMs?: number;
  /** Default 2. */
  multiplier?: number;
  /** Default 60_000. */
  maxMs?: number;
}

export interface RetryPolicy {
  /** Attempts in all, the first included. Default 3; at most 100. */
  attemptsMax?: number;
  /** A policy, or a fixed delay in ms. */
  backoff?: BackoffPolicy | number;
}

/** What an action's `run` gets besides its params. */
export interface ActionContext {
  /**
   * The same for every attempt and every re-run of this call, also after a
   * crash: pass it to the external system so it can recognise a retry.
   */
  readonly idempotencyKey: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** Aborted when the attempt times out or the workflow stops. */
  readonly signal: AbortSignal;
  /** The workflow's tenant; always set for actions with `isolation: 'tenant'`. */
  readonly tenant: string | undefined;
  readonly workflow: {
    readonly name: string;
    readonly type: string;
    readonly id: string;
    /** The call's index in the workflow's step log. */
    readonly step: number;
    /**
     * The call's step id: its position, within its branch when in one
     * (`4`, `3:1.0`). Unlike `step`, the same on every run even when
     * branches of ctx.parallel / ctx.dag finish in another order: derive
     * anything that must be stable (ids, keys) from this one.
     */
    readonly stepId: string;
  };
  readonly logger: Logger;
}

/**
 * One action. `TParams` is what `run` receives (after validation), `TInput`
 * what the workflow passes (they differ only for a Standard Schema that
 * transforms), `TResult` what it resolves with: plain data, as it is
 * journaled.
 */
export interface ActionDefinition<
  TParams = unknown,
  TResult = unknown,
  TInput = TParams,
> {
  /** A JSON schema (Ajv v8, strict) or a Standard Schema validator. Omitted: any plain data. */
  params?: JsonSchema | StandardSchemaV1<TInput, TParams>;
  run(params: TParams, actx: ActionContext): Promise<TResult> | TResult;
  retry?: RetryPolicy;
  /** Per attempt. Default 60_000. */
  timeoutMs?: number;
  /** `'tenant'`: the call needs a tenant (TENANT_INVALID without one), and its key includes it. Default `'none'`. */
  isolation?: 'tenant' | 'none';
  /** Whether a failed attempt may be retried. Default: every error is. */
  isRetryable?: (error: unknown) => boolean;
  description?: string;
}

/** The caller's view of an action: what it takes and what it resolves with. */
export interface ActionSignature<TInput = unknown, TResult = unknown> {
  readonly input: TInput;
  readonly result: TResult;
}

/** Action name -> signature; the type parameter of a registry. */
export type ActionMap = Record<string, ActionSignature>;

/** `ctx.actions`: one async function per registered action. */
export type ActionsProxy<TActions extends ActionMap> = {
  readonly [K in keyof TActions]: (
    params: TActions[K]['input'],
  ) => Promise<Awaited<TActions[K]['result']>>;
};

/** An action with every option resolved. @internal */
export interface ResolvedAction {
  readonly name: string;
  readonly check: ParamsCheck | undefined;
  readonly run: (params: unknown, actx: ActionContext) => unknown;
  readonly attemptsMax: number;
  readonly backoff: Required<BackoffPolicy>;
  readonly timeoutMs: number;
  readonly isolation: 'tenant' | 'none';
  readonly isRetryable: (error: unknown) => boolean;
}

/** Named defaults and bounds of the action registry. */
export const actionDefaults = {
  attemptsMax: 3,
  attemptsMaxLimit: 100,
  backoff: { initialMs: 1_000, multiplier: 2, maxMs: 60_000 },
  timeoutMs: 60_000,
} as const;

/**
 * A set of actions. `register` returns a new registry with one more
 * action, so its type grows with each call and `ctx.actions.<name>` is typed
 * from it.
 */
export interface ActionRegistry<TActions extends ActionMap = ActionMap> {
  register<N extends string, TParams, TResult, TInput = TParams>(
    name: N extends keyof TActions ? never : N,
    definition: ActionDefinition<TParams, TResult, TInput>,
  ): ActionRegistry<TActions & Record<N, ActionSignature<TInput, TResult>>>;
  has(name: string): boolean;
  names(): string[];
  /** @internal */
  resolve(name: string): ResolvedAction | undefined;
  /** The type of `ctx.actions` for this registry; never set at runtime. */
  readonly '~actions'?: TActions;
}

/**
 * Creates an empty action registry.
 *
 * @example
 * ```ts
 * const actions = createActionRegistry()
 *   .register('sendEmail', {
 *     params: { type: 'object', properties: { to: { type: 'string' } }, required: ['to'] },
 *     run: async (p: { to: string }, actx) => mailer.send(p.to, { idempotencyKey: actx.idempotencyKey }),
 *     retry: { attemptsMax: 5, backoff: { initialMs: 500 } },
 *     timeoutMs: 10_000,
 *   });
 * const system = await createActorSystem({ name: 'billing', entities: { invoiceApproval }, actions });
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export function createActionRegistry(): ActionRegistry<{}> {
  return makeRegistry(new Map());
}

function makeRegistry<T extends ActionMap>(
  actions: ReadonlyMap<string, ResolvedAction>,
): ActionRegistry<T> {
  return {
    register(name, definition) {
      if (
        typeof name !== 'string' ||
        name.length === 0 ||
        name === 'then' ||
        name.startsWith('~')
      ) {
        throw new ConfigError(
          `Action names are non-empty strings other than "then" and not starting with "~"; got ${JSON.stringify(name)}.`,
        );
      }
      if (actions.has(name)) {
        throw new ConfigError(
          `Action "${name}" is registered already; register each name once.`,
          { details: { action: name } },
        );
      }
      const next = new Map(actions);
      next.set(name, resolveAction(name, definition));
      return makeRegistry(next);
    },
    has: (name) => actions.has(name),
    names: () => [...actions.keys()],
    resolve: (name) => actions.get(name),
  };
}

function resolveAction(name: string, def: ActionDefinition): ResolvedAction {
  if (
    typeof def !== 'object' ||
    def === null ||
    typeof def.run !== 'function'
  ) {
    throw new ConfigError(
      `Action "${name}" needs a definition with a "run" function: { run: async (params, actx) => result }.`,
      {
        details: { action: name },
      },
    );
  }
  const retry = def.retry ?? {};
  const attemptsMax = positive(
    name,
    'retry.attemptsMax',
    retry.attemptsMax,
    actionDefaults.attemptsMax,
  );
  if (attemptsMax > actionDefaults.attemptsMaxLimit) {
    throw new ConfigError(
      `Action "${name}": retry.attemptsMax is at most ${actionDefaults.attemptsMaxLimit}; got ${attemptsMax}.`,
    );
  }
  const backoff =
    typeof retry.backoff === 'number'
      ? {
          initialMs: positive(name, 'retry.backoff', retry.backoff, 0, 0),
          multiplier: 1,
          maxMs: retry.backoff,
        }
      : {
          initialMs: positive(
            name,
            'retry.backoff.initialMs',
            retry.backoff?.initialMs,
            actionDefaults.backoff.initialMs,
            0,
          ),
          multiplier: positive(
            name,
            'retry.backoff.multiplier',
            retry.backoff?.multiplier,
            actionDefaults.backoff.multiplier,
            1,
            false,
          ),
          maxMs: positive(
            name,
            'retry.backoff.maxMs',
            retry.backoff?.maxMs,
            actionDefaults.backoff.maxMs,
            0,
          ),
        };
  const isolation = def.isolation ?? 'none';
  if (isolation !== 'tenant' && isolation !== 'none') {
    throw new ConfigError(
      `Action "${name}": isolation is 'tenant' or 'none'; got ${JSON.stringify(isolation)}.`,
    );
  }
  if (def.isRetryable !== undefined && typeof def.isRetryable !== 'function') {
    throw new ConfigError(
      `Action "${name}": isRetryable must be a function (error) => boolean.`,
    );
  }
  return {
    name,
    check:
      def.params === undefined ? undefined : compileParams(name, def.params),
    run: (params, actx) => def.run(params, actx),
    attemptsMax,
    backoff,
    timeoutMs: positive(
      name,
      'timeoutMs',
      def.timeoutMs,
      actionDefaults.timeoutMs,
    ),
    isolation,
    isRetryable: def.isRetryable ?? (() => true),
  };
}

function positive(
  action: string,
  option: string,
  value: unknown,
  fallback: number,
  min = 1,
  integer = true,
): number {
  if (value === undefined) return fallback;
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    value >= min &&
    (!integer || Number.isSafeInteger(value));
  if (!ok) {
    throw new ConfigError(
      `Action "${action}": ${option} must be ${integer ? 'an integer' : 'a number'} >= ${min}; got ${JSON.stringify(value)}.`,
      {
        details: { action, option },
      },
    );
  }
  return value;
}
