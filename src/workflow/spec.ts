import type { Logger } from 'pino';
import type {
  ActorLogic,
  ActorScope,
  ActorSystem,
  EventObject,
  Snapshot,
} from 'xstate';
import type { PlainDataLimits } from '../codec/plain-data.js';
import type { ActionRegistry } from './actions.js';
import type {
  WorkflowContext,
  WorkflowEvent,
  WorkflowSnapshot,
} from './types.js';

/**
 * The shapes shared by the parts of a workflow actor: its definition, what
 * the hosting system binds to it, and how XState types its logic.
 */

/** What a definition holds: the function and its options, resolved. @internal */
export interface WorkflowSpec {
  readonly name: string;
  readonly fn: (ctx: WorkflowContext<never, never>) => Promise<unknown>;
  readonly input: (trigger: WorkflowEvent) => unknown;
  readonly stepsMax: number;
  readonly inboxMax: number;
  readonly entropy: { random(): number; uuid(): string };
}

/** What the system hosting a workflow provides. @internal */
export interface WorkflowBinding {
  readonly actions: ActionRegistry | undefined;
  readonly logger: Logger;
  /** Bounds of one journaled event (the system's eventBytesMax). */
  readonly limits: PlainDataLimits;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnySystem = ActorSystem<any>;

/** A workflow snapshot as XState types snapshots (status, output and error discriminated). */
export type WorkflowActorSnapshot = Snapshot<unknown> &
  Omit<WorkflowSnapshot, 'status' | 'output' | 'error'>;

/** The logic the engine runs. */
export interface WorkflowLogic extends ActorLogic<
  WorkflowActorSnapshot,
  WorkflowEvent,
  unknown,
  AnySystem,
  EventObject
> {
  /** @internal */
  readonly '~workflow': { spec: WorkflowSpec; binding: WorkflowBinding };
}

/** The actor scope a workflow's logic gets. @internal */
export type Scope = ActorScope<
  WorkflowActorSnapshot,
  WorkflowEvent,
  AnySystem,
  EventObject
>;
