import { createActor, type AnyActorRef } from 'xstate';
import { EntityError } from '../errors.js';
import { createActionLogic } from './action-call.js';
import { rebuildError } from './errors.js';
import {
  ACTION_ACTOR,
  ACTION_DONE,
  ACTION_ERROR,
  RETURN,
  STEPS,
  TAKE,
  THROW,
  TIMER,
  type StepsEvent,
  type TakeEvent,
  type TimerEvent,
  type ThrowEvent,
} from './events.js';
import { startRunner, stopRunner, thrownError } from './runner.js';
import type {
  Scope,
  WorkflowBinding,
  WorkflowLogic,
  WorkflowSpec,
} from './spec.js';
import { createTransitions, stopChildren } from './transition.js';
import type { WorkflowEvent, WorkflowSnapshot } from './types.js';

/**
 * A workflow function as XState actor logic. The snapshot holds the step
 * log; `transition` is pure and only records what the journaled events
 * say (a step reached, an action's result, a timer, an event). Effects
 * happen outside it: the function runs in a runner started by `start`
 * (or by the trigger event), action calls run in child actors created by
 * the transition and started after it, timers go through XState's
 * scheduler in deferred functions. XState's own `transition()` runs none
 * of these, so the engine's recovery replays a workflow exactly as it
 * replays a machine.
 */

/** Builds the logic of `spec` bound to `binding`. @internal */
export function createWorkflowLogic(
  spec: WorkflowSpec,
  binding: WorkflowBinding,
): WorkflowLogic {
  const actionLogic = createActionLogic(spec, binding);
  const spawnAction = (
    scope: Scope,
    step: number,
    id: string,
    name: string,
    params: unknown,
  ): AnyActorRef =>
    createActor(actionLogic, {
      id: ACTION_ACTOR + step,
      parent: scope.self,
      input: { step, id, name, params, root: scope.self },
    });
  const { receive, recordSteps, timerFired, take, actionDone } =
    createTransitions({ spec, binding, spawnAction });

  const logic = {
    '~workflow': { spec, binding },
    config: spec,

    getInitialSnapshot(_scope: Scope, input: unknown): WorkflowSnapshot {
      const entity = input as
        { entityType?: unknown; entityId?: unknown } | undefined;
      return {
        status: 'active',
        output: undefined,
        error: undefined,
        value: 'created',
        context: { input: undefined, data: {} },
        v: 1,
        entity: {
          type:
            typeof entity?.entityType === 'string'
              ? entity.entityType
              : spec.name,
          id: typeof entity?.entityId === 'string' ? entity.entityId : '',
        },
        trigger: undefined,
        steps: [],
        open: [],
        inbox: [],
        received: 0,
        children: {},
      };
    },

    restoreSnapshot(persisted: unknown, scope: Scope): WorkflowSnapshot {
      const p = persisted as Partial<WorkflowSnapshot> | null;
      if (
        p === null ||
        typeof p !== 'object' ||
        p.v !== 1 ||
        !Array.isArray(p.steps) ||
        !Array.isArray(p.open) ||
        !Array.isArray(p.inbox)
      ) {
        throw new EntityError(
          'SNAPSHOT_INVALID',
          `The stored snapshot is not a snapshot of workflow "${spec.name}" (format v1); register the workflow the entity was created with under this entity type.`,
        );
      }
      const snap = {
        ...(p as WorkflowSnapshot),
        children: {} as Record<string, AnyActorRef>,
      };
      // Actions that were running when the entity stopped run again (at
      // least once): their actors are created here and started by `start`.
      for (const i of snap.open) {
        const rec = snap.steps[i];
        if (rec?.kind === 'action' && !rec.done)
          snap.children[ACTION_ACTOR + i] = spawnAction(
            scope,
            i,
            rec.id ?? String(i),
            rec.name,
            rec.params,
          );
      }
      return snap;
    },

    start(snap: WorkflowSnapshot, scope: Scope): void {
      if (snap.status !== 'active') return;
      for (const child of Object.values(snap.children)) child.start();
      if (snap.trigger !== undefined) startRunner(spec, binding, scope.self);
    },

    getPersistedSnapshot(
      snap: WorkflowSnapshot,
    ): Omit<WorkflowSnapshot, 'children'> {
      const { children: _children, error: _error, ...rest } = snap;
      return { ...rest, error: undefined };
    },

    transition(
      snap: WorkflowSnapshot,
      event: WorkflowEvent,
      scope: Scope,
    ): WorkflowSnapshot {
      if (event.type === 'xstate.stop') {
        scope.defer(() => {
          stopRunner(scope.self);
          stopChildren(snap, scope);
        });
        return { ...snap, status: 'stopped', children: {} };
      }
      if (snap.status !== 'active') return snap;
      switch (event.type) {
        case STEPS:
          return recordSteps(snap, event as unknown as StepsEvent, scope);
        case TIMER:
          return timerFired(snap, event as unknown as TimerEvent, scope);
        case TAKE:
          return take(snap, event as unknown as TakeEvent, scope);
        case RETURN:
          scope.defer(() => {
            stopRunner(scope.self);
            stopChildren(snap, scope);
          });
          return {
            ...snap,
            status: 'done',
            output: (event as { output?: unknown }).output,
            children: {},
          };
        case THROW: {
          scope.defer(() => {
            stopRunner(scope.self);
            stopChildren(snap, scope);
          });
          const error =
            thrownError(event) ??
            rebuildError((event as unknown as ThrowEvent).error);
          return { ...snap, status: 'error', error, children: {} };
        }
        default:
          if (event.type.startsWith(ACTION_DONE))
            return actionDone(snap, event, scope);
          if (event.type.startsWith(ACTION_ERROR)) {
            // An action actor never rejects (its outcome carries the
            // action's error); one that does is a bug. Failing the entity
            // restarts it from its journal, which runs the call again.
            throw new Error(
              `workflow "${spec.name}": the actor of an action call failed unexpectedly: ${String((event as { error?: unknown }).error)}`,
            );
          }
          if (event.type.startsWith('xstate.')) return snap;
          return receive(snap, event, scope);
      }
    },
  };

  return logic as unknown as WorkflowLogic;
}

export type { WorkflowBinding, WorkflowLogic, WorkflowSpec } from './spec.js';
