/**
 * A graph model of a machine that knows its pending timers.
 *
 * XState's graph utilities walk a machine by feeding events to its pure
 * `transition`. A delayed event (`after`, or `raise` with a delay) is an
 * ordinary event there, so the default traversal offers it in every state
 * that has an `after` transition: also after it already fired (a targetless
 * `after` fires once per entry, not forever), and before an earlier timer
 * of another region that must fire first. Such paths cannot happen.
 *
 * This model keeps the pending timers beside the snapshot, from the
 * `xstate.raise` (with delay) and `xstate.cancel` actions that `transition`
 * returns, with each timer's remaining time. A timer step advances time to
 * the earliest deadline and fires every timer due then, in scheduling
 * order, as a simulated clock does. So a path with timer steps replays on a
 * real actor by advancing a simulated clock by each step's `delayMs`.
 *
 * @internal
 */
import {
  initialTransition,
  transition,
  type AnyEventObject,
  type AnyMachineSnapshot,
  type AnyStateMachine,
} from 'xstate';

/** The pseudo event type of a timer step inside the traversal. */
export const TIMER_STEP_TYPE = 'shardchart.timer';

/** One pending timer: fires `event` after `remainingMs`. */
interface ModelTimer {
  id: string;
  event: AnyEventObject;
  remainingMs: number;
  /** Scheduling order, to break ties the way a clock does. */
  order: number;
}

/** A state of the model: snapshot plus pending timers. */
export interface TimedState {
  snapshot: AnyMachineSnapshot;
  timers: readonly ModelTimer[];
  /** Steps from the start at discovery (BFS order: the minimum); not part of identity. */
  depth: number;
  /** Set when the step threw (a guard or assign failed): a dead end. */
  error?: unknown;
  /** Set on states reached by a timer step. */
  delayMs?: number;
  timerEvents?: readonly AnyEventObject[];
}

/** Timer firings within one timer step at most: a loop of 0 ms timers is cut. */
const FIRINGS_MAX = 1_000;

interface ActionLike {
  type: string;
  params?: unknown;
}

/** Applies the timer actions of one transition to the pending set. */
function applyActions(
  timers: ModelTimer[],
  actions: readonly ActionLike[],
  nextOrder: () => number,
): ModelTimer[] {
  let out = timers;
  for (const action of actions) {
    const params = action.params as
      | { delay?: unknown; event?: AnyEventObject; id?: unknown; sendId?: unknown }
      | undefined;
    if (action.type === 'xstate.raise' && typeof params?.delay === 'number') {
      const id = typeof params.id === 'string' ? params.id : `raise-${nextOrder()}`;
      out = out.filter((t) => t.id !== id);
      out.push({ id, event: params.event!, remainingMs: Math.max(0, params.delay), order: nextOrder() });
    } else if (action.type === 'xstate.cancel' && typeof params?.sendId === 'string') {
      const id = params.sendId;
      out = out.filter((t) => t.id !== id);
    }
  }
  return out;
}

function earliest(timers: readonly ModelTimer[]): ModelTimer | undefined {
  let best: ModelTimer | undefined;
  for (const t of timers) {
    if (!best || t.remainingMs < best.remainingMs || (t.remainingMs === best.remainingMs && t.order < best.order)) best = t;
  }
  return best;
}

/**
 * Builds the model of `machine`. With `timers: false` delayed events are
 * never offered and the pending set stays empty.
 */
export function createTimedLogic(
  machine: AnyStateMachine,
  input: unknown,
  withTimers: boolean,
  key?: (snapshot: AnyMachineSnapshot) => string,
) {
  let order = 0;
  const nextOrder = (): number => ++order;

  const step = (state: TimedState, event: AnyEventObject): TimedState => {
    if (state.snapshot.status !== 'active' || state.error !== undefined) return state;
    let snapshot: AnyMachineSnapshot;
    let actions: readonly ActionLike[];
    try {
      [snapshot, actions] = transition(machine, state.snapshot, event) as [AnyMachineSnapshot, ActionLike[]];
    } catch (error) {
      // Pure transitions throw what a running actor would turn into an
      // error status: the path ends here.
      return { ...state, depth: state.depth + 1, error: error ?? 'error' };
    }
    const timers = withTimers ? applyActions([...state.timers], actions, nextOrder) : [];
    return { snapshot, timers, depth: state.depth + 1 };
  };

  /** Lets time pass until the earliest timer, firing all timers due then. */
  const fire = (state: TimedState): TimedState => {
    const first = earliest(state.timers);
    if (!first) return state;
    const delayMs = first.remainingMs;
    let cur: TimedState = {
      ...state,
      timers: state.timers.map((t) => ({ ...t, remainingMs: t.remainingMs - delayMs })),
    };
    const fired: AnyEventObject[] = [];
    for (let n = 0; n < FIRINGS_MAX; n++) {
      const due = earliest(cur.timers);
      if (!due || due.remainingMs > 0 || cur.snapshot.status !== 'active' || cur.error !== undefined) break;
      fired.push(due.event);
      const rest = cur.timers.filter((t) => t !== due);
      cur = step({ ...cur, timers: rest }, due.event);
      cur = { ...cur, depth: state.depth };
    }
    return { ...cur, depth: state.depth + 1, delayMs, timerEvents: fired };
  };

  return {
    initial(): TimedState {
      const [snapshot, actions] = initialTransition(machine, input);
      const timers = withTimers ? applyActions([], actions, nextOrder) : [];
      return { snapshot: snapshot as AnyMachineSnapshot, timers, depth: 0 };
    },
    transition(state: TimedState, event: AnyEventObject): TimedState {
      return event.type === TIMER_STEP_TYPE ? fire(state) : step(state, event);
    },
    /** The timer step offered in `state`, if a timer is pending. */
    timerStep(state: TimedState): AnyEventObject | undefined {
      const first = earliest(state.timers);
      return first ? { type: TIMER_STEP_TYPE, delayMs: first.remainingMs, next: first.event.type } : undefined;
    },
    /** True when a timer is already due: nothing else can happen first. */
    timerDue(state: TimedState): boolean {
      const first = earliest(state.timers);
      return first !== undefined && first.remainingMs <= 0;
    },
    /** Identity of a state: value, context, children and the pending timers. */
    serialize(state: TimedState): string {
      if (state.error !== undefined) return `error:${state.error instanceof Error ? state.error.message : 'thrown'}`;
      const timers = [...state.timers]
        .sort((a, b) => a.remainingMs - b.remainingMs || a.order - b.order)
        .map((t) => [t.id, t.remainingMs]);
      if (key) return `${key(state.snapshot)}|${JSON.stringify(timers)}`;
      const snap = state.snapshot;
      const context: unknown = snap.context;
      const children = Object.keys(snap.children as Record<string, unknown>).sort();
      const value: unknown = snap.value;
      return JSON.stringify({ value, context, status: snap.status, children, timers });
    },
  };
}

export type TimedLogic = ReturnType<typeof createTimedLogic>;
