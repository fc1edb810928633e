/**
 * checkMachine: a differential property test of one machine, as plain
 * XState and as a Shardchart entity, under generated event sequences and
 * injected faults.
 */
import fc from 'fast-check';
import type { AnyStateMachine } from 'xstate';
import { CheckFailedError, ConfigError } from '../errors.js';
import { defaultJumps, defaultWeights, eventArbitrary, graphSamples, pathSteps, sequenceArbitrary, stepArbitrary } from './generate.js';
import { CHECK_ENTITY_ID, CHECK_ENTITY_TYPE, runSteps, type RunConfig } from './harness.js';
import { behaviourKey } from './event-types.js';
import { getTestPaths } from './paths.js';
import { failureSignature, formatFailure, minimize } from './report.js';
import type { CheckFailure, CheckMachineOptions, CheckReport, CheckStep, Invariant } from './types.js';
import { assertExamples, assertMachine, intOption } from './validate.js';

const FN = 'checkMachine';
const RUNS_DEFAULT = 30;
const STEPS_MAX = 24;
const SETTLE_TURNS_MAX = 200;
const TIMER_FIRINGS_MAX = 1_000;
const SNAPSHOT_EVERY: readonly number[] = [1, 3, 100];
const GRAPH_DEPTH_MAX = 12;
const GRAPH_STATES_MAX = 300;
const GRAPH_PATHS_MAX = 200;

/**
 * Checks a machine the way Shardchart will run it. fast-check generates
 * step lists (events from `events`, and walks along the machine's graph
 * paths) with clock jumps, passivations and restarts mixed in. Each list
 * runs through a plain XState actor and through a Shardchart entity on a
 * memory store, both on one simulated clock. After every step both sides
 * must agree (value, context, status, output), the entity rebuilt from its
 * snapshot and journal must agree too, and every invariant must hold in
 * every state the plain actor passes through.
 *
 * Delayed events (`xstate.after.*`) are never sent as events: sending one
 * would take the transition without its timer, which no running actor can
 * do. Time passes instead, in clock jumps (by default each delay of the
 * machine and one millisecond either side), and the timers fire on both
 * sides. Other `xstate.*` events are never sent either: invoked actors
 * answer for themselves, and both sides wait for them after every step.
 *
 * One difference between the sides is legitimate and reported as such: a
 * restart or forced passivation that catches an invoked promise or
 * callback in flight makes Shardchart run it again (at-least-once). A
 * machine that counts such a re-run fails with a note saying so;
 * `faultsWhileInvoking: false` skips those faults.
 *
 * A failure is shrunk to a minimal step list and thrown as a
 * `CheckFailedError` (code `CHECK_FAILED`) whose message lists the steps,
 * the seed and the path that replay it; `details` holds the same as data
 * (see {@link CheckFailure}).
 *
 * Runs default to env `SHARDCHART_PROPERTY_RUNS`, else 30.
 *
 * @example
 * ```ts
 * import fc from 'fast-check';
 * import { checkMachine } from 'shardchart/testing';
 *
 * await checkMachine(cartMachine, {
 *   events: {
 *     ADD: fc.constantFrom('tea', 'mug').map((sku) => ({ type: 'ADD', sku })),
 *     CHECKOUT: fc.constant({ type: 'CHECKOUT' }),
 *   },
 *   invariants: {
 *     'at most 10 items': (s) => (s.context as { items: string[] }).items.length <= 10,
 *   },
 * });
 * ```
 */
