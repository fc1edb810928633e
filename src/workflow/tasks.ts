import {
  InvalidInputError,
  WorkflowError,
  isShardchartError,
} from '../errors.js';
import { whenDurable } from '../system/capture.js';
import type { EntityState } from '../system/types.js';
import { recordError } from './errors.js';
import { checkTenant } from './routing-input.js';
import type { JsonSchema } from './schema.js';
import type { ServiceHost } from './services.js';
import { checkAssignee, compileForm, issuesOf } from './task-forms.js';
import {
  directoryIds,
  queueId,
  summaryOf,
  taskCompletedType,
  taskDefaults,
  taskTypes,
  type DeliverCompletion,
  type TaskOrigin,
  type TaskRecord,
  type TaskSummary,
} from './task-machines.js';
import type { WorkflowEvent } from './types.js';

/**
 * Human tasks. A workflow creates one with `ctx.tasks.create` (a journaled
 * step: the task is created at least once and recognised on a re-run) and
 * waits for it with `ctx.tasks.waitFor` (a durable wait, like
 * `ctx.events.waitFor`); people find tasks with `system.tasks.list`, and
 * `system.tasks.complete` checks their form data against the task's JSON
 * schema, records it, and resumes the workflow with it. Tasks are entities
 * (see task-machines.ts), so they outlive restarts on a durable store.
 */

/** What `ctx.tasks.create` takes. */
export interface TaskSpec {
  /** May use `${contextData.field}` templates, filled from `context` (HTML-escaped). */
  title: string;
  /** Like `title`. */
  description?: string;
  assignee: string;
  /** The JSON schema (Ajv v8, draft-07) the completion's form data must satisfy. */
  form: JsonSchema;
  /** Plain data for the person doing the task and for the templates. Default `{}`. */
  context?: Record<string, unknown>;
}

/** A task as `system.tasks.get` and `complete` show it. */
export interface HumanTask {
  id: string;
  tenant?: string;
  assignee: string;
  title: string;
  description?: string;
  form: JsonSchema;
  context: Record<string, unknown>;
  /** The workflow instance (and step) that created the task. */
  workflow: TaskOrigin;
  status: 'open' | 'completed';
  createdAt: number;
  completedAt?: number;
  completedBy?: string;
  /** The form data it was completed with. */
  data?: unknown;
  /**
   * Whether the completion reached the workflow: `pending` while it is
   * retried, `ended` when the workflow had finished already.
   */
  delivery?: 'pending' | 'delivered' | 'ended' | 'undeliverable';
}

/** What `ctx.tasks.waitFor` resolves with. */
export interface TaskCompletion {
  taskId: string;
  data: unknown;
  by?: string;
  completedAt: number;
}

/** `ctx.tasks`. */
export interface WorkflowTasks {
  /**
   * Creates a human task and resolves with it once it is durable and
   * listed. A template naming a field `context` lacks rejects with
   * TEMPLATE_FIELD_MISSING before anything is recorded.
   */
  create(spec: TaskSpec): Promise<TaskSummary>;
  /** Waits (durably) until the task is completed; see `ctx.events.waitFor` for timeouts. */
  waitFor(
    task: string | { id: string },
    options?: { timeoutMs?: undefined },
  ): Promise<TaskCompletion>;
  waitFor(
    task: string | { id: string },
    options: { timeoutMs: number },
  ): Promise<TaskCompletion | undefined>;
}

/** `system.tasks`. */
export interface SystemTasks {
  /**
   * The open tasks of a tenant, an assignee, both, or all, oldest first
   * (at most `limit`, default and bound 10_000).
   */
  list(filter?: {
    tenant?: string;
    assignee?: string;
    limit?: number;
  }): Promise<TaskSummary[]>;
  /** The task, open or completed; TASK_NOT_FOUND for an unknown id. */
  get(id: string): Promise<HumanTask>;
  /**
   * Completes the task with `data`, checked against its form schema
   * (PAYLOAD_INVALID listing the fields), and resumes its workflow.
   * Resolves once the completion is durable and its first delivery to the
   * workflow has been tried. A completed task is TASK_ALREADY_COMPLETED.
   */
  complete(
    id: string,
    data: unknown,
    options?: { by?: string },
  ): Promise<HumanTask>;
}

