import type { AnyStateMachine, SnapshotFrom, StateValue } from 'xstate';
import type { Logger } from 'pino';
import type { Store, DeadLetter, EntityKey, JournalEntry } from '../persistence/types.js';
import type { Clock } from './clock.js';
import type { Publisher } from './publish.js';
import type { ActionRegistry } from '../workflow/actions.js';
import type { WorkflowDefinition } from '../workflow/define.js';
import type { WorkflowEntityConfig } from '../workflow/entity.js';
import type { Attachment, AttachInput, PublishEventInput, PublishEventResult } from '../workflow/routing.js';
import type { SystemTasks } from '../workflow/tasks.js';
import type { ClusterOptions } from '../cluster/options.js';
import type { ClusterStats } from '../cluster/stats.js';

/** How pending delayed events resume after a restore (see DESIGN.md, xstate issue 5331). */
export type TimerResume = 'deadline' | 'remaining' | 'restart';

/** Per-entity-type options; a bare machine means all defaults. */
export interface EntityTypeConfig<TMachine extends AnyStateMachine = AnyStateMachine> {
  machine: TMachine;
  /** Input for a new entity; default `{ entityId, entityType }`. */
  input?: (id: string) => unknown;
  timerResume?: TimerResume;
  /** Turn unaccepted events into `EVENT_REJECTED` instead of `changed: false`. */
  rejectUnhandled?: boolean;
}

/** A machine, a workflow (defineWorkflow), or either with per-type options. */
export type EntityDefinition = AnyStateMachine | EntityTypeConfig | WorkflowDefinition | WorkflowEntityConfig;

export interface RestartPolicy {
  /** Consecutive failures before the entity is parked (`ENTITY_FAILED`). Default 5. */
  attemptsMax: number;
  /** First backoff; doubles per failure, capped at 30 s. Default 100. */
  backoffMs: number;
}

export interface ActorSystemOptions<TEntities extends Record<string, EntityDefinition>> {
  /** System name; used in logs (and later in cluster subjects). */
  name: string;
  entities: TEntities;
  /** Default: memoryStore() (not durable; logged once at warn level). */
  store?: Store;
  /** Actions the workflow entity types call (createActionRegistry); replaces the registries given to defineWorkflow. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  actions?: ActionRegistry<any>;
  /** Events between snapshots. Default 100. */
  snapshotEvery?: number;
  /** Idle time before an entity is passivated. Default 60_000; 0 disables. */
  passivateAfterMs?: number;
  /** Live entities kept in memory; least-recently-used beyond this are passivated. Default 100_000. */
  liveEntitiesMax?: number;
  /** Events queued per entity before `MAILBOX_FULL`. Default 1_000. */
  mailboxDepthMax?: number;
  /** Recent event ids remembered per entity for dedupe. Default 128. */
  dedupeWindow?: number;
  /** Encoded size limit for one event. Default 65_536. */
  eventBytesMax?: number;
  restart?: Partial<RestartPolicy>;
  /** Default for all entity types; see EntityTypeConfig. */
  rejectUnhandled?: boolean;
  timerResume?: TimerResume;
  logger?: Logger;
  clock?: Clock;
  /**
   * Delivers the messages machines publish with `publish(...)`, each once
   * its step is durable, in order per entity, with a stable message id for
   * deduplication. A rejection, a throw or `publishTimeoutMs` without an
   * answer retries it with backoff. Without it an embedded system keeps
   * published messages in the journal only (warned once); a clustered one
   * publishes them to NATS. See the README, "Publishing domain events".
   */
  publisher?: Publisher;
  /** A publisher call that has not settled by then fails and is retried. Default 5_000. */
  publishTimeoutMs?: number;
  /** First retry delay after a failed publish; doubles per failure up to 30 s. Default 100. */
  publishBackoffMs?: number;
  /** Messages waiting for delivery per entity before its sends get a retryable OUTBOX_FULL. Default 1_000. */
  publishPendingMax?: number;
  /**
   * Run as a node of a cluster over NATS (see the README's cluster section):
   * entities are sharded over the nodes that share `name`, and `store` must
   * be shared by all of them (`natsStore()`).
   */
  cluster?: ClusterOptions;
}