export async function checkMachine(machine: AnyStateMachine, options: CheckMachineOptions = {}): Promise<CheckReport> {
  assertMachine(machine, FN);
  const runs = intOption(FN, 'runs', options.runs, envRuns() ?? RUNS_DEFAULT);
  const stepsMax = intOption(FN, 'stepsMax', options.stepsMax, STEPS_MAX, 0, 10_000);
  const settleTurnsMax = intOption(FN, 'settleTurnsMax', options.settleTurnsMax, SETTLE_TURNS_MAX);
  const timerFiringsMax = intOption(FN, 'timerFiringsMax', options.timerFiringsMax, TIMER_FIRINGS_MAX);
  const snapshotEvery = options.snapshotEvery ?? SNAPSHOT_EVERY;
  if (snapshotEvery.length === 0) throw new ConfigError(`${FN}: option snapshotEvery must list at least one interval.`);
  snapshotEvery.forEach((n, i) => intOption(FN, `snapshotEvery[${i}]`, n, 1));
  const jumps = options.clockJumpsMs ?? defaultJumps(machine);
  jumps.forEach((n, i) => intOption(FN, `clockJumpsMs[${i}]`, n, 0));
  const weights = { ...defaultWeights, ...options.weights };
  for (const [kind, w] of Object.entries(weights)) intOption(FN, `weights.${kind}`, w, defaultWeights[kind as CheckStep['kind']], 0);
  assertExamples(FN, options.examples);
  if (options.path !== undefined && options.seed === undefined) {
    throw new ConfigError(`${FN}: option path replays a failure only together with its seed; pass both as printed in the failure.`);
  }
  if (options.input !== undefined && typeof options.input !== 'function') {
    throw new ConfigError(`${FN}: option input must be a function of the entity id, as in an entity type config; got ${typeof options.input}.`);
  }
  const input = options.input ?? ((entityId: string) => ({ entityId, entityType: CHECK_ENTITY_TYPE }));

  const config: Omit<RunConfig, 'snapshotEvery'> = {
    machine,
    input,
    invariants: invariantList(options.invariants),
    settleTurnsMax,
    timerFiringsMax,
    timerResume: options.timerResume ?? 'deadline',
    faultsWhileInvoking: options.faultsWhileInvoking ?? true,
    logger: options.logger,
  };

  const events = eventArbitrary(machine, options.events);
  const step = stepArbitrary(events, weights, jumps);
  const fault = stepArbitrary(undefined, { ...weights, send: 0 }, jumps);
  const paths = graphPathSteps(machine, options, input(CHECK_ENTITY_ID));
  const sequences = step ? sequenceArbitrary(step, fault, paths, stepsMax) : fc.constant<CheckStep[]>([]);

  const stepKinds: CheckReport['stepKinds'] = { send: 0, advance: 0, passivate: 0, restart: 0 };
  let timerEvents = 0;
  const property = fc.asyncProperty(sequences, fc.constantFrom(...snapshotEvery), async (list, every) => {
    const result = await runSteps({ ...config, snapshotEvery: every }, list);
    for (const k of Object.keys(stepKinds) as CheckStep['kind'][]) stepKinds[k] += result.stepKinds[k];
    timerEvents += result.timerEvents;
    return result.failure === undefined;
  });
  const examples = (options.examples ?? []).flatMap((ex) => snapshotEvery.map((every): [CheckStep[], number] => [[...ex], every]));
  const details = await fc.check(property, {
    // fast-check counts examples among the runs.
    numRuns: runs + examples.length,
    examples,
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
    ...(options.path !== undefined ? { path: options.path } : {}),
  });
  if (!details.failed) {
    const steps = Object.values(stepKinds).reduce((a, b) => a + b, 0);
    return { runs: details.numRuns, steps, seed: details.seed, graphPaths: paths.length, stepKinds, timerEvents };
  }
  if (!details.counterexample) {
    // The property threw outside a run (fast-check itself failed).
    throw new CheckFailedError(`${FN} could not run: ${String(details.errorInstance)}`, {
      cause: details.errorInstance,
      details: { seed: details.seed },
    });
  }
  const [found, every] = details.counterexample;
  const failureWith = async (steps: readonly CheckStep[], n: number) => (await runSteps({ ...config, snapshotEvery: n }, steps)).failure;
  const first = await failureWith(found, every);
  if (!first) {
    throw new CheckFailedError(
      `${FN}: a step list failed once and passed when run again, so the machine (or an invoked actor) is not deterministic. Seed ${details.seed}, path ${JSON.stringify(details.counterexamplePath)}; steps: ${JSON.stringify(found)}`,
      { details: { seed: details.seed, path: details.counterexamplePath, steps: found, snapshotEvery: every } },
    );
  }
  // Shrink under the interval that failed, then under the others: a bug
  // that shows only when replay starts before some step may need fewer
  // steps when snapshots are rarer (or more frequent).
  const signature = failureSignature(first);
  const sameBug = (f: CheckFailure | undefined): boolean => f !== undefined && failureSignature(f) === signature;
  let best = { steps: await minimize(found, async (c) => sameBug(await failureWith(c, every))), every };
  for (const other of snapshotEvery) {
    if (other === every || !sameBug(await failureWith(found, other))) continue;
    const steps = await minimize(found, async (c) => sameBug(await failureWith(c, other)));
    if (steps.length < best.steps.length) best = { steps, every: other };
  }
  const failure = (await failureWith(best.steps, best.every)) ?? first;
  const report = {
    failure,
    steps: best.steps,
    originalLength: found.length,
    snapshotEvery: best.every,
    seed: details.seed,
    path: details.counterexamplePath ?? '',
  };
  throw new CheckFailedError(formatFailure(report), { details: { ...report } });
}

function invariantList(invariants: CheckMachineOptions['invariants']): [string, Invariant][] {
  if (invariants === undefined) return [];
  if (typeof invariants === 'function') return [[invariants.name || 'invariant', invariants]];
  const list = Object.entries(invariants);
  for (const [name, fn] of list) {
    if (typeof fn !== 'function') throw new ConfigError(`${FN}: invariants.${name} must be a function; got ${typeof fn}.`);
  }
  return list;
}

function graphPathSteps(machine: AnyStateMachine, options: CheckMachineOptions, input: unknown): CheckStep[][] {
  if (options.graphPaths === false) return [];
  const limits = typeof options.graphPaths === 'object' ? options.graphPaths : {};
  const samples = graphSamples(machine, options.events);
  // States are told apart by value and by which events they would take,
  // not by context: contexts multiply states without adding much that
  // random sequences do not cover, and each explored state costs a pure
  // transition per event. A guard that depends on context still splits
  // states (a cart that can check out differs from one that cannot).
  const sampleList = samples ? Object.values(samples).flat() : undefined;
  const sampleTypes = new Set(Object.keys(samples ?? {}));
  const paths = getTestPaths(machine, {
    kind: limits.kind ?? 'shortest',
    depthMax: limits.depthMax ?? GRAPH_DEPTH_MAX,
    statesMax: limits.statesMax ?? GRAPH_STATES_MAX,
    pathsMax: limits.pathsMax ?? GRAPH_PATHS_MAX,
    serializeState: limits.serializeState ?? ((s) => behaviourKey(s, sampleList, sampleTypes)),
    ...(samples ? { events: samples } : {}),
    input,
  });
  return paths.map(pathSteps).filter((s) => s.length > 0);
}

function envRuns(): number | undefined {
  const n = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? '');
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}