// --------------------------------------------------------------- system

function viewOf(state: EntityState): HumanTask | undefined {
  const task = (state.context as { task?: TaskRecord | null }).task;
  if (task === null || task === undefined) return undefined;
  const view: HumanTask = {
    ...summaryOf(task),
    form: task.form as JsonSchema,
    context: task.context,
    workflow: { ...task.workflow },
    status: task.completion === undefined ? 'open' : 'completed',
  };
  if (task.completion !== undefined) {
    view.completedAt = task.completion.at;
    view.data = task.completion.data;
    if (task.completion.by !== undefined) view.completedBy = task.completion.by;
    view.delivery = task.delivery ?? 'pending';
  }
  return view;
}

function notFound(id: unknown): WorkflowError {
  return new WorkflowError(
    'TASK_NOT_FOUND',
    `No human task has id ${JSON.stringify(id)}; take ids from system.tasks.list() or from what ctx.tasks.create resolved with.`,
    {
      details: { taskId: typeof id === 'string' ? id.slice(0, 64) : typeof id },
    },
  );
}

/** The human-task half of the system's workflow services. @internal */
export function createTasks(host: ServiceHost) {
  const taskRef = (id: string) => host.entity(taskTypes.task, id);
  const queueRef = (tenant: string | undefined, assignee: string) =>
    host.entity(taskTypes.queue, queueId(tenant, assignee));
  const directory = async (id: string): Promise<string[]> =>
    (
      (await host.entity(taskTypes.directory, id).snapshot()).context as {
        names?: string[];
      }
    ).names ?? [];

  async function get(id: string): Promise<HumanTask> {
    if (typeof id !== 'string' || id.length === 0 || id.length > 512)
      throw notFound(id);
    const view = viewOf(await taskRef(id).snapshot());
    if (view === undefined) throw notFound(id);
    return view;
  }

  async function complete(
    id: string,
    data: unknown,
    options: { by?: string } = {},
  ): Promise<HumanTask> {
    const task = await get(id);
    if (task.status === 'completed') throw alreadyCompleted(task);
    const by = options.by;
    if (by !== undefined) checkAssignee(by, 'system.tasks.complete: "by"');
    const validate = compileForm(task.form);
    if (!validate(data)) {
      const issues = issuesOf(validate);
      throw new InvalidInputError(
        'PAYLOAD_INVALID',
        `The form data for task ${JSON.stringify(id)} is invalid: ${issues.map((i) => `${i.path === '' ? '(data)' : i.path}: ${i.message}`).join('; ')}. Fix these fields; the task is still open.`,
        { details: { taskId: id, issues } },
      );
    }
    const completion: { data: unknown; at: number; by?: string } = {
      data,
      at: host.clock.now(),
    };
    if (by !== undefined) completion.by = by;
    const ref = taskRef(id);
    const sent = await ref.send({ type: 'COMPLETE', completion });
    // Another completion got there between the read and this send.
    if (!sent.changed) throw alreadyCompleted(viewOf(sent) ?? task);
    const settled = await ref.waitFor(
      (s) => s.value === 'completed' || s.value === 'retrying',
    );
    return viewOf(settled)!;
  }

  async function list(
    filter: { tenant?: string; assignee?: string; limit?: number } = {},
  ): Promise<TaskSummary[]> {
    const tenant =
      filter.tenant === undefined
        ? undefined
        : checkTenant(filter.tenant, 'system.tasks.list');
    const assignee =
      filter.assignee === undefined
        ? undefined
        : checkAssignee(filter.assignee, 'system.tasks.list');
    const limit = filter.limit ?? taskDefaults.listMax;
    if (
      !Number.isSafeInteger(limit) ||
      limit < 1 ||
      limit > taskDefaults.listMax
    )
      throw new InvalidInputError(
        'EVENT_INVALID',
        `system.tasks.list: "limit" is an integer from 1 to ${taskDefaults.listMax}; got ${JSON.stringify(filter.limit)}.`,
      );
    const pairs: [string | undefined, string][] = [];
    const orNone = (t: string): string | undefined =>
      t === '' ? undefined : t;
    if (tenant !== undefined && assignee !== undefined)
      pairs.push([tenant, assignee]);
    else if (tenant !== undefined)
      for (const a of await directory(directoryIds.assigneesOf(tenant)))
        pairs.push([tenant, a]);
    else if (assignee !== undefined)
      for (const t of await directory(directoryIds.tenantsOf(assignee)))
        pairs.push([orNone(t), assignee]);
    else
      for (const t of await directory(directoryIds.tenants))
        for (const a of await directory(directoryIds.assigneesOf(orNone(t))))
          pairs.push([orNone(t), a]);
    const tasks: TaskSummary[] = [];
    // Queues are read a few at a time: a list over many must not open
    // thousands of reads at once.
    for (let i = 0; i < pairs.length; i += 16) {
      const states = await Promise.all(
        pairs.slice(i, i + 16).map(([t, a]) => queueRef(t, a).snapshot()),
      );
      for (const s of states)
        tasks.push(...((s.context as { tasks?: TaskSummary[] }).tasks ?? []));
    }
    return tasks
      .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
      .slice(0, limit);
  }

  /**
   * The body of the task entity's delivery: waits until the completion is
   * durable, takes the task off its queue, then resumes the workflow (its
   * event id makes a repeat a no-op).
   */
  const deliver: DeliverCompletion = async (task, root) => {
    const durable = root === undefined ? undefined : whenDurable(root);
    if (durable !== undefined) {
      try {
        await durable;
      } catch (error) {
        return { ok: false, error: recordError(error) };
      }
    }
    // Off the queue first: a completed task is not listed as open while
    // its delivery is retried.
    try {
      await queueRef(task.tenant, task.assignee).send({
        type: 'REMOVE',
        id: task.id,
      });
    } catch (error) {
      return { ok: false, error: recordError(error) };
    }
    let delivery: 'delivered' | 'ended' | 'undeliverable' = 'delivered';
    let problem: ReturnType<typeof recordError> | undefined;
    try {
      const event: WorkflowEvent = {
        type: taskCompletedType(task.id),
        taskId: task.id,
        data: task.completion!.data,
        completedAt: task.completion!.at,
      };
      if (task.completion!.by !== undefined) event.by = task.completion!.by;
      await host
        .entity(task.workflow.type, task.workflow.id)
        .send(event, { eventId: `task-completed:${task.id}` });
    } catch (error) {
      if (isShardchartError(error, 'ENTITY_STOPPED')) delivery = 'ended';
      else if (
        isShardchartError(error, 'ENTITY_TYPE_UNKNOWN') ||
        isShardchartError(error, 'EVENT_NOT_SERIALIZABLE') ||
        isShardchartError(error, 'EVENT_TOO_LARGE')
      ) {
        delivery = 'undeliverable';
        problem = recordError(error);
        host.log.error(
          { err: error, taskId: task.id, workflow: task.workflow },
          'task completion cannot be delivered to its workflow',
        );
      } else {
        return { ok: false, error: recordError(error) };
      }
    }
    return problem === undefined
      ? { ok: true, delivery }
      : { ok: true, delivery, error: problem };
  };

  return { get, complete, list, deliver };
}

function alreadyCompleted(task: HumanTask): WorkflowError {
  return new WorkflowError(
    'TASK_ALREADY_COMPLETED',
    `Task ${JSON.stringify(task.id)} was completed already${task.completedBy === undefined ? '' : ` by ${JSON.stringify(task.completedBy)}`}; its form data is in system.tasks.get(id).data.`,
    {
      details: {
        taskId: task.id,
        completedAt: task.completedAt,
        completedBy: task.completedBy,
      },
    },
  );
}
