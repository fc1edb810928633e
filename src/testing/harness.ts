/**
 * Runs one step list through a plain XState actor and a Shardchart entity
 * side by side, checking invariants on every state the plain actor takes
 * and agreement after every step.
 *
 * Both sides share one simulated clock. A clock jump stops at every timer
 * deadline on the way and lets both sides settle there, so an entity woken
 * from passivation by its timer runs at the deadline, as the plain actor
 * did. After every step both sides settle: macrotask turns pass until
 * neither side has changed for a few turns, so invoked promises finish on
 * both sides before they are compared. Invoked actors therefore run on
 * both sides (and again on the entity side when a restart or a forced
 * passivation catches them in flight); they must depend only on their
 * input, as entity invocations must anyway (at-least-once).
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
import { createSteppingClock } from './stepping-clock.js';
import type { CheckFailure, CheckStep, Invariant } from './types.js';

/** Entity type and id the checked machine runs under. */
export const CHECK_ENTITY_TYPE = 'checked';
export const CHECK_ENTITY_ID = 'c-1';
const START_MS = 1_000_000;
/** Unchanged macrotask turns after which a side counts as settled. */
const QUIET_TURNS = 3;
/** Macrotask turns an engine call may take before it counts as hung. */
const ANSWER_TURNS_MAX = 10_000;

export interface RunConfig {
  machine: AnyStateMachine;
  input: (id: string) => unknown;
  invariants: readonly (readonly [string, Invariant])[];
  snapshotEvery: number;
  settleTurnsMax: number;
  timerFiringsMax: number;
  timerResume: TimerResume;
  logger: Logger | undefined;
}

export interface RunResult {
  failure: CheckFailure | undefined;
  /** Steps completed per kind (a failing step included). */
  stepKinds: Record<CheckStep['kind'], number>;
  /** Delayed events the plain actor processed. */
  timerEvents: number;
}

const macrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

class Hung extends Error {}

/** Awaits `p`, giving up after ANSWER_TURNS_MAX macrotask turns. */
async function answer<T>(p: Promise<T>, what: string): Promise<T> {
  let settled = false;
  const tracked = p.finally(() => {
    settled = true;
  });
  // Most answers come within microtasks: the race returns them at once,
  // and the watchdog stops at its next turn.
  const watchdog = (async (): Promise<never> => {
    for (let turn = 0; turn < ANSWER_TURNS_MAX; turn++) {
      await macrotask();
      if (settled) return new Promise<never>(() => undefined);
    }
    throw new Hung(`${what} did not answer within ${ANSWER_TURNS_MAX} macrotask turns (hung)`);
  })();
  return Promise.race([tracked, watchdog]);
}

/** True while an invoked promise, callback or observable runs in the actor tree. */
function hasInvocationInFlight(snapshot: { children?: Record<string, AnyActorRef> }): boolean {
  for (const child of Object.values(snapshot.children ?? {})) {
    const s = child.getSnapshot() as { status: string; value?: unknown; children?: Record<string, AnyActorRef> };
    if (s.status !== 'active') continue;
    if (!('value' in s) || hasInvocationInFlight(s)) return true;
  }
  return false;
}

export async function runSteps(cfg: RunConfig, steps: readonly CheckStep[]): Promise<RunResult> {
  const clock = createSteppingClock(START_MS);
  const store = memoryStore();
  const logger = cfg.logger ?? pino({ level: 'silent' });
  let failure: CheckFailure | undefined;
  let index = 0;
  let step: CheckStep | undefined;

  // ------------------------------------------------------------ plain side
  let plainError: unknown;
  let timerEvents = 0;
  const onPlain = (snapshot: AnyMachineSnapshot, event: AnyEventObject): void => {
    if (event.type.startsWith('xstate.after.')) timerEvents++;
    if (failure || snapshot.status === 'error') return;
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
  let side = await open();

  /**
   * Lets both sides finish what a step started: macrotask turns pass until
   * nothing has changed for QUIET_TURNS turns (one turn when no invocation
   * is in flight on the plain side, the common case).
   */
  const settle = async (): Promise<void> => {
    let quiet = 0;
    let last: unknown[] = [];
    for (let turn = 0; turn < cfg.settleTurnsMax; turn++) {
      await macrotask();
      const snap = actor.getSnapshot() as AnyMachineSnapshot;
      const sig = [snap, changes, clock.nextDeadline(), side.ref.isLive()];
      quiet = sig.every((v, i) => v === last[i]) ? quiet + 1 : 0;
      last = sig;
      if (quiet >= (hasInvocationInFlight(snap) ? QUIET_TURNS : 1)) return;
    }
  };

  const entityError = (err: unknown): CheckFailure => ({
    kind: 'error',
    side: 'entity',
    message: err instanceof Error ? `${isShardchartError(err) ? `${err.code}: ` : ''}${err.message}` : String(err),
    index,
  });

  /** Compares plain with the live entity and with the entity rebuilt from the store. */
  const compare = async (): Promise<CheckFailure | undefined> => {
    if (plainError !== undefined || actor.getSnapshot().status === 'error') {
      const err = plainError ?? (actor.getSnapshot() as AnyMachineSnapshot).error;
      return { kind: 'error', side: 'plain', message: err instanceof Error ? err.message : String(err), index };
    }
    const plain = viewOf(actor.getSnapshot() as AnyMachineSnapshot);
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

  const run = async (s: CheckStep): Promise<CheckFailure | undefined> => {
    switch (s.kind) {
      case 'send': {
        const active = actor.getSnapshot().status === 'active';
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
        await answer(side.ref.passivate({ force: s.force }), 'ref.passivate()');
        break;
      case 'restart':
        await answer(side.system.stop(), 'system.stop()');
        side = await open();
        break;
    }
    await settle();
    return failure ?? (await compare());
  };

  const stepKinds: RunResult['stepKinds'] = { send: 0, advance: 0, passivate: 0, restart: 0 };
  try {
    actor.start();
    // Activate the entity now, so its initial timers start when the plain
    // actor's do.
    await answer(side.ref.snapshot(), 'ref.snapshot()');
    await settle();
    failure ??= await compare();
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
    await answer(side.system.stop(), 'system.stop()').catch(() => undefined);
  }
  return { failure, stepKinds, timerEvents };
}
