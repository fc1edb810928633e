import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { PlainDataLimits } from '../codec/plain-data.js';
import { ConfigError } from '../errors.js';
import type { Clock } from '../system/clock.js';
import type {
  ActorSystem,
  EntityRef,
  EntityTypeConfig,
} from '../system/types.js';
import { createActionRegistry, type ActionRegistry } from './actions.js';
import { isWorkflowDefinition } from './define.js';
import { SUBSCRIBE_ACTION, subscribeAction } from './correlated-wait.js';
import { createRouting } from './routing.js';
import {
  attachmentsMachine,
  correlationMachine,
  routingTypes,
} from './routing-machines.js';
import {
  createTaskMachine,
  taskDirectoryMachine,
  taskQueueMachine,
  taskTypes,
} from './task-machines.js';
import { TASK_CREATE_ACTION, createTaskAction } from './task-context.js';
import { createTasks } from './tasks.js';

/**
 * The workflow services a system hosts beside its workflows: event routing
 * (attachments, correlation waits, publishEvent) and human tasks. They keep
 * their records in entities of internal types (`shardchart.*`), which the
 * system registers like any other, and give workflows two internal actions
 * (a correlated wait's subscription, a task's creation) through the same
 * registry as the user's, so they are journaled, retried and replayed like
 * any action.
 */

/** What routing and tasks need of the system that hosts them. @internal */
export interface ServiceHost {
  entity(type: string, id: string): EntityRef;
  readonly clock: Clock;
  readonly log: Logger;
  readonly eventLimits: PlainDataLimits;
  isWorkflowType(name: string): boolean;
  workflowTypes(): string[];
  newId(): string;
  /** A short, URL-safe digest of `text` (128 bits), for ids and event ids derived from long keys. */
  digest(text: string): string;
}

/** Entity type names this module reserves. */
export const reservedTypePrefix = 'shardchart.';

/** What createActorSystem hands over. @internal */
export interface ServicesOptions {
  clock: Clock;
  log: Logger;
  eventLimits: PlainDataLimits;
  /** The system's entity types (read when called, so it may still be filling). */
  types: ReadonlyMap<string, { machine: unknown }>;
  /** The system's `entity(type, id)`, once the system exists. */
  entity(type: string, id: string): EntityRef;
}

/** Whether `entities` registers at least one workflow. @internal */
export function hasWorkflows(entities: Record<string, unknown>): boolean {
  return Object.values(entities).some(
    (def) =>
      isWorkflowDefinition(def) ||
      (typeof def === 'object' &&
        def !== null &&
        isWorkflowDefinition((def as { machine?: unknown }).machine)),
  );
}

/** Creates the services of one system. @internal */
export function createWorkflowServices(options: ServicesOptions) {
  const workflowTypes = (): string[] =>
    [...options.types.entries()]
      .filter(([, t]) => isWorkflowDefinition(t.machine))
      .map(([name]) => name);
  const host: ServiceHost = {
    entity: (type, id) => options.entity(type, id),
    clock: options.clock,
    log: options.log,
    eventLimits: options.eventLimits,
    isWorkflowType: (name) =>
      isWorkflowDefinition(options.types.get(name)?.machine),
    workflowTypes,
    newId: () => randomUUID(),
    digest: (text) =>
      createHash('sha256').update(text).digest('base64url').slice(0, 22),
  };
  const routing = createRouting(host);
  const tasks = createTasks(host);
  const internal = createActionRegistry()
    .register(SUBSCRIBE_ACTION, subscribeAction(host))
    .register(TASK_CREATE_ACTION, createTaskAction(host));

  const entityTypes: Record<string, EntityTypeConfig> = {
    [routingTypes.attachments]: { machine: attachmentsMachine },
    [routingTypes.correlation]: { machine: correlationMachine },
    [taskTypes.task]: {
      machine: createTaskMachine(tasks.deliver),
    },
    [taskTypes.queue]: { machine: taskQueueMachine },
    [taskTypes.directory]: { machine: taskDirectoryMachine },
  };

  /**
   * The registry a workflow of this system sees: the internal actions
   * first, then `registry`'s. Its `names()` are the user's only.
   */
  function withSystemActions(
    registry: ActionRegistry | undefined,
  ): ActionRegistry {
    const reserved = registry
      ?.names()
      .filter((n) => n.startsWith(reservedTypePrefix));
    if (reserved !== undefined && reserved.length > 0) {
      throw new ConfigError(
        `Action names starting with "${reservedTypePrefix}" are reserved for the system; rename ${reserved.map((n) => `"${n}"`).join(', ')}.`,
      );
    }
    const wrapped: ActionRegistry = {
      register: (name, definition) =>
        withSystemActions(
          (registry ?? createActionRegistry()).register(name, definition),
        ) as never,
      has: (name) => registry?.has(name) ?? false,
      names: () => registry?.names() ?? [],
      resolve: (name) => internal.resolve(name) ?? registry?.resolve(name),
    };
    return wrapped;
  }

  return {
    entityTypes,
    withSystemActions,
    publishEvent: routing.publishEvent,
    attach: routing.attach,
    detach: routing.detach,
    attachments: routing.attachments,
    tasks: { list: tasks.list, get: tasks.get, complete: tasks.complete },
  };
}

/** The services of a system. @internal */
export type WorkflowServices = ReturnType<typeof createWorkflowServices>;

/**
 * The system methods of routing and tasks; on a system without workflows
 * each one refuses with a CONFIG_INVALID that says why. @internal
 */
export function serviceMethods(
  services: WorkflowServices | undefined,
  systemName: string,
): Pick<
  ActorSystem,
  'publishEvent' | 'attach' | 'detach' | 'attachments' | 'tasks'
> {
  if (services !== undefined) {
    return {
      publishEvent: services.publishEvent,
      attach: services.attach,
      detach: services.detach,
      attachments: services.attachments,
      tasks: services.tasks,
    };
  }
  const refuse = (method: string) => (): Promise<never> =>
    Promise.reject(
      new ConfigError(
        `system.${method}: actor system "${systemName}" hosts no workflow, so it keeps no event routing or human tasks; register a workflow (defineWorkflow) among its entities.`,
      ),
    );
  return {
    publishEvent: refuse('publishEvent'),
    attach: refuse('attach'),
    detach: refuse('detach'),
    attachments: refuse('attachments'),
    tasks: {
      list: refuse('tasks.list'),
      get: refuse('tasks.get'),
      complete: refuse('tasks.complete'),
    },
  };
}
