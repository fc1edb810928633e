/**
 * Test paths through a machine's graph, from XState's own graph module.
 *
 * Shortest paths come from `getShortestPaths` of `xstate/graph`. Simple
 * paths are enumerated over `getAdjacencyMap` of `xstate/graph` by a
 * depth-first walk with limits: XState's `getSimplePaths` lists every
 * simple path to every state, which grows exponentially and cannot be cut
 * short; this walk yields the same paths (a test checks it on small
 * machines) and stops at `pathsMax` and `depthMax`.
 */
import type { ActorLogic, AnyEventObject, AnyStateMachine, SnapshotFrom } from 'xstate';
import { getAdjacencyMap, getShortestPaths, type AdjacencyMap } from 'xstate/graph';
import { ConfigError } from '../errors.js';
import { eventsFor } from './event-types.js';
import { createTimedLogic, TIMER_STEP_TYPE, type TimedLogic, type TimedState } from './timed-logic.js';
import type { EventSamples, TestPath, TestPathsOptions, TestStep } from './types.js';
import { assertMachine, describe as describeValue, intOption } from './validate.js';

const DEPTH_MAX = 20;
const STATES_MAX = 5_000;
const PATHS_MAX = 1_000;
const FN = 'getTestPaths';

/**
 * Shortest and/or simple paths from the machine's initial state, with
 * sample events. Each path is a list of steps `{ event, state }`, where
 * `state` is the machine snapshot after `event`; timer steps (the machine's
 * `after` transitions and delayed raises) carry `delayMs`, the time a
 * simulated clock must advance for them to fire. A timer is offered only
 * while it is pending, and only as the next thing to happen when it is the
 * earliest; an event sent from outside takes no time.
 *
 * Paths that end with the machine in error (a step threw, typically an
 * invoke result given as `{ type }` without the `output` an assign reads:
 * list a sample for it) are left out.
 *
 * Limits keep big machines bounded: states more than `depthMax` steps from
 * the start are not expanded, at most `statesMax` states are explored and
 * at most `pathsMax` simple paths are returned.
 *
 * @example
 * ```ts
 * import { getTestPaths } from 'shardchart/testing';
 *
 * const paths = getTestPaths(cart, {
 *   events: { ADD: [{ type: 'ADD', sku: 'tea' }] },
 *   kind: 'both',
 *   toState: (s) => s.status === 'done',
 * });
 * for (const p of paths) console.log(p.description);
 * ```
 */
export function getTestPaths<TMachine extends AnyStateMachine>(
  machine: TMachine,
  options: TestPathsOptions<TMachine> = {},
): TestPath<TMachine>[] {
  assertMachine(machine, FN);
  const kind = options.kind ?? 'shortest';
  if (kind !== 'shortest' && kind !== 'simple' && kind !== 'both') {
    throw new ConfigError(`${FN}: option kind must be 'shortest', 'simple' or 'both'; got ${describeValue(kind)}.`);
  }
  const depthMax = intOption(FN, 'depthMax', options.depthMax, DEPTH_MAX, 0);
  const statesMax = intOption(FN, 'statesMax', options.statesMax, STATES_MAX);
  const pathsMax = intOption(FN, 'pathsMax', options.pathsMax, PATHS_MAX);
  const logic = createTimedLogic(
    machine,
    options.input,
    options.timers ?? true,
    options.serializeState as ((s: TimedState['snapshot']) => string) | undefined,
  );
  const toState = options.toState as ((s: unknown) => boolean) | undefined;

  const traversal = () => {
    let explored = 0;
    const samplesOf = sampleSource(options.events as TestPathsOptions['events']);
    return {
      serializeState: (s: TimedState) => logic.serialize(s),
      events: (s: TimedState): AnyEventObject[] => {
        if (s.snapshot.status !== 'active' || s.error !== undefined || s.depth >= depthMax) return [];
        if (++explored > statesMax) return [];
        const timer = logic.timerStep(s);
        // A due timer fires before anything else can happen.
        if (timer && logic.timerDue(s)) return [timer];
        const { samples, types } = samplesOf(s.snapshot);
        const events = eventsFor(s.snapshot, samples, types);
        if (timer) events.push(timer);
        return events;
      },
    };
  };
  const graphLogic = asActorLogic(logic);
  const out: TestPath<TMachine>[] = [];
  const replayRoot: ReplayNode = { state: logic.initial(), next: new Map() };
  const seen = new Set<string>();
  const add = (path: TestPath<TMachine> | undefined): void => {
    if (!path) return;
    const key = JSON.stringify(path.steps.map((s) => s.event));
    if (seen.has(key)) return;
    seen.add(key);
    out.push(path);
  };
  if (kind !== 'simple') {
    const found = getShortestPaths(graphLogic, {
      ...traversal(),
      ...(toState ? { toState: (s: TimedState) => toState(s.snapshot) } : {}),
    });
    // xstate/graph's steps start with the initial state (event
    // xstate.init), then hold the state after each event.
    for (const p of found) add(toTestPath<TMachine>(p.steps.slice(1).map((s) => s.event), logic, replayRoot, 'shortest'));
  }
  if (kind !== 'shortest') {
    const adjacency = getAdjacencyMap(graphLogic, traversal());
    const initial = logic.initial();
    for (const p of simplePaths(adjacency, logic, initial, depthMax, pathsMax)) {
      if (toState && !toState(p.state.snapshot)) continue;
      add(toTestPath<TMachine>(p.steps.map((s) => s.event), logic, replayRoot, 'simple'));
    }
  }
  return out;
}

