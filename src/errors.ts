/**
 * Every error Shardchart raises is a {@link ShardchartError} with a stable
 * `code`. Codes are listed once, in {@link errorCodes}, and documented in
 * `docs/errors.md`; a test keeps the table, the docs and the exports in step.
 * A retired code is never reused.
 */

/**
 * The table of error codes: code -> one-line meaning. Order is not
 * significant; the docs list the same codes.
 */
export const errorCodes = {
  CONFIG_INVALID:
    'An option passed to createActorSystem or an adapter is invalid.',
  ENTITY_TYPE_UNKNOWN: 'The entity type is not registered with the system.',
  ENTITY_ID_INVALID: 'The entity id is empty, too long or not a string.',
  EVENT_INVALID: 'The event is not a plain object with a string `type`.',
  EVENT_NOT_SERIALIZABLE:
    'The event holds a value that cannot be persisted (function, class instance, cycle, symbol, bigint).',
  EVENT_TOO_LARGE: 'The encoded event is larger than `eventBytesMax`.',
  EVENT_REJECTED:
    'The current state does not accept the event (with `rejectUnhandled: true`).',
  EVENT_FAILED:
    'The machine threw while applying the event (action, guard or assign); the event went to dead letters.',
  CONTEXT_NOT_SERIALIZABLE:
    'The event produced a context that cannot be persisted; the event was not applied.',
  MAILBOX_FULL:
    'The entity mailbox holds `mailboxDepthMax` events already; retry later.',
  OUTBOX_FULL:
    'The entity has `publishPendingMax` published messages waiting for a failing or slow publisher; retry later.',
  ENTITY_FAILED:
    'The entity failed `restart.attemptsMax` times in a row and is parked until `ref.restart()`.',
  ENTITY_STOPPED:
    'The entity reached a final state and accepts no more events.',
  SYSTEM_STOPPED: 'The actor system is stopping or stopped.',
  TIMEOUT: 'An operation did not finish within its timeout.',
  SEQ_OUT_OF_RANGE: 'The requested seq is outside the entity journal.',
  STORE_CONFLICT:
    'A journal append expected a different last seq: another writer got there first.',
  STORE_CORRUPT: 'A stored record failed its checksum or could not be decoded.',
  STORE_CLOSED: 'The store is closed.',
  STORE_FAILED: 'The store failed to read or write.',
  DECODE_FAILED:
    'Bytes could not be decoded: malformed, truncated, too large, too deep or a forbidden type.',
  ENCODE_FAILED: 'A value could not be encoded.',
  SNAPSHOT_INVALID: 'A snapshot could not be restored into the machine.',
  REPLAY_DIVERGED:
    'Replaying the journal produced an error or a different result than recorded.',
  PAYLOAD_INVALID:
    'An event payload failed validation against its JSON schema.',
  DAG_CYCLE: 'The steps of a DAG depend on each other in a cycle.',
  DAG_DEPENDENCY_MISSING:
    'A DAG step depends on a step id that does not exist.',
  MACHINE_INVALID:
    'The value given is not an XState v5 machine, or the module has no such export.',
  CHECK_FAILED:
    'A model-based check found an invariant violation or a divergence from plain XState.',
  GRAPH_FAILED: 'A machine graph could not be laid out or rendered.',
  STORE_UNSAFE:
    'The store server acknowledges writes before they are on disk, and `requireSyncAlways` asks for that to be refused.',
  NOT_OWNER:
    'This node does not hold a valid lease on the shard of the entity (moved, handed off or lease expired).',
  FENCED:
    'A write carried a fencing token older than the current owner record of its shard, and was refused.',
  CLUSTER_UNAVAILABLE:
    'The cluster cannot be reached (NATS connection lost or no owner answered in time).',
  MESSAGE_INVALID:
    'A message received on a cluster subject is malformed, oversized or of an unknown kind.',
  WATCHES_FULL:
    'The owner of the entity already keeps as many watch registrations as its `cluster.watchesMax` allows.',
  ACTION_UNKNOWN:
    'A workflow called an action that is not in the action registry.',
  ACTION_PARAMS_INVALID:
    'The parameters of an action call failed validation against its schema.',
  ACTION_TIMEOUT: 'An action did not finish within its timeout.',
  ACTION_FAILED:
    'An action failed after its retry policy gave up (or with a non-retryable error).',
  WORKFLOW_DIVERGED:
    'Replaying a workflow function took a different step than its journal recorded: the code changed incompatibly.',
  WORKFLOW_STEPS_EXCEEDED:
    'A workflow function recorded `stepsMax` steps, the most one instance keeps for replay.',
  TASK_NOT_FOUND: 'No human task has the given id.',
  TASK_ALREADY_COMPLETED: 'The human task was completed already.',
  TEMPLATE_FIELD_MISSING:
    'A task title or description template names a context field that does not exist.',
  TENANT_INVALID:
    'A tenant id is missing, empty or not a string where one is required.',
} as const;

export type ErrorCode = keyof typeof errorCodes;

/**
 * Base class of every error Shardchart raises. `code` is stable across
 * releases; `details` carries the values involved, for logs and callers.
 *
 * @example
 * ```ts
 * try { await ref.send({ type: 'PAY' }); }
 * catch (err) { if (err instanceof ShardchartError && err.code === 'MAILBOX_FULL') retryLater(); }
 * ```
 */