/** What `send`, `snapshot` and `stateAt` resolve with. */
export interface EntityState<TMachine extends AnyStateMachine = AnyStateMachine> {
  /** Seq of the last journal entry reflected in this state (0: initial state). */
  seq: number;
  value: StateValue;
  context: SnapshotFrom<TMachine> extends { context: infer C } ? C : unknown;
  status: 'active' | 'done' | 'error' | 'stopped';
  /** True when this send changed the state (false for reads: `snapshot()`, `stateAt()`). */
  changed: boolean;
  /** Present and true when the event id was applied before: nothing was applied now. */
  duplicate?: boolean;
  /** The machine output when status is 'done'. */
  output?: unknown;
}

export interface SendOptions {
  /** Idempotency key: the same id is applied at most once per entity (within the dedupe window). */
  eventId?: string;
  /** Reject with TIMEOUT if not answered in time (the event may still be applied). */
  timeoutMs?: number;
}

export interface WaitForOptions {
  timeoutMs?: number;
}

/** A location-transparent handle to one entity. Cheap to create, holds no state. */
export interface EntityRef<TMachine extends AnyStateMachine = AnyStateMachine> {
  readonly type: string;
  readonly id: string;
  send(event: { type: string; [key: string]: unknown }, options?: SendOptions): Promise<EntityState<TMachine>>;
  snapshot(): Promise<EntityState<TMachine>>;
  stateAt(seq: number): Promise<EntityState<TMachine>>;
  /** The journal, oldest first. */
  journal(options?: { fromSeq?: number; toSeq?: number }): AsyncIterable<JournalEntry>;
  subscribe(listener: ((state: EntityState<TMachine>) => void) | { next?: (state: EntityState<TMachine>) => void; error?: (err: unknown) => void }): Unsubscribe;
  waitFor(predicate: (state: EntityState<TMachine>) => boolean, options?: WaitForOptions): Promise<EntityState<TMachine>>;
  /** Un-park an entity that failed `restart.attemptsMax` times. */
  restart(): Promise<void>;
  /**
   * Snapshots the entity and drops it from memory once its queued work is
   * done. Resolves false (and keeps it live) while an invoked promise or
   * callback actor is in flight, unless `force` is set (the invocation then
   * re-runs on the next activation).
   */
  passivate(options?: { force?: boolean }): Promise<boolean>;
  /** True when the entity is in memory. */
  isLive(): boolean;
}

export type Unsubscribe = (() => void) & { unsubscribe(): void };

export interface BatchItem {
  type: string;
  id: string;
  event: { type: string; [key: string]: unknown };
  eventId?: string;
}

export type BatchResult =
  | { ok: true; state: EntityState }
  | { ok: false; error: Error };

export interface SystemStats {
  liveEntities: number;
  activations: number;
  passivations: number;
  eventsApplied: number;
  duplicates: number;
  failures: number;
  deadLetters: number;
  storeWrites: number;
  pendingWakeups: number;
  /** Published messages handed to the publisher successfully. */
  published: number;
  /** Publisher calls that failed or timed out (each is retried). */
  publishFailures: number;
  /** Present on a clustered node. */
  cluster?: ClusterStats;
}

export interface ActorSystem<TEntities extends Record<string, EntityDefinition> = Record<string, EntityDefinition>> {
  readonly name: string;
  readonly store: Store;
  entity<K extends keyof TEntities & string>(type: K, id: string): EntityRef<TEntities[K] extends AnyStateMachine ? TEntities[K] : TEntities[K] extends EntityTypeConfig<infer M> ? M : AnyStateMachine>;
  /** Sends many events at once; results in input order, one failure doesn't fail the batch. */
  sendMany(items: readonly BatchItem[]): Promise<BatchResult[]>;
  deadLetters(options?: { key?: EntityKey; limit?: number }): Promise<DeadLetter[]>;
  stats(): SystemStats;
  /**
   * Delivers a tenant's event to the workflows attached to its type in that
   * tenant and to those waiting for it by correlation key; a retry with the
   * same `id` is applied at most once per workflow. Systems with workflows
   * only (see the README, "Human tasks and event routing").
   */
  publishEvent(event: PublishEventInput): Promise<PublishEventResult>;
  /** Attaches a workflow type to an event type in a tenant (a durable record; attaching again replaces `correlate`). */
  attach(attachment: AttachInput): Promise<Attachment>;
  /** Removes an attachment; resolves false when there was none. */
  detach(attachment: { tenant: string; eventType: string; workflow: string }): Promise<boolean>;
  /** The attachments of a tenant. */
  attachments(tenant: string): Promise<Attachment[]>;
  /** Human tasks created by workflows (`ctx.tasks.create`): list, read, complete. */
  readonly tasks: SystemTasks;
  /** Finish queued work, snapshot live entities, close the store. Idempotent. */
  stop(): Promise<void>;
}
