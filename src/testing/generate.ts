/**
 * fast-check arbitraries for checkMachine: single steps, random sequences,
 * and sequences that walk a graph path with faults mixed in. Random
 * sequences rarely reach deep states; graph paths get there and the
 * faults then hit those states too.
 *
 * @internal
 */
import fc from 'fast-check';
import type { AnyEventObject, AnyStateMachine } from 'xstate';
import { ConfigError } from '../errors.js';
import { machineDelays, machineEventTypes } from './event-types.js';
import type { CheckEvents, CheckStep, EventSamples, TestPath } from './types.js';

/** Samples drawn per arbitrary for graph traversal; a fixed seed keeps paths the same every run. */
const GRAPH_SAMPLES = 3;
const GRAPH_SAMPLE_SEED = 42;

export const defaultWeights: Readonly<Record<CheckStep['kind'], number>> = {
  send: 10,
  advance: 3,
  passivate: 2,
  restart: 1,
};

/** The arbitrary of events to send, or undefined when there is nothing to send. */
export function eventArbitrary(
  machine: AnyStateMachine,
  events: CheckEvents | undefined,
): fc.Arbitrary<AnyEventObject> | undefined {
  if (Array.isArray(events)) {
    const list = events as readonly AnyEventObject[];
    list.forEach((e: unknown, i) => {
      if (typeof e !== 'object' || e === null || typeof (e as { type?: unknown }).type !== 'string') {
        throw new ConfigError(`checkMachine: events[${i}] must be an event object with a string type; got ${JSON.stringify(e) ?? String(e)}.`, {
          details: { index: i },
        });
      }
    });
    return list.length > 0 ? fc.constantFrom(...list) : undefined;
  }
  if (events !== undefined) {
    const arbs = Object.entries(events as Readonly<Record<string, fc.Arbitrary<AnyEventObject>>>);
    for (const [type, arb] of arbs) {
      if (!(arb instanceof fc.Arbitrary)) {
        throw new ConfigError(`checkMachine: events.${type} must be a fast-check arbitrary (fc.constant, fc.record, …); got ${typeof arb}.`, {
          details: { eventType: type },
        });
      }
    }
    return arbs.length > 0 ? fc.oneof(...arbs.map(([, a]) => a)) : undefined;
  }
  const types = machineEventTypes(machine);
  return types.length > 0 ? fc.constantFrom(...types.map((type) => ({ type }))) : undefined;
}

/**
 * Sample events per type for graph traversal, from the same source. When
 * `events` is given, the machine's other event types get an empty list:
 * the graph walks only what the check would send.
 */
export function graphSamples(machine: AnyStateMachine, events: CheckEvents | undefined): EventSamples | undefined {
  if (events === undefined) return undefined;
  const out: Record<string, AnyEventObject[]> = {};
  for (const type of machineEventTypes(machine)) out[type] = [];
  if (Array.isArray(events)) {
    for (const e of events as readonly AnyEventObject[]) (out[e.type] ??= []).push(e);
    return out;
  }
  for (const arb of Object.values(events as Readonly<Record<string, fc.Arbitrary<AnyEventObject>>>)) {
    for (const e of fc.sample(arb, { numRuns: GRAPH_SAMPLES, seed: GRAPH_SAMPLE_SEED })) {
      const list = (out[e.type] ??= []);
      if (!list.some((x) => JSON.stringify(x) === JSON.stringify(e))) list.push(e);
    }
  }
  return out;
}

/** Default clock jumps: each delay of the machine, one ms either side, and 1 ms. */
export function defaultJumps(machine: AnyStateMachine): number[] {
  const jumps = new Set<number>([1]);
  for (const d of machineDelays(machine)) {
    if (d > 1) jumps.add(d - 1);
    jumps.add(d);
    jumps.add(d + 1);
  }
  if (jumps.size === 1) jumps.add(1_000);
  return [...jumps].sort((a, b) => a - b);
}

/** One step; kinds with weight 0 (or no events to send) are left out. */
export function stepArbitrary(
  events: fc.Arbitrary<AnyEventObject> | undefined,
  weights: Readonly<Record<CheckStep['kind'], number>>,
  jumpsMs: readonly number[],
): fc.Arbitrary<CheckStep> | undefined {
  const arbs: fc.WeightedArbitrary<CheckStep>[] = [];
  if (events && weights.send > 0) {
    arbs.push({ weight: weights.send, arbitrary: events.map((event): CheckStep => ({ kind: 'send', event })) });
  }
  if (jumpsMs.length > 0 && weights.advance > 0) {
    arbs.push({ weight: weights.advance, arbitrary: fc.constantFrom(...jumpsMs).map((ms): CheckStep => ({ kind: 'advance', ms })) });
  }
  if (weights.passivate > 0) {
    arbs.push({ weight: weights.passivate, arbitrary: fc.boolean().map((force): CheckStep => ({ kind: 'passivate', force })) });
  }
  if (weights.restart > 0) {
    arbs.push({ weight: weights.restart, arbitrary: fc.constant<CheckStep>({ kind: 'restart' }) });
  }
  return arbs.length > 0 ? fc.oneof(...arbs) : undefined;
}

/**
 * The steps that replay a graph path: events are sent, timer steps become
 * clock jumps, and invoked actors' results are left to the real
 * invocations (both sides settle after every step).
 */
export function pathSteps(path: TestPath): CheckStep[] {
  const out: CheckStep[] = [];
  for (const s of path.steps) {
    if (s.delayMs !== undefined) out.push({ kind: 'advance', ms: s.delayMs });
    else if (!s.event.type.startsWith('xstate.')) out.push({ kind: 'send', event: s.event });
  }
  return out;
}

/** Random sequences, and graph paths with faults inserted and a random tail. */
export function sequenceArbitrary(
  step: fc.Arbitrary<CheckStep>,
  fault: fc.Arbitrary<CheckStep> | undefined,
  paths: readonly (readonly CheckStep[])[],
  stepsMax: number,
): fc.Arbitrary<CheckStep[]> {
  const random = fc.array(step, { maxLength: stepsMax, size: 'medium' });
  if (paths.length === 0) return random;
  const walked = fc
    .record({
      path: fc.integer({ min: 0, max: paths.length - 1 }),
      faults: fault ? fc.array(fc.tuple(fc.nat(), fault), { maxLength: 4 }) : fc.constant([]),
      tail: fc.array(step, { maxLength: Math.max(1, Math.floor(stepsMax / 3)) }),
    })
    .map(({ path, faults, tail }) => {
      const out: CheckStep[] = [...paths[path]!];
      // Insert from the back so earlier positions stay valid.
      const sorted = [...faults].map(([at, f]) => [at % (out.length + 1), f] as const).sort((a, b) => b[0] - a[0]);
      for (const [at, f] of sorted) out.splice(at, 0, f);
      return [...out, ...tail].slice(0, Math.max(stepsMax, out.length));
    });
  return fc.oneof({ weight: 1, arbitrary: random }, { weight: 1, arbitrary: walked });
}
