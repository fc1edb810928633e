/**
 * The types of `shardchart/testing`: graph paths ({@link getTestPaths}) and
 * the differential property check ({@link checkMachine}).
 *
 * @module
 */
import type { Arbitrary } from 'fast-check';
import type {
  AnyEventObject,
  AnyStateMachine,
  SnapshotFrom,
  StateValue,
} from 'xstate';
import type { Logger } from 'pino';
import type { TimerResume } from '../system/types.js';

// ---------------------------------------------------------------- graph paths

/**
 * Sample events per event type, for graph traversal: each accepted event
 * type is tried with every sample listed for it, or with `{ type }` alone
 * when none is listed. An empty list leaves the type out.
 *
 * @example
 * ```ts
 * const samples: EventSamples = {
 *   ADD: [{ type: 'ADD', sku: 'tea' }, { type: 'ADD', sku: 'mug' }],
 *   RESET: [], // never tried
 * };
 * ```
 */
export type EventSamples = Readonly<
  Record<string, readonly AnyEventObject[]>
>;

/**
 * One step of a {@link TestPath}: the event taken and the state it led to.
 * A timer step (a delayed `after` transition or a delayed `raise`) carries
 * `delayMs`, the time the clock must advance from the previous step for the
 * timer to fire; every other timer due at the same instant fires in the
 * same step, in scheduling order, and is listed in `timerEvents`.
 *
 * @example
 * ```ts
 * for (const step of path.steps) {
 *   if (step.delayMs !== undefined) clock.advance(step.delayMs);
 *   else actor.send(step.event);
 *   expect(actor.getSnapshot().value).toEqual(step.state.value);
 * }
 * ```
 */
export interface TestStep<TMachine extends AnyStateMachine = AnyStateMachine> {
  /** The event sent, or the first delayed event that fired. */
  event: AnyEventObject;
  /** The machine snapshot after the step (pure: nothing was executed). */
  state: SnapshotFrom<TMachine>;
  /** Present on timer steps: milliseconds to advance the clock by. */
  delayMs?: number;
  /** Present on timer steps: every delayed event fired by the step. */
  timerEvents?: readonly AnyEventObject[];
}

/**
 * A path through the machine's graph, from its initial state.
 *
 * @example
 * ```ts
 * const [path] = getTestPaths(machine, { toState: (s) => s.matches('paid') });
 * console.log(path.description); // 'reaches "paid" via ADD → PAY'
 * ```
 */
export interface TestPath<TMachine extends AnyStateMachine = AnyStateMachine> {
  /** The state the path ends in. */
  state: SnapshotFrom<TMachine>;
  /** One entry per event or timer step; the initial state is not a step. */
  steps: readonly TestStep<TMachine>[];
  /** Human-readable, for test titles: target value and the events taken. */
  description: string;
  /** How the path was found. */
  kind: 'shortest' | 'simple';
}

/**
 * Options of {@link getTestPaths}.
 *
 * @example
 * ```ts
 * getTestPaths(machine, {
 *   events: { ADD: [{ type: 'ADD', sku: 'a' }] },
 *   kind: 'both',
 *   depthMax: 8,
 * });
 * ```
 */
export interface TestPathsOptions<
  TMachine extends AnyStateMachine = AnyStateMachine,
