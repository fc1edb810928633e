import type { AnyActorRef } from 'xstate';
import { actionDefaults } from './actions.js';
import type { ActionOutcome } from './execute.js';
import { clockOf } from './action-call.js';
import {
  ACTION_ACTOR,
  ACTION_DONE,
  TIMER,
  TIMER_CHUNK_MS,
  timerId,
  type StepCall,
  type StepsEvent,
  type TakeEvent,
  type TimerEvent,
} from './events.js';
import { startRunner } from './runner.js';
import type { Scope, WorkflowBinding, WorkflowSpec } from './spec.js';
import type { StepRecord, WorkflowEvent, WorkflowSnapshot } from './types.js';

/**
 * The pure part of a workflow actor: how each journaled event changes the
 * snapshot. Nothing here runs an effect; what must happen after a
 * transition (start the function, start an action actor, schedule or
 * cancel a timer) is handed to `scope.defer`, which XState runs for a live
 * actor and skips in `transition()`, the engine's replay.
 */

/** What the transitions need from the definition. @internal */
export interface TransitionEnv {
  readonly spec: WorkflowSpec;
  readonly binding: WorkflowBinding;
  /** Creates (without starting) the actor of the action call at `step`. */
  readonly spawnAction: (
    scope: Scope,
    step: number,
    id: string,
    name: string,
    params: unknown,
  ) => AnyActorRef;
}

