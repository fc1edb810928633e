import { pino, type Logger } from 'pino';
import type { AnyStateMachine } from 'xstate';
import { ConfigError } from '../errors.js';
import { defaults } from '../system/runtime.js';
import type { EntityTypeConfig } from '../system/types.js';
import type { ActionRegistry } from './actions.js';
import { isWorkflowDefinition, type WorkflowDefinition } from './define.js';

/**
 * Hosting a workflow as an entity type. The engine runs any XState actor
 * logic the way it runs a machine (it only calls the ActorLogic members and
 * reads value, context, status, output and children from snapshots); this
 * binds the workflow to the system's action registry, logger and event
 * size bound before the engine sees it.
 */

/** A workflow registered with options, as `{ machine: workflow, timerResume }`. */
export interface WorkflowEntityConfig extends Omit<
  EntityTypeConfig,
  'machine' | 'input'
> {
  machine: WorkflowDefinition;
}

/** What the binding needs of createActorSystem's options. @internal */
interface HostOptions {
  name: string;
  actions?: ActionRegistry | undefined;
  logger?: Logger | undefined;
  eventBytesMax?: number | undefined;
  /** Adds the system's internal actions (routing, tasks) to the workflow's registry. */
  systemActions?:
    ((registry: ActionRegistry | undefined) => ActionRegistry) | undefined;
}

/**
 * The entity-type config of a workflow definition (bare or in a config
 * object), bound to the system; undefined when `def` is not a workflow.
 * Workflow types refuse unhandled events by default: the only event a
 * running workflow does not take is one its full inbox cannot hold, and
 * its sender must hear so (EVENT_REJECTED).
 * @internal
 */
export function workflowEntityConfig(
  name: string,
  def: unknown,
  options: HostOptions,
): EntityTypeConfig | undefined {
  const config = isWorkflowDefinition(def)
    ? { machine: def }
    : (def as Partial<WorkflowEntityConfig> | undefined);
  if (
    config === undefined ||
    config === null ||
    !isWorkflowDefinition(config.machine)
  )
    return undefined;
  if ((config as { input?: unknown }).input !== undefined) {
    throw new ConfigError(
      `Entity type "${name}" is a workflow: its input comes from its trigger event (the first event it receives, through defineWorkflow's "input" option); remove "input" from its entity config.`,
      { details: { type: name } },
    );
  }
  if (
    options.actions !== undefined &&
    (typeof options.actions !== 'object' ||
      typeof options.actions.resolve !== 'function')
  ) {
    throw new ConfigError(
      'Option "actions" must be an action registry made with createActionRegistry().',
      { details: { option: 'actions' } },
    );
  }
  const logger = (options.logger ?? pino({ level: 'warn' })).child({
    system: options.name,
  });
  const registry =
    options.actions ?? config.machine['~workflow'].binding.actions;
  const actions = options.systemActions?.(registry) ?? registry;
  const logic = config.machine.provide({
    ...(actions !== undefined ? { actions } : {}),
    logger,
    limits: {
      bytesMax: options.eventBytesMax ?? defaults.eventBytesMax,
      depthMax: defaults.depthMax,
    },
  });
  return {
    ...config,
    machine: logic as unknown as AnyStateMachine,
    rejectUnhandled: config.rejectUnhandled ?? true,
  };
}
