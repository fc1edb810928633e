import { assign, fromPromise, setup, type AnyActorRef } from 'xstate';
import type { RecordedError } from './errors.js';

/**
 * The entities human tasks live in. Ordinary entity types of the hosting
 * system, so tasks are durable, clustered and time-travelable on every
 * store without a side database:
 *
 * - `shardchart.task`, one per task: the record, its completion, and the
 *   delivery of that completion to the waiting workflow;
 * - `shardchart.task-queue`, one per (tenant, assignee): the open tasks,
 *   what `system.tasks.list` reads;
 * - `shardchart.task-directory`: which assignees a tenant has queues for
 *   (`tenant:<tenant>`), which tenants an assignee has them in
 *   (`assignee:<assignee>`), and every tenant (`tenants`), so a list with
 *   one filter or none finds its queues without a scan.
 *
 * Guards check every event's shape: an event that does not fit changes
 * nothing and is not journaled.
 */

/** Entity type names of human tasks; the `shardchart.` prefix is reserved. @internal */
export const taskTypes = {
  task: 'shardchart.task',
  queue: 'shardchart.task-queue',
  directory: 'shardchart.task-directory',
} as const;

/** Bounds of human tasks, in one place. */
export const taskDefaults = {
  titleLengthMax: 500,
  descriptionLengthMax: 10_000,
  assigneeLengthMax: 256,
  /** Open tasks one (tenant, assignee) queue holds. */
  queueMax: 5_000,
  /** Names one directory holds (assignees of a tenant, tenants of an assignee, tenants). */
  directoryMax: 20_000,
  /** Tasks one `list` returns at most. */
  listMax: 10_000,
  /** A delivery that has not answered by then starts again. */
  deliveryWatchMs: 60_000,
  /** First delay after a failed delivery; doubles per failure up to deliveryBackoffMaxMs. */
  deliveryBackoffMs: 1_000,
  deliveryBackoffMaxMs: 60_000,
} as const;

/** The workflow step that created a task. */
export interface TaskOrigin {
  /** The workflow's name (its definition's). */
  name: string;
  /** The entity type and id of the workflow instance. */
  type: string;
  id: string;
  step: number;
}

/** How a task was completed. */
export interface TaskCompletionRecord {
  data: unknown;
  by?: string;
  at: number;
}

/** A task as its entity keeps it. */
export interface TaskRecord {
  id: string;
  tenant?: string;
  assignee: string;
  title: string;
  description?: string;
  /** The JSON schema the completion's form data must satisfy. */
  form: unknown;
  /** The data the workflow gave (`contextData` of the templates). */
  context: Record<string, unknown>;
  workflow: TaskOrigin;
  createdAt: number;
  completion?: TaskCompletionRecord;
  /** How the completion reached the workflow, once it has. */
  delivery?: 'delivered' | 'ended' | 'undeliverable';
  /** The last failed delivery, while it is retried (or why it is undeliverable). */
  deliveryError?: RecordedError;
}

/** A task as queues and `list` show it: the record without form, context and completion. */
export interface TaskSummary {
  id: string;
  tenant?: string;
  assignee: string;
  title: string;
  description?: string;
  createdAt: number;
  workflow: { type: string; id: string };
}

/** What a delivery attempt resolves with: it never rejects, so no error object is journaled. */
export type DeliveryOutcome =
  | {
      ok: true;
      delivery: 'delivered' | 'ended' | 'undeliverable';
      error?: RecordedError;
    }
  | { ok: false; error: RecordedError };

/**
 * Takes `task` off its queue and delivers its completion to its workflow; `root` is the task entity's actor (for the durability barrier).
 */
export type DeliverCompletion = (
  task: TaskRecord,
  root: AnyActorRef | undefined,
) => Promise<DeliveryOutcome>;

const isString = (v: unknown): v is string =>
  typeof v === 'string' && v.length > 0;

function isTaskRecord(t: unknown): t is TaskRecord {
  if (typeof t !== 'object' || t === null) return false;
  const r = t as Partial<TaskRecord>;
  return (
    isString(r.id) &&
    isString(r.assignee) &&
    typeof r.title === 'string' &&
    typeof r.context === 'object' &&
    r.context !== null &&
    typeof r.workflow === 'object' &&
    r.workflow !== null &&
    isString(r.workflow.type) &&
    isString(r.workflow.id) &&
    typeof r.createdAt === 'number' &&
    r.completion === undefined
  );
}

type CreateEvent = { type: 'CREATE'; task: TaskRecord };
type CompleteEvent = {
  type: 'COMPLETE';
  completion: TaskCompletionRecord;
};

/**
 * One human task. `absent` until CREATE; `open` until COMPLETE, which
 * records the completion (the form data was validated by
 * `system.tasks.complete`); `delivering` hands it to the workflow: an
 * invoked promise that restarts after a crash (its state is durable and its
 * watch timer wakes the entity), retried with backoff until it answers.
 * @internal
 */
