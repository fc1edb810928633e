import { WorkflowError, toError } from '../errors.js';
import type { ActionDefinition } from './actions.js';
import type { JsonSchema } from './schema.js';
import type { ServiceHost } from './services.js';
import { checkAssignee, compileForm } from './task-forms.js';
import {
  directoryIds,
  queueId,
  summaryOf,
  taskCompletedType,
  taskDefaults,
  taskTypes,
  type TaskOrigin,
  type TaskRecord,
  type TaskSummary,
} from './task-machines.js';
import type { TaskCompletion, TaskSpec, WorkflowTasks } from './tasks.js';
import { renderTaskTemplate } from './templates.js';
import type { WorkflowEvent } from './types.js';

/**
 * The workflow's side of human tasks: `ctx.tasks.create` checks and
 * renders the task, then runs one internal action that creates it (a
 * journaled step, so it happens at least once and a re-run finds what the
 * first run wrote); `ctx.tasks.waitFor` is a wait for the event that
 * carries the task's completion.
 */

/** Name of the internal action `ctx.tasks.create` runs. @internal */
export const TASK_CREATE_ACTION = 'shardchart.tasks.create';

interface CreateParams {
  title: string;
  description?: string;
  assignee: string;
  form: JsonSchema;
  context: Record<string, unknown>;
}

/** What `ctx.tasks` needs of the workflow's runner. @internal */
export interface TaskOps {
  readonly tenant: string | undefined;
  /** Whether the hosting system keeps tasks (it runs the create action). */
  readonly routed: boolean;
  action(name: string, params: unknown): Promise<unknown>;
  waitFor(type: string, options: { timeoutMs?: number }): Promise<unknown>;
}

function paramsError(path: string, message: string): WorkflowError {
  return new WorkflowError(
    'ACTION_PARAMS_INVALID',
    `ctx.tasks.create: ${path}: ${message}. The task was not created.`,
    {
      details: { action: 'ctx.tasks.create', issues: [{ path, message }] },
    },
  );
}

/**
 * Builds `ctx.tasks`. Everything checked before the create step (the spec,
 * the form schema, the templates) is deterministic, so a replay refuses or
 * accepts it exactly as the first run did; a refusal takes no step.
 * @internal
 */
export function createTasksContext(ops: TaskOps): WorkflowTasks {
  const create = (spec: TaskSpec): Promise<TaskSummary> => {
    try {
      if (typeof spec !== 'object' || spec === null)
        throw paramsError('', 'expects { title, assignee, form, context? }');
      if (typeof spec.title !== 'string' || spec.title.length === 0)
        throw paramsError('/title', 'must be a non-empty string');
      if (
        spec.description !== undefined &&
        typeof spec.description !== 'string'
      )
        throw paramsError('/description', 'must be a string');
      let assignee: string;
      try {
        assignee = checkAssignee(spec.assignee, 'ctx.tasks.create');
      } catch {
        throw paramsError(
          '/assignee',
          `must be a non-empty string of at most ${taskDefaults.assigneeLengthMax} characters without control characters; got ${JSON.stringify(spec.assignee)}`,
        );
      }
      const context = spec.context ?? {};
      if (
        typeof context !== 'object' ||
        context === null ||
        Array.isArray(context)
      )
        throw paramsError('/context', 'must be a plain object');
      if (
        typeof spec.form !== 'boolean' &&
        (typeof spec.form !== 'object' ||
          spec.form === null ||
          Array.isArray(spec.form))
      )
        throw paramsError('/form', 'must be a JSON schema (an object)');
      try {
        compileForm(spec.form);
      } catch (error) {
        throw paramsError(
          '/form',
          `is not a JSON schema Ajv v8 compiles (${toError(error).message})`,
        );
      }
      if (!ops.routed) {
        throw new WorkflowError(
          'ACTION_UNKNOWN',
          'ctx.tasks.create needs the workflow to run in an actor system (createActorSystem), which keeps the tasks.',
          { details: { action: TASK_CREATE_ACTION } },
        );
      }
      const params: CreateParams = {
        title: renderTaskTemplate(spec.title, context, 'title'),
        assignee,
        form: spec.form,
        context,
      };
      if (spec.description !== undefined)
        params.description = renderTaskTemplate(
          spec.description,
          context,
          'description',
        );
      if (params.title.length > taskDefaults.titleLengthMax)
        throw paramsError(
          '/title',
          `renders to ${params.title.length} characters; at most ${taskDefaults.titleLengthMax}`,
        );
      if ((params.description?.length ?? 0) > taskDefaults.descriptionLengthMax)
        throw paramsError(
          '/description',
          `renders to ${params.description!.length} characters; at most ${taskDefaults.descriptionLengthMax}`,
        );
      return ops.action(TASK_CREATE_ACTION, params) as Promise<TaskSummary>;
    } catch (error) {
      return Promise.reject(toError(error));
    }
  };

  const waitFor = (
    task: string | { id: string },
    options?: { timeoutMs?: number },
  ): Promise<TaskCompletion | undefined> => {
    const id = typeof task === 'string' ? task : task?.id;
    if (typeof id !== 'string' || id.length === 0)
      return Promise.reject(
        new TypeError(
          `ctx.tasks.waitFor expects a task (what ctx.tasks.create resolved with) or its id; got ${JSON.stringify(task)}.`,
        ),
      );
    const wait: { timeoutMs?: number } = {};
    if (options?.timeoutMs !== undefined) wait.timeoutMs = options.timeoutMs;
    return ops.waitFor(taskCompletedType(id), wait).then((event) => {
      if (event === undefined) return undefined;
      const e = event as WorkflowEvent;
      const done: TaskCompletion = {
        taskId: id,
        data: e.data,
        completedAt: e.completedAt as number,
      };
      if (typeof e.by === 'string') done.by = e.by;
      return done;
    });
  };

  return { create, waitFor } as WorkflowTasks;
}