> {
  /**
   * Sample events per type, or a function giving the samples for a state.
   * Types the state accepts without a sample are tried as `{ type }`.
   */
  events?:
    | EventSamples
    | ((state: SnapshotFrom<TMachine>) => readonly AnyEventObject[]);
  /** `'shortest'` (default): one shortest path per reachable state. */
  kind?: 'shortest' | 'simple' | 'both';
  /** Keep only paths ending in a state this returns true for. */
  toState?: (state: SnapshotFrom<TMachine>) => boolean;
  /** Machine input for the initial state. Default: undefined. */
  input?: unknown;
  /** States further than this many steps from the start are not expanded. Default 20. */
  depthMax?: number;
  /** Distinct states explored at most; the rest are not expanded. Default 5_000. */
  statesMax?: number;
  /** Simple paths returned at most (shortest paths are never cut). Default 1_000. */
  pathsMax?: number;
  /** Model `after` timers and delayed raises as timer steps. Default true. */
  timers?: boolean;
  /**
   * The identity of a state: states with the same key are one node of the
   * graph. Default: value and context, as in `xstate/graph`. A coarser key
   * (`(s) => JSON.stringify(s.value)`) gives one path per configuration
   * and explores far fewer states. Pending timers are always part of the
   * identity. Paths are replayed from the start, so every step's state is
   * the real one whatever the key.
   */
  serializeState?: (state: SnapshotFrom<TMachine>) => string;
}

// ------------------------------------------------------------ checkMachine

/**
 * One step of a {@link checkMachine} run. `send` goes to both sides;
 * `advance` moves the shared simulated clock (firing due timers on both
 * sides); `passivate` and `restart` are faults injected on the Shardchart
 * side only (the plain actor never stops).
 *
 * @example
 * ```ts
 * const steps: CheckStep[] = [
 *   { kind: 'send', event: { type: 'START' } },
 *   { kind: 'passivate', force: false },
 *   { kind: 'advance', ms: 1000 },
 *   { kind: 'restart' },
 * ];
 * ```
 */
export type CheckStep =
  | { kind: 'send'; event: AnyEventObject }
  | { kind: 'advance'; ms: number }
  | { kind: 'passivate'; force: boolean }
  | { kind: 'restart' };

/**
 * The state an invariant sees: the same fields an entity answers with.
 *
 * @example
 * ```ts
 * const finishedWithOutput = (s: CheckState) => s.status !== 'done' || s.output !== undefined;
 * ```
 */
export interface CheckState {
  value: StateValue;
  context: unknown;
  status: 'active' | 'done' | 'error' | 'stopped';
  output?: unknown;
}

/**
 * Where an invariant is evaluated.
 *
 * @example
 * ```ts
 * const invariant: Invariant = (s, at) => at.event.type !== 'PAY' || s.value === 'paid';
 * ```
 */
export interface InvariantContext {
  /** Steps run so far: 0 for the initial state, 1 after the first step. */
  index: number;
  /** The step being run (undefined for the initial state). */
  step: CheckStep | undefined;
  /** The event that produced this state (a timer or invoke event too). */
  event: AnyEventObject;
}

/**
 * A property of every state: return `false` or throw to report a
 * violation; `true` or nothing means it holds.
 *
 * @example
 * ```ts
 * const neverNegative: Invariant = (s) => (s.context as { n: number }).n >= 0;
 * ```
 */
export type Invariant = (
  state: CheckState,
  at: InvariantContext,
) => boolean | void;

/**
 * Event generators for {@link checkMachine}: fast-check arbitraries per
 * event type, or a list of sample events to pick from.
 *
 * @example
 * ```ts
 * import fc from 'fast-check';
 * const events: CheckEvents = {
 *   ADD: fc.integer({ min: -5, max: 5 }).map((n) => ({ type: 'ADD', n })),
 *   RESET: fc.constant({ type: 'RESET' }),
 * };
 * ```
 */
export type CheckEvents =
  | Readonly<Record<string, Arbitrary<AnyEventObject>>>
  | readonly AnyEventObject[];

/**
 * Options of {@link checkMachine}. Everything is optional: by default the
 * machine's own event types are sent as `{ type }`, with clock jumps,
 * passivations and restarts mixed in.
 *
 * @example
 * ```ts
 * await checkMachine(machine, {
 *   events: { ADD: fc.nat(9).map((n) => ({ type: 'ADD', n })) },
 *   invariants: { 'total stays small': (s) => s.context.total < 100 },
 *   runs: 50,
 * });
 * ```
 */
