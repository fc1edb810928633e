/**
 * Runs one step list through a plain XState actor and a Shardchart entity
 * side by side, checking invariants on every state the plain actor takes
 * and agreement after every step.
 *
 * Both sides share one simulated clock. A clock jump stops at every timer
 * deadline on the way and lets both sides settle there, so an entity woken
 * from passivation by its timer runs at the deadline, as the plain actor
 * did. After every step both sides settle: macrotask turns pass until
 * neither side has changed for a few turns and the live entity agrees with
 * the plain actor (or `settleTurnsMax` runs out), so invoked promises
 * finish on both sides before they are compared. Invoked actors therefore
 * run on both sides; they must depend only on their input, as entity
 * invocations must anyway.
 *
 * Where the two sides legitimately differ: a restart or a forced
 * passivation that catches an invocation in flight makes Shardchart run it
 * again on the next activation (at-least-once), while the plain actor ran
 * it once. A machine that counts what such an actor sends on start, say,
 * then diverges; the failure says which step re-ran which invocation, and
 * `faultsWhileInvoking: false` skips those faults instead.
 *
 * The entity is compared twice: its live state, and the state rebuilt from
 * its snapshot and journal (`stateAt`), which is what a restore would see.
 *
 * @internal
 */
import { pino, type Logger } from 'pino';
import { createActor, type AnyActorRef, type AnyEventObject, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate';
import { memoryStore } from '../../adapters/memory/index.js';
import { isShardchartError } from '../errors.js';
import { createActorSystem } from '../system/actor-system.js';
import type { ActorSystem, EntityRef, EntityState, TimerResume } from '../system/types.js';
import { firstDifference, viewOf } from './compare.js';
import { answer, Hung, invocationsInFlight, macrotask } from './in-flight.js';
import { createSteppingClock } from './stepping-clock.js';
import type { CheckFailure, CheckStep, Invariant } from './types.js';

/** Entity type and id the checked machine runs under. */
export const CHECK_ENTITY_TYPE = 'checked';
export const CHECK_ENTITY_ID = 'c-1';
const START_MS = 1_000_000;

export interface RunConfig {
  machine: AnyStateMachine;
  input: (id: string) => unknown;
  invariants: readonly (readonly [string, Invariant])[];
  snapshotEvery: number;
  settleTurnsMax: number;
  timerFiringsMax: number;
  timerResume: TimerResume;
  /** Run restarts and forced passivations while an invocation is in flight. */
  faultsWhileInvoking: boolean;
  logger: Logger | undefined;
}

interface RunResult {
  failure: CheckFailure | undefined;
  /** Steps completed per kind (a failing step included). */
  stepKinds: Record<CheckStep['kind'], number>;
  /** Delayed events the plain actor processed. */
  timerEvents: number;
}

let silent: Logger | undefined;

export async function runSteps(cfg: RunConfig, steps: readonly CheckStep[]): Promise<RunResult> {
  const clock = createSteppingClock(START_MS);
  const store = memoryStore();
  const logger = cfg.logger ?? (silent ??= pino({ level: 'silent' }));
  let failure: CheckFailure | undefined;
  let index = 0;
  let step: CheckStep | undefined;

  // ------------------------------------------------------------ plain side
  let plainError: unknown;
  let timerEvents = 0;
  const onPlain = (snapshot: AnyMachineSnapshot, event: AnyEventObject): void => {
    if (event.type.startsWith('xstate.after.')) timerEvents++;
    // The harness stopping the actor at the end is not a state of the run.
    if (failure || snapshot.status === 'error' || event.type === 'xstate.stop') return;
    const state = viewOf(snapshot);
    for (const [name, invariant] of cfg.invariants) {
      let ok: boolean | void;
      let error: string | undefined;
      try {
        ok = invariant(state, { index, step, event });
      } catch (err) {
        ok = false;
        error = err instanceof Error ? err.message : String(err);
      }
      if (ok === false) {
        failure = { kind: 'invariant', name, state, index, event, ...(error !== undefined ? { error } : {}) };
        return;
      }
    }
  };
  const actor: AnyActorRef = createActor(cfg.machine, {
    input: cfg.input(CHECK_ENTITY_ID),
    clock,
    inspect: (ev) => {
      if (ev.type === '@xstate.snapshot' && ev.actorRef.sessionId === ev.rootId) {
        onPlain(ev.snapshot as AnyMachineSnapshot, ev.event);
      }
    },
  });
  actor.subscribe({ error: (err: unknown) => (plainError ??= err) });
  const plainSnapshot = (): AnyMachineSnapshot => actor.getSnapshot() as AnyMachineSnapshot;

  // ----------------------------------------------------------- entity side
  let changes = 0;
  const open = async (): Promise<{ system: ActorSystem; ref: EntityRef }> => {
    const system = await createActorSystem({
      name: 'check',
      entities: { [CHECK_ENTITY_TYPE]: { machine: cfg.machine, input: cfg.input, timerResume: cfg.timerResume } },
      store,
      clock,
      logger,
      snapshotEvery: cfg.snapshotEvery,
      // Passivation happens only as a step, never because time passed.
      passivateAfterMs: 0,
      // A failed entity is reported at once instead of retried on a clock
      // that only moves when a step says so.
      restart: { attemptsMax: 1 },
    });
    const ref = system.entity(CHECK_ENTITY_TYPE, CHECK_ENTITY_ID);
    ref.subscribe(() => changes++);
    return { system, ref };
  };
  // Opened inside the try below, before anything reads it.
  let side!: { system: ActorSystem; ref: EntityRef };

  /** True unless the live entity is known to differ from the plain actor. */
  const entityAgrees = async (): Promise<boolean> => {
    if (!side.ref.isLive()) return true;
    try {
      const live = await answer(side.ref.snapshot(), 'ref.snapshot()');
      return firstDifference(viewOf(plainSnapshot()), viewOf(live)) === undefined;
    } catch {
      return true; // compare() reports it
    }
  };

  /**
   * Lets both sides finish what a step started. Macrotask turns pass until
   * nothing has changed for a turn, no invocation is in flight on the
   * plain side, and the live entity agrees with the plain actor. An
   * invocation that is still running after `settleTurnsMax` turns counts
   * as long-running (a callback actor, a promise that waits for an event):
   * the step ends with it in flight. An invocation may finish a turn later
   * on one side than on the other; waiting for agreement covers that, and
   * a real divergence only costs the remaining turns.
   */
  const settle = async (): Promise<void> => {
    let last: unknown[] = [];
    for (let turn = 0; turn < cfg.settleTurnsMax; turn++) {
      await macrotask();
      const snap = plainSnapshot();
      const sig = [snap, changes, clock.nextDeadline(), side.ref.isLive()];
      const quiet = sig.every((v, i) => v === last[i]);
      last = sig;
      if (quiet && invocationsInFlight(snap).length === 0 && (await entityAgrees())) return;
    }
  };

  /** Faults that caught invocations in flight, for the failure report. */
  const reruns: string[] = [];
  /** Whether a fault step runs now; notes the invocations it catches. */
  const faultMayRun = (): boolean => {
    const running = invocationsInFlight(plainSnapshot());
    if (running.length === 0) return true;
    if (!cfg.faultsWhileInvoking) return false;
    reruns.push(`step ${index} caught invoked ${running.map((id) => `"${id}"`).join(', ')} in flight`);
    return true;
  };

  const entityError = (err: unknown): CheckFailure => ({
    kind: 'error',
    side: 'entity',
    message: err instanceof Error ? `${isShardchartError(err) ? `${err.code}: ` : ''}${err.message}` : String(err),
    index,
  });

  /** Compares plain with the live entity and with the entity rebuilt from the store. */
  const compare = async (): Promise<CheckFailure | undefined> => {
    if (plainError !== undefined || plainSnapshot().status === 'error') {
      const err: unknown = plainError ?? plainSnapshot().error;
      return { kind: 'error', side: 'plain', message: err instanceof Error ? err.message : String(err), index };
    }
    const plain = viewOf(plainSnapshot());
    const { ref, system } = side;
    let live: EntityState | undefined;
    if (ref.isLive()) {
      live = await answer(ref.snapshot(), 'ref.snapshot()');
      const path = firstDifference(plain, viewOf(live));
      if (path !== undefined) return { kind: 'divergence', where: 'live entity', path, plain, entity: viewOf(live), index };
    }
    const seq = live?.seq ?? (await answer(system.store.journal.lastSeq({ type: CHECK_ENTITY_TYPE, id: CHECK_ENTITY_ID }), 'journal.lastSeq()'));
    const rebuilt = viewOf(await answer(ref.stateAt(seq), 'ref.stateAt()'));
    const path = firstDifference(plain, rebuilt);
    if (path !== undefined) {
      return { kind: 'divergence', where: `entity rebuilt from snapshot and journal (stateAt ${seq})`, path, plain, entity: rebuilt, index };
    }
    return undefined;
  };

  /** A divergence after a fault re-ran an invocation says so. */
  const withNote = (f: CheckFailure | undefined): CheckFailure | undefined => {
    if (f?.kind !== 'divergence' || reruns.length === 0) return f;
    return {
      ...f,
      note: `${reruns.join('; ')}. Shardchart runs an invocation caught by a restart or forced passivation again on the next activation (at-least-once); the plain actor ran it once. Make the machine tolerate a re-run, or pass faultsWhileInvoking: false to skip such faults.`,
    };
  };

  const run = async (s: CheckStep): Promise<CheckFailure | undefined> => {
    switch (s.kind) {
      case 'send': {
        const active = plainSnapshot().status === 'active';
        if (active) actor.send(s.event);
        const outcome = await answer(side.ref.send(s.event), 'ref.send()').then(
          () => undefined,
          (err: unknown) => err,
        );
        if (outcome instanceof Hung) throw outcome;
        if (outcome !== undefined && !(isShardchartError(outcome, 'ENTITY_STOPPED') && !active)) return entityError(outcome);
        break;
      }
      case 'advance': {
        const target = clock.now() + s.ms;
        for (let n = 0; clock.nextDeadline() <= target; n++) {
          if (n >= cfg.timerFiringsMax) {
            return { kind: 'error', side: 'plain', message: `more than ${cfg.timerFiringsMax} timer deadlines within one clock jump of ${s.ms} ms (a timer loop?)`, index };
          }
          clock.moveTo(clock.nextDeadline());
          await settle();
        }
        clock.moveTo(target);
        break;
      }
      case 'passivate':
        // Unforced, the engine itself refuses while an invocation runs.
        if (s.force && !faultMayRun()) break;
        await answer(side.ref.passivate({ force: s.force }), 'ref.passivate()');
        break;
      case 'restart':
        if (!faultMayRun()) break;
        await answer(side.system.stop(), 'system.stop()');
        side = await open();
        break;
    }
    await settle();
    return failure ?? withNote(await compare());
  };

  const stepKinds: RunResult['stepKinds'] = { send: 0, advance: 0, passivate: 0, restart: 0 };
  let opened = false;
  try {
    side = await open();
    opened = true;
    actor.start();
    // Activate the entity now, so its initial timers start when the plain
    // actor's do.
    await answer(side.ref.snapshot(), 'ref.snapshot()');
    await settle();
    failure ??= withNote(await compare());
    for (const s of steps) {
      if (failure) break;
      index++;
      step = s;
      stepKinds[s.kind]++;
      failure ??= await run(s);
    }
  } catch (err) {
    failure ??= entityError(err);
  } finally {
    actor.stop();
    if (opened) await answer(side.system.stop(), 'system.stop()').catch(() => undefined);
  }
  return { failure, stepKinds, timerEvents };
}