export class ShardchartError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  /** True when the same call may succeed if retried later unchanged. */
  readonly retryable: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    options?: ErrorOptions & {
      details?: Record<string, unknown>;
      retryable?: boolean;
    },
  ) {
    super(message, options);
    this.name = 'ShardchartError';
    this.code = code;
    this.details = options?.details;
    this.retryable = options?.retryable ?? false;
  }
}

type Opts = ErrorOptions & { details?: Record<string, unknown> };

/** Bad configuration passed by the programmer. */
export class ConfigError extends ShardchartError {
  constructor(message: string, options?: Opts) {
    super('CONFIG_INVALID', message, options);
    this.name = 'ConfigError';
  }
}

/** The caller sent something the system refuses (bad type, id, event, size). */
export class InvalidInputError extends ShardchartError {
  constructor(
    code:
      | 'ENTITY_TYPE_UNKNOWN'
      | 'ENTITY_ID_INVALID'
      | 'EVENT_INVALID'
      | 'EVENT_NOT_SERIALIZABLE'
      | 'EVENT_TOO_LARGE'
      | 'SEQ_OUT_OF_RANGE'
      | 'PAYLOAD_INVALID',
    message: string,
    options?: Opts,
  ) {
    super(code, message, options);
    this.name = 'InvalidInputError';
  }
}

/** The entity could not apply an event, or cannot take events now. */
export class EntityError extends ShardchartError {
  constructor(
    code:
      | 'EVENT_REJECTED'
      | 'EVENT_FAILED'
      | 'CONTEXT_NOT_SERIALIZABLE'
      | 'MAILBOX_FULL'
      | 'OUTBOX_FULL'
      | 'ENTITY_FAILED'
      | 'ENTITY_STOPPED'
      | 'SYSTEM_STOPPED'
      | 'SNAPSHOT_INVALID'
      | 'REPLAY_DIVERGED',
    message: string,
    options?: Opts & { retryable?: boolean },
  ) {
    super(code, message, options);
    this.name = 'EntityError';
  }
}

/** A wait (`waitFor`, `send` with `timeoutMs`) ran out of time. */
export class TimeoutError extends ShardchartError {
  constructor(message: string, options?: Opts) {
    super('TIMEOUT', message, { ...options, retryable: true });
    this.name = 'TimeoutError';
  }
}

/** A store refused or failed an operation. */
export class StoreError extends ShardchartError {
  constructor(
    code:
      | 'STORE_CONFLICT'
      | 'STORE_CORRUPT'
      | 'STORE_CLOSED'
      | 'STORE_FAILED'
      | 'STORE_UNSAFE',
    message: string,
    options?: Opts & { retryable?: boolean },
  ) {
    super(code, message, options);
    this.name = 'StoreError';
  }
}

/** Bytes could not be encoded or decoded by the codec. */
export class CodecError extends ShardchartError {
  constructor(
    code: 'DECODE_FAILED' | 'ENCODE_FAILED',
    message: string,
    options?: Opts,
  ) {
    super(code, message, options);
    this.name = 'CodecError';
  }
}

/** A machine or step definition cannot be built (cycle, missing step, not a machine). */
export class DefinitionError extends ShardchartError {
  constructor(
    code: 'DAG_CYCLE' | 'DAG_DEPENDENCY_MISSING' | 'MACHINE_INVALID',
    message: string,
    options?: Opts,
  ) {
    super(code, message, options);
    this.name = 'DefinitionError';
  }
}

/** `checkMachine` found a counterexample; the message holds the shrunk sequence and the seed. */
export class CheckFailedError extends ShardchartError {
  constructor(message: string, options?: Opts) {
    super('CHECK_FAILED', message, options);
    this.name = 'CheckFailedError';
  }
}

/** A graph export (layout or rendering) failed. */
export class GraphError extends ShardchartError {
  constructor(message: string, options?: Opts) {
    super('GRAPH_FAILED', message, options);
    this.name = 'GraphError';
  }
}

/** A cluster-level refusal or fault: ownership, fencing, connectivity, bad messages. */
export class ClusterError extends ShardchartError {
  constructor(
    code:
      | 'NOT_OWNER'
      | 'FENCED'
      | 'CLUSTER_UNAVAILABLE'
      | 'MESSAGE_INVALID'
      | 'WATCHES_FULL',
    message: string,
    options?: Opts & { retryable?: boolean },
  ) {
    super(code, message, options);
    this.name = 'ClusterError';
  }
}

/** A workflow function, its action registry or a human task refused or failed an operation. */
export class WorkflowError extends ShardchartError {
  constructor(
    code:
      | 'ACTION_UNKNOWN'
      | 'ACTION_PARAMS_INVALID'
      | 'ACTION_TIMEOUT'
      | 'ACTION_FAILED'
      | 'WORKFLOW_DIVERGED'
      | 'WORKFLOW_STEPS_EXCEEDED'
      | 'TASK_NOT_FOUND'
      | 'TASK_ALREADY_COMPLETED'
      | 'TEMPLATE_FIELD_MISSING'
      | 'TENANT_INVALID',
    message: string,
    options?: Opts & { retryable?: boolean },
  ) {
    super(code, message, options);
    this.name = 'WorkflowError';
  }
}

/** True when `err` is a ShardchartError, optionally with the given code. */
export function isShardchartError(
  err: unknown,
  code?: ErrorCode,
): err is ShardchartError {
  return (
    err instanceof ShardchartError && (code === undefined || err.code === code)
  );
}

/** Normalises a thrown value into an Error (non-Error throws are wrapped). */
export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
