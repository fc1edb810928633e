import type { Logger } from 'pino';
import { clockOf, tenantOf } from './action-call.js';
import { correlatedWaitFor } from './correlated-wait.js';
import { runDag, runParallel, type BranchHost } from './dag.js';
import type { WorkflowSpec } from './spec.js';
import { createTasksContext } from './task-context.js';
import type { WorkflowContext, WorkflowSnapshot } from './types.js';
import type { AnyActorRef } from 'xstate';

/**
 * The `ctx` a workflow function gets: a thin face over its runner, where
 * every call becomes a step (see runner.ts).
 */

/** What the context asks of the runner. @internal */
export interface StepSource extends BranchHost {
  readonly data: ReadonlyMap<string, unknown>;
  readonly state: string;
  /** Whether the hosting system keeps event routing and human tasks (see services.ts). */
  readonly routed: boolean;
  syncStep(kind: 'now' | 'random' | 'uuid', make: () => unknown): unknown;
  setState(name: string): void;
  setData(key: string, value: unknown): void;
  deleteData(key: string): void;
  action(name: string, params: unknown): Promise<unknown>;
  sleep(ms: number): Promise<void>;
  waitFor(
    match: unknown,
    options: { timeoutMs?: number } | undefined,
  ): Promise<unknown>;
}

/** Builds the context of one run of the function. @internal */
export function createContext(
  runner: StepSource & { readonly root: AnyActorRef },
  spec: WorkflowSpec,
  snap: WorkflowSnapshot,
  logger: Logger,
): WorkflowContext<never, never> {
  const trigger = snap.trigger!;
  const actions = new Proxy(Object.create(null) as object, {
    get: (_target, name) => {
      // `await ctx.actions` and symbol probes must not look like calls.
      if (typeof name !== 'string' || name === 'then') return undefined;
      return (params: unknown) => runner.action(name, params);
    },
  });
  // Correlated waits and tasks are steps the runner already knows (an
  // internal action, then a wait); see routing.ts and tasks.ts.
  const services = {
    tenant: tenantOf(trigger),
    get routed() {
      return runner.routed;
    },
    action: (name: string, params: unknown) => runner.action(name, params),
    waitFor: (match: unknown, options: { timeoutMs?: number }) =>
      runner.waitFor(match, options),
  };
  const events = {
    waitFor: (
      match: unknown,
      options?: { timeoutMs?: number; correlationKey?: unknown },
    ) =>
      options?.correlationKey !== undefined
        ? correlatedWaitFor(services, match, options)
        : runner.waitFor(match, options),
  };
  const data = {
    get: (key: string) => runner.data.get(key),
    has: (key: string) => runner.data.has(key),
    set: (key: string, value: unknown) => runner.setData(key, value),
    delete: (key: string) => runner.deleteData(key),
    toObject: () => Object.fromEntries(runner.data),
  };
  return {
    input: snap.context.input as never,
    trigger,
    workflow: spec.name,
    entity: { ...snap.entity },
    tenant: tenantOf(trigger),
    actions: actions as never,
    events: events as WorkflowContext['events'],
    data: data as WorkflowContext['data'],
    tasks: createTasksContext(services),
    logger,
    setState: (name: string) => runner.setState(name),
    getState: () => runner.state,
    sleep: (ms: number) => runner.sleep(ms),
    parallel: ((branches: readonly (() => Promise<unknown>)[]) =>
      runParallel(runner, branches)) as WorkflowContext['parallel'],
    dag: (steps, options) => runDag(runner, steps, options),
    now: () =>
      runner.syncStep('now', () => clockOf(runner.root).now()) as number,
    random: () =>
      runner.syncStep('random', () => spec.entropy.random()) as number,
    uuid: () => runner.syncStep('uuid', () => spec.entropy.uuid()) as string,
  };
}

const levels = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);

/**
 * A logger that says nothing while `quiet()` holds: a replay re-runs the
 * function from the start, and its log lines were written the first time.
 */
export function silentWhile(logger: Logger, quiet: () => boolean): Logger {
  return new Proxy(logger, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (
        typeof prop === 'string' &&
        levels.has(prop) &&
        typeof value === 'function'
      ) {
        return (...args: unknown[]) => {
          if (!quiet())
            (value as (...a: unknown[]) => void).apply(target, args);
        };
      }
      if (prop === 'child' && typeof value === 'function') {
        return (...args: unknown[]) =>
          silentWhile(
            (value as (...a: unknown[]) => Logger).apply(target, args),
            quiet,
          );
      }
      return value;
    },
  });
}
