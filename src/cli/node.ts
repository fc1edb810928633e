import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino, type Level, type Logger } from 'pino';
import { natsStore } from '../../adapters/nats/index.js';
import { ConfigError, DefinitionError } from '../errors.js';
import { createActorSystem } from '../system/actor-system.js';
import type {
  ActorSystem,
  ActorSystemOptions,
  EntityDefinition,
} from '../system/types.js';
import { isWorkflowDefinition } from '../workflow/define.js';

/**
 * Options of `createActorSystem` a node module may set in its `options`
 * export. The rest belong to the command line (`name`, `cluster`), to the
 * node itself (`store` is always natsStore(), `logger` writes to stderr) or
 * make no sense in a process of its own (`clock`).
 */
type ModuleSystemOptions = Omit<
  ActorSystemOptions<Record<string, EntityDefinition>>,
  'name' | 'entities' | 'store' | 'cluster' | 'logger' | 'clock'
>;

const OPTIONS_REFUSED = [
  'name',
  'entities',
  'store',
  'cluster',
  'logger',
  'clock',
] as const;

/** What `shardchart node` takes from a module; see {@link loadNodeModule}. */
export interface NodeModule {
  /** Entity type name -> machine, workflow or entity-type config. */
  entities: Record<string, EntityDefinition>;
  /** The module's `system` export, if any. */
  system?: string;
  /** The module's `options` export, if any. */
  options: ModuleSystemOptions;
}

export interface NodeCommandOptions {
  /** Path of the module exporting the entity types. */
  module: string;
  /** NATS server URLs. */
  servers: string[];
  /** Default: `<hostname>-<pid>`. */
  nodeId?: string;
  /** Overrides the module's `system` export. */
  system?: string;
  /** Default 256; every node of a system must agree. */
  shardCount?: number;
  /** Default 5,000. */
  leaseTtlMs?: number;
  /** pino level of the node's stderr log. Default `info`. */
  logLevel?: Level;
  /** Programmatic use: log here instead of stderr. */
  logger?: Logger;
  /**
   * Programmatic use: the node leaves when this aborts. The command line
   * leaves on SIGTERM or SIGINT instead.
   */
  signal?: AbortSignal;
}

/** A problem the user can fix (no system name, a bad module); printed without a stack. */
export class NodeCommandError extends Error {
  override readonly name = 'NodeCommandError';
}

/**
 * `shardchart node`: runs one node of a clustered system hosting the entity
 * types a module exports, on `natsStore()` over the given NATS servers, and
 * returns once it has left the cluster. The first SIGTERM or SIGINT makes
 * it leave gracefully: `system.stop()` hands every shard it owns over to the
 * other nodes (their entities are passivated and snapshotted first), so
 * nothing waits for a lease to expire. A second signal exits at once with
 * code 1; the node's shards are then claimed after its lease expires, as
 * after a crash.
 *
 * Logs are pino JSON lines on stderr; `"msg":"node ready"` says the node
 * has joined.
 *
 * @throws NodeCommandError when the module gives no system name or no entity types.
 * @throws DefinitionError `MACHINE_INVALID` when the module cannot be loaded.
 * @throws ClusterError `CLUSTER_UNAVAILABLE` when NATS cannot be reached.
 *
 * @example
 * ```ts
 * await runNode({ module: 'dist/shop.js', servers: ['nats://127.0.0.1:4222'], nodeId: 'n1' });
 * ```
 */
export async function runNode(options: NodeCommandOptions): Promise<void> {
  const mod = await loadNodeModule(options.module);
  const name = options.system ?? mod.system;
  if (name === undefined) {
    throw new NodeCommandError(
      `No system name: pass --system NAME, or export it from ${options.module} (\`export const system = 'shop'\`). Every node of one system must use the same name.`,
    );
  }
  const nodeId = options.nodeId ?? defaultNodeId();
  const logger =
    options.logger ??
    pino(
      { level: options.logLevel ?? 'info', base: { pid: process.pid } },
      pino.destination(2),
    );
  const log = logger.child({ system: name, node: nodeId });
  const system = await createActorSystem({
    ...mod.options,
    name,
    entities: mod.entities,
    store: natsStore({ logger: log }),
    logger,
    cluster: {
      nats: { servers: options.servers },
      nodeId,
      shardCount: options.shardCount,
      leaseTtlMs: options.leaseTtlMs,
    },
  });
  log.info(
    {
      types: Object.keys(mod.entities),
      shardCount: options.shardCount ?? 256,
      leaseTtlMs: options.leaseTtlMs ?? 5_000,
      servers: options.servers,
    },
    'node ready',
  );
  const reason = await stopRequested(options.signal, log);
  log.info({ reason }, 'leaving: handing shards over');
  await leave(system, log);
}

/** Resolves with the name of the first stop request (a signal or an abort). */
function stopRequested(
  abort: AbortSignal | undefined,
  log: Logger,
): Promise<string> {
  return new Promise((done) => {
    if (abort !== undefined) {
      if (abort.aborted) return done('aborted');
      abort.addEventListener('abort', () => done('aborted'), { once: true });
      return;
    }
    let leaving = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (!leaving) {
        leaving = true;
        done(signal);
        return;
      }
      // The operator insists: skip the handoff. The shards are claimed by
      // the other nodes once this node's lease expires, as after a crash.
      log.warn({ signal }, 'second signal: exiting without handing over');
      process.exit(1);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

async function leave(system: ActorSystem, log: Logger): Promise<void> {
  const started = Date.now();
  await system.stop();
  log.info({ stopMs: Date.now() - started }, 'node stopped');
}

/** `<hostname>-<pid>`, cut to the characters and length a node id allows. */
export function defaultNodeId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9_-]/g, '-')
    .slice(0, 48);
  return `${host.length > 0 ? host : 'node'}-${process.pid}`;
}