/** The internal action `ctx.tasks.create` runs. @internal */
export function createTaskAction(
  host: ServiceHost,
): ActionDefinition<CreateParams, TaskSummary> {
  return {
    // Each send below is idempotent, so a re-run (a retry, or the action
    // running again after a crash) finds what the first run wrote.
    retry: {
      attemptsMax: 10,
      backoff: { initialMs: 100, multiplier: 2, maxMs: 30_000 },
    },
    timeoutMs: 30_000,
    async run(params, actx) {
      const origin: TaskOrigin = { ...actx.workflow };
      const id = `task_${host.digest(`${origin.type}\u0000${origin.id}\u0000${origin.step}`)}`;
      const record: TaskRecord = {
        id,
        assignee: params.assignee,
        title: params.title,
        form: params.form,
        context: params.context,
        workflow: origin,
        createdAt: host.clock.now(),
      };
      if (actx.tenant !== undefined) record.tenant = actx.tenant;
      if (params.description !== undefined)
        record.description = params.description;
      const tenant = record.tenant;
      // Directories first: a task is never in a queue that a list cannot find.
      const dirs: [string, string][] = [
        [directoryIds.tenants, tenant ?? ''],
        [directoryIds.assigneesOf(tenant), record.assignee],
        [directoryIds.tenantsOf(record.assignee), tenant ?? ''],
      ];
      for (const [dir, name] of dirs)
        await host.entity(taskTypes.directory, dir).send({ type: 'ADD', name });
      const state = await host
        .entity(taskTypes.task, id)
        .send({ type: 'CREATE', task: record }, { eventId: 'create' });
      const stored = (state.context as { task?: TaskRecord | null }).task;
      if (stored === null || stored === undefined)
        throw new Error(`task entity ${id} refused its CREATE event`);
      const summary = summaryOf(stored);
      // A re-run after the task was completed must not list it again.
      if (state.value !== 'open') return summary;
      const queued = await host
        .entity(taskTypes.queue, queueId(tenant, record.assignee))
        .send({
          type: 'ADD',
          task: summary,
        });
      const tasks = (queued.context as { tasks: TaskSummary[] }).tasks;
      if (!tasks.some((t) => t.id === id)) {
        throw new Error(
          `the task queue of assignee ${JSON.stringify(record.assignee)} holds ${taskDefaults.queueMax} open tasks, the most it keeps; complete some first`,
        );
      }
      return summary;
    },
  };
}
