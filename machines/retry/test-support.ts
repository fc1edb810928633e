/**
 * Helpers for the tests of the machines in this repository (retry, circuit
 * breaker, saga, DAG). Not exported from `shardchart/machines`.
 * @internal
 */
import { readFileSync } from 'node:fs';
import {
  transition,
  type AnyActorRef,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type EventObject,
} from 'xstate';
import {
  createSimulatedClock,
  type SimulatedClock,
} from '../../src/system/clock.js';

/** A simulated clock that also knows its earliest pending deadline. @internal */
export interface SteppingClock extends SimulatedClock {
  /** The earliest pending timer's deadline, or undefined when none. */
  nextDeadline(): number | undefined;
}

/** Wraps {@link createSimulatedClock} to track deadlines, so a test can jump straight to the next timer. @internal */
export function createSteppingClock(startMs = 0): SteppingClock {
  const base = createSimulatedClock(startMs);
  const deadlines = new Map<unknown, number>();
  return {
    now: () => base.now(),
    setTimeout(fn, ms) {
      const handle = base.setTimeout(() => {
        deadlines.delete(handle);
        fn();
      }, ms);
      deadlines.set(handle, base.now() + Math.max(0, ms));
      return handle;
    },
    clearTimeout(handle) {
      deadlines.delete(handle);
      base.clearTimeout(handle);
    },
    advance: (ms) => base.advance(ms),
    set: (ms) => base.set(ms),
    pending: () => base.pending(),
    nextDeadline() {
      let min: number | undefined;
      for (const at of deadlines.values())
        if (min === undefined || at < min) min = at;
      return min;
    },
  };
}

/** Lets settled promises (invoked tasks) deliver their results. @internal */
export async function flush(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++)
    await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Runs the clock from timer to timer until `isDone()` holds, flushing
 * promises in between. Throws when it stalls (no timer and not done) or
 * takes more than `stepsMax` steps, so a test never hangs.
 * @internal
 */
export async function runUntil(
  clock: SteppingClock,
  isDone: () => boolean | Promise<boolean>,
  stepsMax = 10_000,
): Promise<void> {
  for (let step = 0; step < stepsMax; step++) {
    await flush();
    if (await isDone()) return;
    const next = clock.nextDeadline();
    if (next === undefined)
      throw new Error(
        `runUntil: stalled at t=${clock.now()} with no timer pending`,
      );
    clock.advance(Math.max(0, next - clock.now()));
  }
  throw new Error(
    `runUntil: not done after ${stepsMax} steps (t=${clock.now()})`,
  );
}

/** Runs a started plain actor to completion on the clock. @internal */
export async function runActor(
  actor: AnyActorRef,
  clock: SteppingClock,
  stepsMax?: number,
): Promise<AnyMachineSnapshot> {
  await runUntil(
    clock,
    () => (actor.getSnapshot() as AnyMachineSnapshot).status !== 'active',
    stepsMax,
  );
  return actor.getSnapshot() as AnyMachineSnapshot;
}

/** Property-test run count: `SHARDCHART_PROPERTY_RUNS` or the default. @internal */
export function propertyRuns(defaultRuns: number): number {
  const n = Number(process.env.SHARDCHART_PROPERTY_RUNS);
  return Number.isInteger(n) && n > 0 ? n : defaultRuns;
}

/** A resolvable promise, for tasks a test finishes by hand. @internal */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** @internal */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The event types the current state nodes accept (XState's own per-node lists). @internal */
export function acceptedEventTypes(snapshot: AnyMachineSnapshot): string[] {
  const nodes = (snapshot as unknown as { _nodes: { ownEvents: string[] }[] })
    ._nodes;
  return [...new Set(nodes.flatMap((n) => n.ownEvents))];
}

/**
 * Every edge out of the given states: each event `eventsFor` builds for the
 * types a state accepts, applied with XState's pure `transition`. Lets a
 * test check an invariant on (state, event, next state) triples.
 * @internal
 */
export function edgesFrom(
  machine: AnyStateMachine,
  states: readonly AnyMachineSnapshot[],
  eventsFor: (type: string, snapshot: AnyMachineSnapshot) => EventObject[],
): { from: AnyMachineSnapshot; event: EventObject; to: AnyMachineSnapshot }[] {
  const edges: {
    from: AnyMachineSnapshot;
    event: EventObject;
    to: AnyMachineSnapshot;
  }[] = [];
  for (const from of states) {
    if (from.status !== 'active') continue;
    for (const type of acceptedEventTypes(from)) {
      for (const event of eventsFor(type, from)) {
        edges.push({
          from,
          event,
          to: transition(
            machine,
            from as never,
            event as never,
          )[0] as AnyMachineSnapshot,
        });
      }
    }
  }
  return edges;
}

/**
 * The Mermaid blocks of a README next to a test (`new URL('./README.md',
 * import.meta.url)`), so a test can check that a diagram is what the
 * generator draws today.
 * @internal
 */
export function readmeMermaidBlocks(url: URL): string[] {
  const readme = readFileSync(url, 'utf8');
  return [...readme.matchAll(/```mermaid\n([\s\S]*?)```/g)].map((m) =>
    m[1]!.trimEnd(),
  );
}