export interface CheckMachineOptions {
  events?: CheckEvents;
  /** One invariant, or named invariants (the name is in the report). */
  invariants?: Invariant | Readonly<Record<string, Invariant>>;
  /** Generated sequences. Default: env SHARDCHART_PROPERTY_RUNS, else 30. */
  runs?: number;
  /** fast-check seed, to replay a reported failure (with `path`). */
  seed?: number;
  /** fast-check counterexample path, printed with a failure. */
  path?: string;
  /** Steps per generated sequence at most. Default 24. */
  stepsMax?: number;
  /** Step lists always run first (regressions), before generated ones. */
  examples?: readonly (readonly CheckStep[])[];
  /** Entity input from the entity id; default `{ entityId, entityType }`, as entities get. */
  input?: (entityId: string) => unknown;
  /** Relative weights of the generated step kinds; 0 turns one off. */
  weights?: Partial<Record<CheckStep['kind'], number>>;
  /** Clock jumps to pick from. Default: each delay of the machine, ±1 ms, and 1 ms. */
  clockJumpsMs?: readonly number[];
  /**
   * Seed sequences from graph paths (see getTestPaths). Default: shortest
   * paths, with states told apart by value and by the events they would
   * take (not by context), depth 12, 300 states at most.
   */
  graphPaths?: boolean | Pick<TestPathsOptions, 'kind' | 'depthMax' | 'pathsMax' | 'statesMax' | 'serializeState'>;
  /** Snapshot intervals the entity side is run with (one per sequence). Default [1, 3, 100]. */
  snapshotEvery?: readonly number[];
  /** Macrotask turns to wait for invoked actors to settle after a step. Default 200. */
  settleTurnsMax?: number;
  /** Timers fired within one clock jump at most (catches timer loops). Default 1_000. */
  timerFiringsMax?: number;
  /**
   * How entity timers resume after a restart. Only `'deadline'` (the
   * default) keeps the same timing as a plain actor; the other modes
   * diverge by design after a restart.
   */
  timerResume?: TimerResume;
  /**
   * Inject restarts and forced passivations while an invoked promise or
   * callback runs (default true). Shardchart then runs it again on the
   * next activation (at-least-once) where the plain actor ran it once; a
   * machine that cannot tolerate that fails the check, with a note saying
   * so. False skips those faults.
   */
  faultsWhileInvoking?: boolean;
  /** Logger for the actor systems; default silent. */
  logger?: Logger;
}

/**
 * What a passing {@link checkMachine} resolves with.
 *
 * @example
 * ```ts
 * const report = await checkMachine(machine);
 * console.log(`${report.runs} runs, ${report.steps} steps, seed ${report.seed}`);
 * ```
 */
export interface CheckReport {
  /** Sequences run (examples included). */
  runs: number;
  /** Steps run over all sequences. */
  steps: number;
  /** The fast-check seed used. */
  seed: number;
  /** Graph paths the generator could start from. */
  graphPaths: number;
  /** Steps run per kind, to see that faults were injected. */
  stepKinds: Record<CheckStep['kind'], number>;
  /** Delayed events (`after` timers) the plain actor processed. */
  timerEvents: number;
}

/**
 * Why a run failed; carried in `CheckFailedError.details.failure`, beside
 * `steps` (the shrunk list), `seed`, `path` and `snapshotEvery`.
 *
 * @example
 * ```ts
 * try {
 *   await checkMachine(machine);
 * } catch (err) {
 *   if (!isShardchartError(err, 'CHECK_FAILED')) throw err;
 *   const failure = err.details!.failure as CheckFailure;
 *   if (failure.kind === 'divergence') console.log(failure.path, failure.plain, failure.entity);
 * }
 * ```
 */
export type CheckFailure =
  | { kind: 'invariant'; name: string; state: CheckState; index: number; event: AnyEventObject; error?: string }
  | { kind: 'divergence'; where: string; path: string; plain: CheckState; entity: CheckState; index: number; note?: string }
  | { kind: 'error'; side: 'plain' | 'entity'; message: string; index: number };