export function createTaskMachine(deliver: DeliverCompletion) {
  return setup({
    types: {
      context: {} as { task: TaskRecord | null; attempts: number },
      events: {} as CreateEvent | CompleteEvent,
    },
    actors: {
      deliver: fromPromise<DeliveryOutcome, TaskRecord>(({ input, self }) =>
        deliver(input, (self as unknown as { _parent?: AnyActorRef })._parent),
      ),
    },
    delays: {
      watch: taskDefaults.deliveryWatchMs,
      backoff: ({ context }) =>
        Math.min(
          taskDefaults.deliveryBackoffMaxMs,
          taskDefaults.deliveryBackoffMs *
            2 ** Math.max(0, context.attempts - 1),
        ),
    },
    guards: {
      validCreate: ({ event }) =>
        event.type === 'CREATE' && isTaskRecord(event.task),
      validComplete: ({ event }) =>
        event.type === 'COMPLETE' &&
        typeof event.completion === 'object' &&
        event.completion !== null &&
        typeof event.completion.at === 'number' &&
        (event.completion.by === undefined || isString(event.completion.by)),
    },
  }).createMachine({
    id: taskTypes.task,
    context: { task: null, attempts: 0 },
    initial: 'absent',
    states: {
      absent: {
        on: {
          CREATE: {
            guard: 'validCreate',
            target: 'open',
            actions: assign({ task: ({ event }) => event.task }),
          },
        },
      },
      open: {
        on: {
          COMPLETE: {
            guard: 'validComplete',
            target: 'delivering',
            actions: assign({
              task: ({ context, event }) => {
                const completion: TaskCompletionRecord = {
                  data: event.completion.data,
                  at: event.completion.at,
                };
                if (event.completion.by !== undefined)
                  completion.by = event.completion.by;
                return { ...context.task!, completion };
              },
            }),
          },
        },
      },
      delivering: {
        invoke: {
          id: 'deliver',
          src: 'deliver',
          input: ({ context }) => context.task!,
          onDone: [
            {
              guard: ({ event }) => event.output.ok,
              target: 'completed',
              actions: assign({
                task: ({ context, event }) => {
                  const { deliveryError: _gone, ...task } = context.task!;
                  const out = event.output as Extract<
                    DeliveryOutcome,
                    { ok: true }
                  >;
                  return out.error === undefined
                    ? { ...task, delivery: out.delivery }
                    : {
                        ...task,
                        delivery: out.delivery,
                        deliveryError: out.error,
                      };
                },
              }),
            },
            {
              target: 'retrying',
              actions: assign({
                attempts: ({ context }) => context.attempts + 1,
                task: ({ context, event }) => ({
                  ...context.task!,
                  deliveryError: event.output.error!,
                }),
              }),
            },
          ],
        },
        after: { watch: { target: 'delivering', reenter: true } },
      },
      retrying: { after: { backoff: 'delivering' } },
      completed: {},
    },
  });
}

type AddTaskEvent = { type: 'ADD'; task: TaskSummary };
type RemoveTaskEvent = { type: 'REMOVE'; id: string };

/**
 * The open tasks of one (tenant, assignee), oldest first.
 * @internal
 */
export const taskQueueMachine = setup({
  types: {
    context: {} as { tasks: TaskSummary[] },
    events: {} as AddTaskEvent | RemoveTaskEvent,
  },
  guards: {
    adds: ({ context, event }) =>
      event.type === 'ADD' &&
      typeof event.task === 'object' &&
      event.task !== null &&
      isString(event.task.id) &&
      context.tasks.length < taskDefaults.queueMax &&
      !context.tasks.some((t) => t.id === event.task.id),
    removes: ({ context, event }) =>
      event.type === 'REMOVE' && context.tasks.some((t) => t.id === event.id),
  },
}).createMachine({
  id: taskTypes.queue,
  context: { tasks: [] },
  on: {
    ADD: {
      guard: 'adds',
      actions: assign({
        tasks: ({ context, event }) => [...context.tasks, event.task],
      }),
    },
    REMOVE: {
      guard: 'removes',
      actions: assign({
        tasks: ({ context, event }) =>
          context.tasks.filter((t) => t.id !== event.id),
      }),
    },
  },
});

/**
 * A set of names (assignees or tenants). Names are never removed: a queue
 * may fill again at any time, and a directory entry that outlives its
 * queue's last task only costs one empty read.
 * @internal
 */
export const taskDirectoryMachine = setup({
  types: {
    context: {} as { names: string[] },
    events: {} as { type: 'ADD'; name: string },
  },
  guards: {
    adds: ({ context, event }) =>
      typeof event.name === 'string' &&
      context.names.length < taskDefaults.directoryMax &&
      !context.names.includes(event.name),
  },
}).createMachine({
  id: taskTypes.directory,
  context: { names: [] },
  on: {
    ADD: {
      guard: 'adds',
      actions: assign({
        names: ({ context, event }) => [...context.names, event.name],
      }),
    },
  },
});

/** Queue entity id: tenants hold no "/", and "" stands for no tenant. @internal */
export function queueId(tenant: string | undefined, assignee: string): string {
  return `${tenant ?? ''}/${assignee}`;
}

/** The event type that carries task `id`'s completion to its workflow. @internal */
export function taskCompletedType(id: string): string {
  return `shardchart.task.completed:${id}`;
}

/** A task as its queue lists it. @internal */
export function summaryOf(task: TaskRecord): TaskSummary {
  const s: TaskSummary = {
    id: task.id,
    assignee: task.assignee,
    title: task.title,
    createdAt: task.createdAt,
    workflow: { type: task.workflow.type, id: task.workflow.id },
  };
  if (task.tenant !== undefined) s.tenant = task.tenant;
  if (task.description !== undefined) s.description = task.description;
  return s;
}

/** Ids of the directory entities. @internal */
export const directoryIds = {
  tenants: 'tenants',
  assigneesOf: (tenant: string | undefined) => `tenant:${tenant ?? ''}`,
  tenantsOf: (assignee: string) => `assignee:${assignee}`,
};