/** The transitions of one workflow definition. @internal */
export function createTransitions(env: TransitionEnv) {
  const { spec, binding, spawnAction } = env;

  /** The trigger starts the function; later events end a wait or go to the inbox. */
  function receive(
    snap: WorkflowSnapshot,
    event: WorkflowEvent,
    scope: Scope,
  ): WorkflowSnapshot {
    if (snap.trigger === undefined) {
      scope.defer(() => startRunner(spec, binding, scope.self));
      return {
        ...snap,
        trigger: event,
        value: 'running',
        context: { input: spec.input(event), data: snap.context.data },
      };
    }
    for (const i of snap.open) {
      const rec = snap.steps[i]!;
      if (rec.kind === 'wait' && rec.types?.includes(event.type))
        return complete(snap, i, { result: event }, scope);
    }
    // A full inbox refuses the event: the snapshot does not change, so the
    // system answers the sender EVENT_REJECTED (workflow types reject
    // unhandled events) instead of dropping it silently.
    if (snap.inbox.length >= spec.inboxMax) return snap;
    const n = snap.received + 1;
    return { ...snap, inbox: [...snap.inbox, { n, event }], received: n };
  }

  function recordSteps(
    snap: WorkflowSnapshot,
    event: StepsEvent,
    scope: Scope,
  ): WorkflowSnapshot {
    // The runner is the only source of steps and numbers them itself; a
    // batch that does not continue the log is a bug, not an input.
    if (event.from !== snap.steps.length || !Array.isArray(event.steps)) {
      throw new Error(
        `workflow "${spec.name}": steps batch starts at ${String(event.from)}, but the log has ${snap.steps.length} steps`,
      );
    }
    const steps = [...snap.steps];
    let { open, inbox, value, context, children } = snap;
    for (const call of event.steps) {
      const i = steps.length;
      switch (call.kind) {
        case 'action': {
          const rec: StepRecord = {
            kind: 'action',
            name: call.name,
            done: false,
            params: call.params,
          };
          if (call.id !== undefined) rec.id = call.id;
          if (call.ph !== undefined) rec.ph = call.ph;
          steps.push(rec);
          open = [...open, i];
          {
            const child = spawnAction(
              scope,
              i,
              call.id ?? String(i),
              call.name,
              call.params,
            );
            children = { ...children, [ACTION_ACTOR + i]: child };
            scope.defer(() => child.start());
            watch(scope, i, call.name);
          }
          break;
        }
        case 'sleep':
          steps.push(
            withTimer(scope, i, {
              kind: 'sleep',
              name: '',
              done: false,
              ms: call.ms ?? 0,
              dueAt: (call.at ?? 0) + (call.ms ?? 0),
            }),
          );
          open = [...open, i];
          break;
        case 'wait': {
          const at =
            call.types === undefined
              ? -1
              : inbox.findIndex((e) => call.types!.includes(e.event.type));
          if (at >= 0) {
            steps.push({
              kind: 'wait',
              name: call.name,
              done: true,
              result: inbox[at]!.event,
            });
            inbox = inbox.filter((_, k) => k !== at);
            break;
          }
          const rec: StepRecord = {
            kind: 'wait',
            name: call.name,
            done: false,
          };
          if (call.types !== undefined) rec.types = call.types;
          steps.push(
            call.ms === undefined
              ? rec
              : withTimer(scope, i, {
                  ...rec,
                  ms: call.ms,
                  dueAt: (call.at ?? 0) + call.ms,
                }),
          );
          open = [...open, i];
          break;
        }
        case 'state':
          steps.push({ kind: 'state', name: call.name, done: true });
          value = call.name;
          break;
        case 'data':
          steps.push({
            kind: 'data',
            name: call.name,
            done: true,
            result: call.value,
          });
          context = {
            ...context,
            data: { ...context.data, [call.name]: call.value },
          };
          break;
        case 'data.delete': {
          steps.push({ kind: 'data.delete', name: call.name, done: true });
          const { [call.name]: _gone, ...data } = context.data;
          context = { ...context, data };
          break;
        }
        default:
          steps.push({
            kind: call.kind,
            name: call.name,
            done: true,
            result: call.value,
          });
      }
      scoped(call);
    }
    return { ...snap, steps, open, inbox, value, context, children };

    /** Marks the record just pushed for `call` with its branch scope. */
    function scoped(call: StepCall): void {
      if (call.scope !== undefined) steps[steps.length - 1]!.scope = call.scope;
    }
  }

  function timerFired(
    snap: WorkflowSnapshot,
    event: TimerEvent,
    scope: Scope,
  ): WorkflowSnapshot {
    const { step } = event;
    if (typeof step !== 'number' || !snap.open.includes(step)) return snap;
    const rec = snap.steps[step]!;
    // A link of a timer longer than one scheduler delay: the next link is
    // due from the deadline, not from when this one was delivered.
    if (
      typeof event.due === 'number' &&
      rec.dueAt !== undefined &&
      event.due < rec.dueAt
    ) {
      const steps = [...snap.steps];
      steps[step] = withTimer(scope, step, rec);
      return { ...snap, steps };
    }
    if (rec.kind === 'sleep') return complete(snap, step, {}, scope, false);
    if (rec.kind === 'wait')
      return complete(snap, step, { timedOut: true }, scope, false);
    if (rec.kind === 'action') {
      // Still running (slow, or retrying): watch on. A new snapshot object
      // keeps this journaled with the re-armed timer.
      watch(scope, step, rec.name);
      return { ...snap };
    }
    return snap;
  }

  /**
   * A durable timer beside a running action, due after one attempt's
   * timeout. Its only job is the case where the process dies: the system's
   * timer index then wakes the entity by this deadline, and activation runs
   * the action again. Nothing is journaled for it while the action answers
   * in time (it starts and ends with the call's own entries).
   */
  function watch(scope: Scope, i: number, name: string): void {
    const delay =
      binding.actions?.resolve(name)?.timeoutMs ?? actionDefaults.timeoutMs;
    const self = scope.self;
    const fired: TimerEvent = { type: TIMER, step: i };
    scope.defer(() =>
      scope.system.scheduler.schedule(self, self, fired, delay, timerId(i)),
    );
  }

  function take(
    snap: WorkflowSnapshot,
    event: TakeEvent,
    scope: Scope,
  ): WorkflowSnapshot {
    if (
      !snap.open.includes(event.step) ||
      snap.steps[event.step]?.kind !== 'wait'
    )
      return snap;
    if ('error' in event)
      return complete(snap, event.step, { error: event.error }, scope);
    const at = snap.inbox.findIndex((e) => e.n === event.n);
    if (at < 0) return snap;
    const done = complete(
      snap,
      event.step,
      { result: snap.inbox[at]!.event },
      scope,
    );
    return { ...done, inbox: snap.inbox.filter((_, k) => k !== at) };
  }

  function actionDone(
    snap: WorkflowSnapshot,
    event: WorkflowEvent,
    scope: Scope,
  ): WorkflowSnapshot {
    const step = Number(event.type.slice(ACTION_DONE.length));
    const outcome = (event as { output?: unknown }).output as
      ActionOutcome | undefined;
    if (
      !Number.isSafeInteger(step) ||
      !snap.open.includes(step) ||
      typeof outcome !== 'object' ||
      outcome === null
    )
      return snap;
    return complete(
      snap,
      step,
      outcome.ok ? { result: outcome.result } : { error: outcome.error },
      scope,
    );
  }

  /** Marks step `i` done with `patch`, closing what it held open. */
  function complete(
    snap: WorkflowSnapshot,
    i: number,
    patch: Partial<StepRecord>,
    scope: Scope,
    cancelTimer = true,
  ): WorkflowSnapshot {
    const rec = snap.steps[i]!;
    const steps = [...snap.steps];
    const { params: _params, types: _types, dueAt: _dueAt, ...kept } = rec;
    steps[i] = { ...kept, ...patch, done: true };
    if (cancelTimer && (rec.ms !== undefined || rec.kind === 'action'))
      scope.defer(() => scope.system.scheduler.cancel(scope.self, timerId(i)));
    let children = snap.children;
    if (rec.kind === 'action') {
      const { [ACTION_ACTOR + i]: _done, ...rest } = children;
      children = rest;
    }
    return { ...snap, steps, open: snap.open.filter((k) => k !== i), children };
  }

  return { receive, recordSteps, timerFired, take, actionDone };
}

/**
 * Schedules the next link of step `i`'s timer after the transition: up to
 * its deadline `rec.dueAt`, at most one scheduler delay. The delay is read
 * from the clock when the link is scheduled (live only); the event carries
 * the link's own deadline, so the journal says whether it was the last.
 */
function withTimer(scope: Scope, i: number, rec: StepRecord): StepRecord {
  const self = scope.self;
  scope.defer(() => {
    const now = clockOf(self).now();
    const delay = Math.min(Math.max(0, rec.dueAt! - now), TIMER_CHUNK_MS);
    const fired: TimerEvent = { type: TIMER, step: i, due: now + delay };
    scope.system.scheduler.schedule(self, self, fired, delay, timerId(i));
  });
  return rec;
}

/** Stops the actors of running actions (the workflow stopped or ended). @internal */
export function stopChildren(snap: WorkflowSnapshot, scope: Scope): void {
  for (const child of Object.values(snap.children)) {
    try {
      scope.stopChild(child);
    } catch {
      // Already stopped with its parent.
    }
  }
}