/**
 * Imports a node module and reads its contract:
 *
 * - `entities` (optional): an object mapping entity type names to machines,
 *   workflows or entity-type configs, exactly as `createActorSystem` takes
 *   them. When it is exported, it alone says what the node hosts.
 * - Otherwise every export that is an XState machine, a workflow
 *   (`defineWorkflow`) or an entity-type config (`{ machine, ... }`) is an
 *   entity type named after its export (`export const order = ...` hosts
 *   type `order`); a default export holding such a map counts too.
 * - `system` (optional): the system name, overridden by `--system`.
 * - `options` (optional): further `createActorSystem` options such as
 *   `snapshotEvery`, `passivateAfterMs` or `actions` (the workflows' action
 *   registry). `name`, `entities`, `store`, `cluster`, `logger` and `clock`
 *   are refused there: the command line and the node set them.
 *
 * @example
 * ```ts
 * // shop.ts
 * export const system = 'shop';
 * export const order = orderMachine;   // entity type "order"
 * export const options = { snapshotEvery: 50 };
 * // elsewhere
 * const { entities } = await loadNodeModule('dist/shop.js');
 * ```
 */
export async function loadNodeModule(modulePath: string): Promise<NodeModule> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(modulePath)).href)) as Record<
      string,
      unknown
    >;
  } catch (cause) {
    throw new DefinitionError(
      'MACHINE_INVALID',
      `Cannot load module ${modulePath}: ${cause instanceof Error ? cause.message : String(cause)}. Pass the path of a JavaScript module that exports the entity types.`,
      { cause, details: { module: modulePath } },
    );
  }
  const fallback = isPlainObject(mod.default) ? mod.default : {};
  const exported = { ...fallback, ...mod };
  const system = exported.system;
  if (
    system !== undefined &&
    (typeof system !== 'string' || !/^[A-Za-z0-9_-]+$/.test(system))
  ) {
    throw new NodeCommandError(
      `The "system" export of ${modulePath} must be a name of letters, digits, "_" or "-"; got ${JSON.stringify(system)}.`,
    );
  }
  return {
    entities: entityTypes(modulePath, exported),
    system: system,
    options: systemOptions(modulePath, exported.options),
  };
}

function entityTypes(
  modulePath: string,
  exported: Record<string, unknown>,
): Record<string, EntityDefinition> {
  if (exported.entities !== undefined) {
    const entities = exported.entities;
    if (!isPlainObject(entities) || Object.keys(entities).length === 0) {
      throw new NodeCommandError(
        `The "entities" export of ${modulePath} must be an object mapping entity type names to machines, e.g. \`export const entities = { order: orderMachine }\`.`,
      );
    }
    for (const [type, value] of Object.entries(entities)) {
      if (!isEntityDefinition(value)) {
        throw new NodeCommandError(
          `entities.${type} of ${modulePath} is not an XState machine, a workflow or an entity-type config ({ machine, ... }).`,
        );
      }
    }
    return entities as Record<string, EntityDefinition>;
  }
  const found: Record<string, EntityDefinition> = {};
  for (const [name, value] of Object.entries(exported)) {
    if (name === 'default' || name === 'options') continue;
    if (isEntityDefinition(value)) found[name] = value;
  }
  if (Object.keys(found).length === 0) {
    throw new NodeCommandError(
      `${modulePath} exports no entity types: export each machine under its entity type name (\`export const order = orderMachine\`), or export \`entities = { order: orderMachine }\`.`,
    );
  }
  return found;
}

function systemOptions(
  modulePath: string,
  value: unknown,
): ModuleSystemOptions {
  if (value === undefined) return {};
  if (!isPlainObject(value)) {
    throw new NodeCommandError(
      `The "options" export of ${modulePath} must be an object of createActorSystem options.`,
    );
  }
  const refused = OPTIONS_REFUSED.filter((key) => key in value);
  if (refused.length > 0) {
    throw new ConfigError(
      `The "options" export of ${modulePath} sets ${refused.map((k) => `"${k}"`).join(', ')}, which the node sets itself: the system name comes from --system or the "system" export, entity types from the module's exports, the store is natsStore(), the cluster options come from the command line. Remove ${refused.length === 1 ? 'it' : 'them'}.`,
      { details: { module: modulePath, refused } },
    );
  }
  return value;
}

function isEntityDefinition(value: unknown): value is EntityDefinition {
  if (isMachine(value) || isWorkflowDefinition(value)) return true;
  return (
    isPlainObject(value) &&
    (isMachine(value.machine) || isWorkflowDefinition(value.machine))
  );
}

function isMachine(value: unknown): boolean {
  const v = value as {
    transition?: unknown;
    getInitialSnapshot?: unknown;
  } | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.transition === 'function' &&
    typeof v.getInitialSnapshot === 'function' &&
    !isWorkflowDefinition(v)
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}
