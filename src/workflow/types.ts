import type { Logger } from 'pino';
import type { AnyActorRef } from 'xstate';
import type { ActionMap, ActionRegistry, ActionsProxy } from './actions.js';
import type {
  WorkflowDagOptions,
  WorkflowDagResult,
  WorkflowDagStep,
} from './dag.js';
import type { RecordedError } from './errors.js';
import type { WorkflowTasks } from './tasks.js';

/** An event a workflow receives: a plain object with a string `type`. */
export type WorkflowEvent<T extends string = string> = {
  type: T;
  [key: string]: unknown;
};

/**
 * Declare your registry once to type `ctx.actions` in every workflow:
 *
 * ```ts
 * declare module 'shardchart' {
 *   interface Register { actions: typeof actions }
 * }
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface Register {}

/** The actions of the registry named in {@link Register}, or any action. */
export type RegisteredActions = Register extends {
  actions: ActionRegistry<infer A>;
}
  ? A
  : ActionMap;

export interface WaitForOptions {
  /** Resolve with `undefined` if no matching event arrives in time (a durable timer). */
  timeoutMs?: number;
  /**
   * Wait for an event published with this correlation key in the
   * workflow's tenant (`system.publishEvent`); types only, not predicates.
   */
  correlationKey?: string;
}

/** `ctx.events`. */
export interface WorkflowEvents {
  /**
   * Waits for the next event of one of `types` (or one `predicate`
   * accepts), taking the oldest buffered one if it arrived earlier. Events
   * that arrive while nothing waits for them are kept in the workflow's
   * inbox (at most `inboxMax`), never dropped.
   */
  waitFor<T extends string>(
    types: T | readonly T[],
    options?: { timeoutMs?: undefined; correlationKey?: string },
  ): Promise<WorkflowEvent<T>>;
  waitFor<T extends string>(
    types: T | readonly T[],
    options: { timeoutMs: number; correlationKey?: string },
  ): Promise<WorkflowEvent<T> | undefined>;
  waitFor(
    predicate: (event: WorkflowEvent) => boolean,
    options?: { timeoutMs?: undefined },
  ): Promise<WorkflowEvent>;
  waitFor(
    predicate: (event: WorkflowEvent) => boolean,
    options: { timeoutMs: number },
  ): Promise<WorkflowEvent | undefined>;
}

/** `ctx.data`: a durable key/value scope; every write is a journaled step. */
export interface WorkflowData {
  get<T = unknown>(key: string): T | undefined;
  has(key: string): boolean;
  set(key: string, value: unknown): void;
  delete(key: string): void;
  /** A copy of every entry. */
  toObject(): Record<string, unknown>;
}

/**
 * What a workflow function is given. Everything that is not deterministic
 * (action results, events, timers, time, randomness) goes through it and is
 * journaled, so a replay after a restart takes the same path.
 */
export interface WorkflowContext<
  TActions extends ActionMap = RegisteredActions,
  TInput = WorkflowEvent,
> {
  /** From the trigger event (the workflow's first event), through the `input` option. */
  readonly input: TInput;
  /** The event that started the workflow. */
  readonly trigger: WorkflowEvent;
  /** The workflow's name (its definition's). */
  readonly workflow: string;
  /** The entity: its type (the name it is registered under) and id. */
  readonly entity: { readonly type: string; readonly id: string };
  /** The trigger's `tenant`, when it carries a non-empty string one. */
  readonly tenant: string | undefined;
  /** Registered actions; each call is a journaled step. */
  readonly actions: ActionsProxy<TActions>;
  readonly events: WorkflowEvents;
  readonly data: WorkflowData;
  /** Human tasks: create one, wait for its completion (see tasks.ts). */
  readonly tasks: WorkflowTasks;
  /** A pino child with workflow, entity and correlation ids; silent while replaying. */
  readonly logger: Logger;
  /** Names the state the workflow is in: `ref.snapshot().value`. */
  setState(name: string): void;
  getState(): string;
  /** A durable timer: survives passivation and restarts. */
  sleep(ms: number): Promise<void>;
  /**
   * Runs branches at the same time; each is numbered on its own, so replay
   * does not depend on which finished first. Resolves with their results
   * in order; if any failed, rejects with the first failed branch's error
   * (by position) once all have finished.
   */
  parallel<T extends readonly (() => Promise<unknown>)[]>(
    branches: T,
  ): Promise<{ -readonly [K in keyof T]: Awaited<ReturnType<T[K]>> }>;
  /**
   * Runs a step graph: each step starts once its `dependsOn` succeeded, at
   * most `concurrencyMax` at once, and its `onError` (`stop`, `continue`,
   * `retry`, `compensate`) decides what its failure does. Resolves with
   * how it ended; never rejects for a step's failure.
   */
  dag(
    steps: readonly WorkflowDagStep[],
    options?: WorkflowDagOptions,
  ): Promise<WorkflowDagResult>;
  /** The clock's time, recorded. */
  now(): number;
  /** A number in [0, 1), recorded. */
  random(): number;
  /** A random UUID v4, recorded. */
  uuid(): string;
}