function sampleSource(
  events: TestPathsOptions['events'],
): (s: TimedState['snapshot']) => { samples: readonly AnyEventObject[]; types: ReadonlySet<string> } {
  if (typeof events === 'function') {
    return (s) => {
      const samples = events(s as never);
      return { samples, types: new Set(samples.map((e) => e.type)) };
    };
  }
  const table: EventSamples = events ?? {};
  const fixed = { samples: Object.values(table).flat(), types: new Set(Object.keys(table)) };
  return () => fixed;
}

/** The model's state typed as the snapshot `xstate/graph` expects. */
type GraphState = TimedState & { status: 'active'; output: undefined; error: undefined };

/** The timed model seen as actor logic by `xstate/graph`. */
function asActorLogic(logic: TimedLogic): ActorLogic<GraphState, AnyEventObject> {
  return {
    config: undefined,
    transition: (s: TimedState, e: AnyEventObject) => logic.transition(s, e),
    getInitialSnapshot: () => logic.initial(),
    getPersistedSnapshot: (s: TimedState) => s,
  } as unknown as ActorLogic<GraphState, AnyEventObject>;
}

interface RawPath {
  state: TimedState;
  /** States after each event, in order. */
  steps: { event: AnyEventObject; state: TimedState }[];
}

/** Depth-first enumeration of simple paths over an adjacency map, with limits. */
function simplePaths(
  adjacency: AdjacencyMap<TimedState, AnyEventObject>,
  logic: TimedLogic,
  initial: TimedState,
  depthMax: number,
  pathsMax: number,
): RawPath[] {
  const out: RawPath[] = [];
  const onPath = new Set<string>();
  const steps: RawPath['steps'] = [];
  // Recursion depth is bounded by depthMax.
  const visit = (key: string, state: TimedState): void => {
    if (out.length >= pathsMax) return;
    out.push({ state, steps: [...steps] });
    if (steps.length >= depthMax) return;
    const node = adjacency[key as keyof typeof adjacency];
    if (!node) return;
    onPath.add(key);
    for (const t of Object.values(node.transitions)) {
      const nextKey = logic.serialize(t.state);
      if (onPath.has(nextKey)) continue;
      steps.push({ event: t.event, state: t.state });
      visit(nextKey, t.state);
      steps.pop();
      if (out.length >= pathsMax) break;
    }
    onPath.delete(key);
  };
  visit(logic.serialize(initial), initial);
  return out;
}

/** A prefix tree of replayed states: paths share prefixes, so each is replayed once. */
interface ReplayNode {
  state: TimedState;
  next: Map<string, ReplayNode>;
}

/**
 * Replays the events of a path through the model. xstate/graph keeps one
 * state object per serialized state, so a state it hands back may have been
 * reached another way (with a coarse `serializeState`, even with another
 * context); replaying gives every step its real state, and each timer step
 * its own delay and fired events.
 */
function toTestPath<TMachine extends AnyStateMachine>(
  events: readonly AnyEventObject[],
  logic: TimedLogic,
  root: ReplayNode,
  kind: TestPath['kind'],
): TestPath<TMachine> | undefined {
  let node = root;
  const steps = events.map((event): TestStep<TMachine> => {
    const key = JSON.stringify(event);
    let next = node.next.get(key);
    if (!next) {
      next = { state: logic.transition(node.state, event), next: new Map() };
      node.next.set(key, next);
    }
    node = next;
    const cur = node.state;
    const state = cur.snapshot as SnapshotFrom<TMachine>;
    if (event.type !== TIMER_STEP_TYPE) return { event, state };
    const fired = cur.timerEvents ?? [];
    return { event: fired[0] ?? event, state, delayMs: cur.delayMs ?? 0, timerEvents: fired };
  });
  // A step that made the machine throw almost always means a sample is
  // missing (an invoke result without the output an assign reads), not a
  // path worth testing.
  if (node.state.error !== undefined || (node.state.snapshot.status as string) === 'error') return undefined;
  const state = node.state.snapshot as SnapshotFrom<TMachine>;
  return { state, steps, kind, description: describePath(state, steps) };
}

/** `reaches {"a":"x"} via ADD {"sku":"tea"} → after 1000 ms`. */
function describePath(state: { value: unknown; status: string }, steps: readonly TestStep[]): string {
  const target = `reaches ${JSON.stringify(state.value)}${state.status === 'done' ? ' (done)' : ''}`;
  if (steps.length === 0) return `${target} (initial state)`;
  return `${target} via ${steps.map(stepLabel).join(' → ')}`;
}

function stepLabel(step: TestStep): string {
  if (step.delayMs !== undefined) return `after ${step.delayMs} ms`;
  const { type, ...payload } = step.event;
  return Object.keys(payload).length > 0 ? `${type} ${JSON.stringify(payload)}` : type;
}