/** A recorded step of a workflow function. */
export type StepKind =
  | 'action'
  | 'sleep'
  | 'wait'
  | 'now'
  | 'random'
  | 'uuid'
  | 'state'
  | 'data'
  | 'data.delete'
  | 'parallel'
  | 'dag'
  | 'dag.settle';

/** One step as the snapshot keeps it (plain data). */
export interface StepRecord {
  kind: StepKind;
  /** Action name, state name, data key or wait label; '' when the kind says it all. */
  name: string;
  done: boolean;
  result?: unknown;
  error?: RecordedError;
  /** Pending action: its params (dropped once done). */
  params?: unknown;
  /** Pending wait: the event types it takes, or undefined for a predicate wait. */
  types?: string[];
  /** Sleep or wait: the timer's delay. */
  ms?: number;
  /** Pending sleep or wait: the clock time its timer is due. */
  dueAt?: number;
  /** A wait that ended by its timeout. */
  timedOut?: boolean;
  /** The scope of a step made in a branch; absent for the function itself. */
  scope?: string;
  /** An action's step id: its scope and position (the idempotency key names it). */
  id?: string;
  /** An action's params hash. */
  ph?: string;
}

/** An event received while nothing waited for it; `n` numbers arrivals. */
export interface InboxEntry {
  n: number;
  event: WorkflowEvent;
}

/** The context part of a workflow snapshot: what `ref.snapshot().context` shows. */
export interface WorkflowSnapshotContext {
  input: unknown;
  data: Record<string, unknown>;
}

/** The snapshot of a workflow actor. */
export interface WorkflowSnapshot {
  status: 'active' | 'done' | 'error' | 'stopped';
  output: unknown;
  error: unknown;
  /** `'created'` until the trigger, `'running'` until the first `setState`, then its name. */
  value: string;
  context: WorkflowSnapshotContext;
  /** Snapshot format version. */
  v: 1;
  entity: { type: string; id: string };
  trigger: WorkflowEvent | undefined;
  steps: StepRecord[];
  /** Steps still waiting for their outcome, in step order. */
  open: number[];
  inbox: InboxEntry[];
  /** Events received so far (numbers inbox entries). */
  received: number;
  /** Live only: the actors running pending actions. */
  children: Record<string, AnyActorRef>;
}

/** Options of {@link defineWorkflow}. */
export interface WorkflowOptions<TActions extends ActionMap, TInput> {
  /** The registry that types `ctx.actions`; a system's `actions` option takes precedence. */
  actions?: ActionRegistry<TActions>;
  /** Derives `ctx.input` from the trigger event. Default: the trigger itself. Must be pure. */
  input?: (trigger: WorkflowEvent) => TInput;
  /** Steps one instance may record. Default 10_000. */
  stepsMax?: number;
  /** Events buffered while nothing waits for them; beyond it a send is refused (EVENT_REJECTED). Default 1_000. */
  inboxMax?: number;
  /** Sources of randomness for `ctx.random()`/`ctx.uuid()` (recorded either way). Default: node:crypto. */
  entropy?: { random(): number; uuid(): string };
}

/** Bounds of a workflow, in one place. */
export const workflowDefaults = {
  stepsMax: 10_000,
  inboxMax: 1_000,
} as const;
