import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import type { AnyStateMachine } from 'xstate';
import { ClusterError, ConfigError, EntityError, InvalidInputError } from '../errors.js';
import type { DeadLetter, EntityKey, Store } from '../persistence/types.js';
import { systemClock, type Clock } from './clock.js';
import { EntityHost } from './entity-host.js';
import { FlushQueue } from './journal-writer.js';
import { publishDefaults, type Publisher } from './publish.js';
import { Publishing } from './outbox.js';
import { createEntityRef } from './entity-ref.js';
import { RecencyList } from './recency-list.js';
import { defaults, type EntityRuntime, type ResolvedEntityType, type ResolvedOptions } from './runtime.js';
import { WakeupQueue } from './timers.js';
import type {
  ActorSystem,
  ActorSystemOptions,
  BatchItem,
  BatchResult,
  EntityDefinition,
  EntityRef,
  EntityTypeConfig,
  EntityState,
  SystemStats,
  TimerResume,
} from './types.js';
import type { ClusterNode } from '../cluster/nats/node.js';
import { createClusterEntityRef } from '../cluster/cluster-ref.js';
import { resolveClusterOptions } from '../cluster/options.js';
import type { ClusterStats } from '../cluster/stats.js';
import { isWorkflowDefinition } from '../workflow/define.js';
import { workflowEntityConfig } from '../workflow/entity.js';
import { createWorkflowServices, hasWorkflows, reservedTypePrefix, serviceMethods, type WorkflowServices } from '../workflow/services.js';
import { checkEntityId, checkEvent, checkEventId, positiveInt } from './validate.js';

/** What the core needs from a cluster node. */
export interface ClusterNodeHandle {
  /** Hands every shard over and stops routing (first step of stop). */
  leave(): Promise<void>;
  /** Closes the NATS connection (last step of stop). */
  close(): Promise<void>;
  stats(): ClusterStats;
}

type Listener = { next?: (s: EntityState) => void; error?: (err: unknown) => void };

const TIMER_RESUME: readonly TimerResume[] = ['deadline', 'remaining', 'restart'];

function isMachine(def: unknown): def is AnyStateMachine {
  return typeof def === 'object' && def !== null && 'getInitialSnapshot' in def && 'transition' in def && 'root' in def;
}

function resolveEntityType(name: string, def: EntityDefinition, options: ActorSystemOptions<never>): ResolvedEntityType {
  // A workflow (defineWorkflow) is actor logic the engine runs like a
  // machine, once bound to this system's action registry and logger.
  const cfg = isMachine(def) ? { machine: def } : (workflowEntityConfig(name, def, options) ?? (def as EntityTypeConfig));
  if (!cfg || !(isMachine(cfg.machine) || isWorkflowDefinition(cfg.machine))) {
    throw new ConfigError(
      `Entity type "${name}" must be an XState v5 machine (createMachine/setup().createMachine), a workflow (defineWorkflow) or { machine, input?, timerResume?, rejectUnhandled? }.`,
      { details: { type: name } },
    );
  }
  const timerResume = cfg.timerResume ?? options.timerResume ?? 'deadline';
  if (!TIMER_RESUME.includes(timerResume)) {
    throw new ConfigError(`Entity type "${name}": timerResume must be one of ${TIMER_RESUME.join(', ')}; got "${String(timerResume)}".`);
  }
  return {
    name,
    machine: cfg.machine,
    input: cfg.input ?? ((id: string) => ({ entityId: id, entityType: name })),
    timerResume,
    rejectUnhandled: cfg.rejectUnhandled ?? options.rejectUnhandled ?? false,
  };
}

/** @internal The system's internals, shared with EntityRef. */
export class SystemCore implements EntityRuntime {
  readonly hosts = new Map<string, EntityHost>();
  /** The same hosts, least recently used first. */
  private readonly recency = new RecencyList<EntityHost>();
  readonly types = new Map<string, ResolvedEntityType>();
  readonly listeners = new Map<string, Set<Listener>>();
  readonly stats: SystemStats = {
    liveEntities: 0,
    activations: 0,
    passivations: 0,
    eventsApplied: 0,
    duplicates: 0,
    failures: 0,
    deadLetters: 0,
    storeWrites: 0,
    pendingWakeups: 0,
    published: 0,
    publishFailures: 0,
  };
  readonly log: Logger;
  readonly xstateLogger: (...args: unknown[]) => void;
  readonly contextLimits;
  readonly eventLimits;
  stopping = false;
  readonly runId = randomUUID();
  readonly flushes = new FlushQueue();
  readonly recencyStepMs: number;
  /** Where published messages go; createActorSystem configures it (see publish.ts). */
  publishing: Publishing;
  private stopped: Promise<void> | undefined;
  private live = 0;
  private evicting = 0;
  private readonly wakeups = new WakeupQueue();
  /** The cluster node of a clustered system (see src/cluster/nats/node.ts). */
  node: ClusterNodeHandle | undefined;
  /**
   * Set on a clustered node that hosts shards: only entities of shards this
   * node owns get a host here (see src/cluster/).
   */
  cluster: { owns(key: EntityKey): boolean } | undefined;
  private wakeTimer: unknown;
  private wakeTimerAt = Infinity;
  private sweepTimer: unknown;
  private holds = 0;
  private holdTimer: NodeJS.Timeout | undefined;
  private holdsClosed = false;

  constructor(
    readonly name: string,
    readonly store: Store,
    readonly clock: Clock,
    readonly options: ResolvedOptions,
    logger: Logger,
  ) {
    this.log = logger.child({ system: name });
    this.xstateLogger = (...args: unknown[]) => this.log.info({ xstate: args }, 'xstate log');
    this.eventLimits = { bytesMax: options.eventBytesMax, depthMax: defaults.depthMax };
    this.contextLimits = { bytesMax: defaults.contextBytesMax, depthMax: defaults.depthMax };
    // Fine enough that idle passivation is at most 1/16 of its delay early,
    // coarse enough that a busy entity is not moved on every send.
    this.publishing = new Publishing(name, clock, this.log, { timeoutMs: publishDefaults.timeoutMs, backoffMs: publishDefaults.backoffMs, pendingMax: publishDefaults.pendingMax }, this.stats, undefined, false);
    this.recencyStepMs = options.passivateAfterMs > 0 ? Math.min(Math.max(options.passivateAfterMs / 16, 1), 1_000) : 1_000;
  }

  /**
   * Sets the publisher of the messages machines publish, unless the
   * `publisher` option gave one. A cluster node calls this with its NATS
   * publisher before it hosts shards; until then messages wait.
   */
  setPublisher(publisher: Publisher): void {
    this.publishing.setPublisher(publisher);
  }

  keyString(type: string, id: string): string {
    return `${type}\u0000${id}`;
  }

  typeOf(type: string): ResolvedEntityType {
    const def = this.types.get(type);
    if (!def) {
      throw new InvalidInputError(
        'ENTITY_TYPE_UNKNOWN',
        `Entity type "${type}" is not registered with system "${this.name}"; registered types: ${[...this.types.keys()].map((t) => `"${t}"`).join(', ')}.`,
        { details: { type } },
      );
    }
    return def;
  }

  host(type: string, id: string): EntityHost {
    return this.hostAt(this.keyString(type, id), type, id);
  }

  /**
   * The host of the entity with key string `k` (from keyString), created if
   * needed. Refs keep their key string: looking it up again hashes nothing,
   * as a string caches its hash.
   */
  hostAt(k: string, type: string, id: string): EntityHost {
    let host = this.hosts.get(k);
    if (!host) {
      if (this.cluster !== undefined && !this.cluster.owns({ type, id })) {
        throw new ClusterError('NOT_OWNER', `This node does not own the shard of ${type}/${id}; the event goes to the shard's owner.`, {
          retryable: true,
          details: { type, id },
        });
      }
      host = new EntityHost({ type, id }, k, this.typeOf(type), this);
      this.hosts.set(k, host);
      this.recency.add(host);
    }
    return host;
  }

  existingHost(type: string, id: string): EntityHost | undefined {
    return this.hosts.get(this.keyString(type, id));
  }

  checkRunning(): void {
    if (this.stopping) {
      throw new EntityError('SYSTEM_STOPPED', `Actor system "${this.name}" is stopping or stopped; create a new system to send events.`);
    }
  }

  /** What every send checks first, wherever it is applied: a running system, a valid event and event id. */
  checkSend(event: unknown, eventId: unknown): asserts eventId is string | undefined {
    this.checkRunning();
    checkEvent(event, this.eventLimits);
    checkEventId(eventId);
  }

  // ------------------------------------------------------ runtime callbacks

  hasListeners(k: string): boolean {
    return this.listeners.has(k);
  }

  emit(k: string, state: EntityState): void {
    const set = this.listeners.get(k);
    if (!set) return;
    for (const l of set) {
      try {
        l.next?.(state);
      } catch (err) {
        this.log.error({ err }, 'an entity subscriber threw; it stays subscribed');
      }
    }
  }

  subscribe(k: string, listener: Listener): () => void {
    let set = this.listeners.get(k);
    if (!set) this.listeners.set(k, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(k) === set) this.listeners.delete(k);
    };
  }

  /** Marks a host most recently used. */
  touch(host: EntityHost): void {
    this.recency.touch(host);
  }

  onActivated(host: EntityHost): void {
    this.live++;
    this.touch(host);
    if (this.live - this.evicting > this.options.liveEntitiesMax) this.evict(host);
  }

  /** Drops a passivated host (its actor is gone; live was already decremented). */
  onPassivated(host: EntityHost, wakeAt: number | null): void {
    if (this.hosts.get(host.k) === host) {
      this.hosts.delete(host.k);
      this.recency.remove(host);
    }
    host.dropped = true;
    // The next activation reads the entity back, so the store may drop what
    // it caches about it: a passivated entity then holds no heap anywhere.
    this.store.forget?.(host.key);
    if (wakeAt !== null && !this.stopping) this.scheduleWakeup(wakeAt, host.key, host.k);
  }

  successor(host: EntityHost): EntityHost {
    return this.host(host.key.type, host.key.id);
  }

  onDeactivated(): void {
    this.live--;
  }

  async deadLetter(letter: DeadLetter): Promise<void> {
    this.stats.deadLetters++;
    await this.store.appendDeadLetter(letter);
  }

  // ------------------------------------------------------------ passivation

  /** Passivates least-recently-used idle entities until under liveEntitiesMax. */
  private evict(activated: EntityHost): void {
    let excess = this.live - this.evicting - this.options.liveEntitiesMax;
    // `next` is read first: a passivation may finish synchronously and take
    // the host out of the list.
    for (let host = this.recency.oldest, next = host?.newer; host !== undefined; host = next, next = host?.newer) {
      if (excess <= 0) break;
      // Never the entity being activated: evicting it would undo the
      // activation its callers are waiting for, over and over.
      if (host === activated || !host.canPassivate(false)) continue;
      excess--;
      this.evicting++;
      void host.passivate(false).finally(() => this.evicting--);
    }
  }

  startSweep(): void {
    const idleMs = this.options.passivateAfterMs;
    if (idleMs <= 0) return;
    const every = Math.min(Math.max(Math.floor(idleMs / 4), 10), 5_000);
    const tick = (): void => {
      this.sweepTimer = undefined;
      if (this.stopping) return;
      const cutoff = this.clock.now() - idleMs;
      for (let host = this.recency.oldest, next = host?.newer; host !== undefined; host = next, next = host?.newer) {
        if (host.lastActive > cutoff) break;
        if (host.canPassivate(false)) void host.passivate(false);
      }
      this.sweepTimer = this.clock.setTimeout(tick, every);
    };
    this.sweepTimer = this.clock.setTimeout(tick, every);
  }

  // ---------------------------------------------------------------- wakeups

  /**
   * Entities that are not live but have timers pending are woken when the
   * earliest one is due (immediately if overdue); activation re-arms them.
   */
  scheduleWakeup(at: number, key: EntityKey, k: string): void {
    this.wakeups.push(at, key, k);
    this.stats.pendingWakeups = this.wakeups.size;
    this.armWakeTimer();
  }

  private armWakeTimer(): void {
    const next = this.wakeups.peek();
    if (!next || this.stopping) return;
    if (this.wakeTimer !== undefined && this.wakeTimerAt <= next.at) return;
    if (this.wakeTimer !== undefined) this.clock.clearTimeout(this.wakeTimer);
    this.wakeTimerAt = next.at;
    this.wakeTimer = this.clock.setTimeout(() => this.onWake(), Math.max(0, next.at - this.clock.now()));
  }

  private onWake(): void {
    this.wakeTimer = undefined;
    this.wakeTimerAt = Infinity;
    if (this.stopping) return;
    const now = this.clock.now();
    for (let next = this.wakeups.peek(); next && next.at <= now; next = this.wakeups.peek()) {
      this.wakeups.pop();
      const existing = this.hosts.get(next.k);
      if (existing?.phase === 'live') continue;
      if (!this.types.has(next.key.type)) {
        this.log.warn({ type: next.key.type, id: next.key.id }, 'timer due for an entity type this system does not host; skipped');
        continue;
      }
      let host: EntityHost;
      try {
        host = this.host(next.key.type, next.key.id);
      } catch {
        // A clustered node that no longer owns the entity's shard: its owner wakes it.
        continue;
      }
      host.ensureActive().catch((err: unknown) => this.log.error({ type: next.key.type, id: next.key.id, err }, 'could not wake entity for its timer'));
    }
    this.stats.pendingWakeups = this.wakeups.size;
    this.armWakeTimer();
  }

  /**
   * Schedules the wake-ups of the store's timer index (those `filter`
   * accepts). `shards` tells a store that keeps its index by shard which
   * parts to read; `filter` still decides.
   */
  async loadWakeups(filter?: (key: EntityKey) => boolean, shards?: ReadonlySet<number>): Promise<void> {
    for await (const { key, wakeAt } of this.store.scanWakeups(shards === undefined ? undefined : { partitions: shards })) {
      if (filter !== undefined && !filter(key)) continue;
      this.wakeups.push(wakeAt, key, this.keyString(key.type, key.id));
    }
    this.stats.pendingWakeups = this.wakeups.size;
    this.armWakeTimer();
  }

  // ---------------------------------------------------------------- cluster

  /** Applies an event that arrived for an owned shard (the owner side of a cluster send). */
  async applyLocal(type: string, id: string, event: { type: string; [key: string]: unknown }, eventId: string | undefined): Promise<EntityState> {
    this.checkRunning();
    this.typeOf(type);
    checkEntityId(type, id);
    this.checkSend(event, eventId);
    return this.hostAt(this.keyString(type, id), type, id).send(event, eventId);
  }

  /** Answers a read of an entity of an owned shard (the owner side of a cluster read). */
  async queryLocal(query: { op: string; type: string; id: string; force?: boolean }): Promise<{ state?: EntityState; value?: unknown }> {
    this.checkRunning();
    this.typeOf(query.type);
    checkEntityId(query.type, query.id);
    switch (query.op) {
      case 'snapshot':
        return { state: await this.host(query.type, query.id).read() };
      case 'restart':
        await this.host(query.type, query.id).restart();
        return {};
      case 'isLive':
        return { value: this.existingHost(query.type, query.id)?.phase === 'live' };
      case 'passivate': {
        const host = this.existingHost(query.type, query.id);
        if (!host || host.phase === 'idle') return { value: true };
        await host.whenIdle();
        const phase: string = host.phase;
        if (phase !== 'live') return { value: phase === 'idle' };
        return { value: await host.passivate(query.force ?? false) };
      }
      default:
        throw new InvalidInputError('EVENT_INVALID', `Unknown query "${query.op}".`);
    }
  }

  /** Passivates (forced) every live entity `filter` accepts: a shard handed off. */
  async passivateWhere(filter: (key: EntityKey) => boolean): Promise<void> {
    const hosts = [...this.hosts.values()].filter((h) => filter(h.key));
    await Promise.all(
      hosts.map(async (h) => {
        await h.whenIdle();
        if (h.phase !== 'live') return;
        if (!(await h.passivate(true))) {
          this.log.error({ type: h.key.type, id: h.key.id }, 'could not snapshot entity at handoff; its journal is intact');
        }
      }),
    );
  }

  /** Drops every entity `filter` accepts without writing: a shard lost. */
  discardWhere(filter: (key: EntityKey) => boolean, reason: Error): void {
    for (const host of [...this.hosts.values()]) {
      if (!filter(host.key)) continue;
      host.discard(reason);
      if (this.hosts.get(host.k) === host) {
        this.hosts.delete(host.k);
        this.recency.remove(host);
      }
    }
  }

  // ------------------------------------------------------------------- stop

  /**
   * Keeps the process alive while a caller awaits something only the
   * system's timers can bring about. Those timers are unref'd (an idle
   * system must not hold a server open), so a script awaiting
   * `ref.waitFor(...)` on an `after` transition, or `system.stop()` waiting
   * for an invocation, would otherwise see Node exit with code 13 (an
   * unsettled top-level await). One interval is ref'd while any hold is
   * taken and unref'd when the last is released: toggling costs no timer.
   */
  hold(): () => void {
    // After stop nothing the system does can settle a wait: hold nothing.
    if (this.holdsClosed) return () => undefined;
    if (this.holds++ === 0) {
      this.holdTimer ??= setInterval(() => undefined, 2_147_483_647);
      this.holdTimer.ref();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.holds === 0) this.holdTimer?.unref();
    };
  }

  stop(): Promise<void> {
    if (this.stopped === undefined) {
      const release = this.hold();
      this.stopped = this.doStop().finally(() => {
        release();
        this.holdsClosed = true;
        if (this.holdTimer !== undefined) clearInterval(this.holdTimer);
        this.holdTimer = undefined;
      });
    }
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    if (this.node !== undefined) {
      try {
        await this.node.leave();
      } catch (error) {
        this.log.error({ err: error }, 'could not hand the shards over; other nodes claim them when this lease lapses');
      }
    }
    if (this.sweepTimer !== undefined) this.clock.clearTimeout(this.sweepTimer);
    if (this.wakeTimer !== undefined) this.clock.clearTimeout(this.wakeTimer);
    const stopped = new EntityError('SYSTEM_STOPPED', `Actor system "${this.name}" stopped before this event was applied; send it to a running system.`, { retryable: true });
    for (const host of this.hosts.values()) {
      if (host.phase === 'restarting' || host.phase === 'parked') host.rejectQueued(stopped);
    }
    await Promise.all([...this.hosts.values()].map((h) => h.whenIdle()));
    await Promise.all(
      [...this.hosts.values()].map(async (h) => {
        if (h.phase !== 'live') return;
        if (!(await h.passivate(true))) {
          this.log.error({ type: h.key.type, id: h.key.id }, 'could not snapshot entity at stop; its journal is intact');
        }
      }),
    );
    try {
      await this.store.close();
    } finally {
      await this.node?.close();
    }
  }

  statsSnapshot(): SystemStats {
    const stats: SystemStats = { ...this.stats, liveEntities: this.live, pendingWakeups: this.wakeups.size };
    if (this.node !== undefined) stats.cluster = this.node.stats();
    return stats;
  }
}

/**
 * Creates an actor system: every entity of every registered type is a
 * durable XState actor, journaled and snapshotted through `store`.
 *
 * @example
 * ```ts
 * const system = await createActorSystem({ name: 'shop', entities: { order: orderMachine }, store: lmdbStore({ path: './data' }) });
 * const r = await system.entity('order', 'o-1').send({ type: 'ADD', sku: 'a' }, { eventId: 'e-1' });
 * await system.stop();
 * ```
 */
export async function createActorSystem<TEntities extends Record<string, EntityDefinition>>(
  options: ActorSystemOptions<TEntities>,
): Promise<ActorSystem<TEntities>> {
  if (typeof options !== 'object' || options === null) throw new ConfigError('createActorSystem expects an options object: { name, entities, store? }.');
  if (typeof options.name !== 'string' || options.name.length === 0 || !/^[A-Za-z0-9_-]+$/.test(options.name)) {
    throw new ConfigError(`Option "name" must be a non-empty string of letters, digits, "_" or "-"; got ${JSON.stringify(options.name)}.`);
  }
  if (typeof options.entities !== 'object' || options.entities === null || Object.keys(options.entities).length === 0) {
    throw new ConfigError('Option "entities" must map at least one entity type name to an XState machine.');
  }
  const restart = options.restart ?? {};
  const resolved: ResolvedOptions = {
    snapshotEvery: positiveInt('snapshotEvery', options.snapshotEvery, defaults.snapshotEvery),
    passivateAfterMs: positiveInt('passivateAfterMs', options.passivateAfterMs, defaults.passivateAfterMs, 0),
    liveEntitiesMax: positiveInt('liveEntitiesMax', options.liveEntitiesMax, defaults.liveEntitiesMax),
    mailboxDepthMax: positiveInt('mailboxDepthMax', options.mailboxDepthMax, defaults.mailboxDepthMax),
    dedupeWindow: positiveInt('dedupeWindow', options.dedupeWindow, defaults.dedupeWindow),
    eventBytesMax: positiveInt('eventBytesMax', options.eventBytesMax, defaults.eventBytesMax),
    restart: {
      attemptsMax: positiveInt('restart.attemptsMax', restart.attemptsMax, defaults.restart.attemptsMax),
      backoffMs: positiveInt('restart.backoffMs', restart.backoffMs, defaults.restart.backoffMs, 0),
    },
  };
  if (options.publisher !== undefined && typeof options.publisher !== 'function') {
    throw new ConfigError('Option "publisher" must be a function (message) => Promise<void>; see the README, "Publishing domain events".');
  }
  const publishOptions = {
    timeoutMs: positiveInt('publishTimeoutMs', options.publishTimeoutMs, publishDefaults.timeoutMs),
    backoffMs: positiveInt('publishBackoffMs', options.publishBackoffMs, publishDefaults.backoffMs),
    pendingMax: positiveInt('publishPendingMax', options.publishPendingMax, publishDefaults.pendingMax),
  };
  const logger = options.logger ?? pino({ level: 'warn' });
  let store = options.store;
  if (store === undefined) {
    // The one place the core reaches into an adapter: the memory store has
    // no driver, and an omitted store must still give a working system.
    const { memoryStore } = (await import('../../adapters/memory/index.js'));
    store = memoryStore();
  }
  let node: ClusterNode | undefined;
  let hostShards = false;
  if (options.cluster !== undefined) {
    const clusterOptions = resolveClusterOptions(options.cluster);
    hostShards = clusterOptions.hostShards;
    // Loaded only for a cluster: an embedded system never loads the NATS client.
    const { ClusterNode: Node } = await import('../cluster/nats/node.js');
    node = await Node.connect(options.name, clusterOptions, logger);
    try {
      node.bindStore(store);
    } catch (error) {
      await node.close();
      throw error;
    }
  }
  const core = new SystemCore(options.name, store, options.clock ?? systemClock, resolved, logger);
  core.node = node;
  // A cluster node sets its NATS publisher (setPublisher) unless the option gave one.
  core.publishing = new Publishing(options.name, core.clock, core.log, publishOptions, core.stats, options.publisher, options.cluster !== undefined);
  // Event routing and human tasks keep their records in entities of
  // internal types, registered beside the workflows (src/workflow/services.ts).
  let system: ActorSystem<TEntities> | undefined = undefined;
  const services = hasWorkflows(options.entities)
    ? createWorkflowServices({ clock: core.clock, log: core.log, eventLimits: core.eventLimits, types: core.types, entity: (type, id) => system!.entity(type as never, id) })
    : undefined;
  for (const [name, def] of Object.entries(options.entities)) {
    if (name.length === 0 || name.includes('\u0000')) throw new ConfigError(`Entity type names must be non-empty and printable; got ${JSON.stringify(name)}.`);
    if (name.startsWith(reservedTypePrefix)) throw new ConfigError(`Entity type names starting with "${reservedTypePrefix}" are reserved for the system; rename "${name}".`);
    core.types.set(name, resolveEntityType(name, def, { ...options, systemActions: services?.withSystemActions } as never));
  }
  for (const [name, def] of Object.entries(services?.entityTypes ?? {})) core.types.set(name, resolveEntityType(name, def, options as never));
  if (options.store === undefined) {
    core.log.warn({ store: store.kind }, "no store given: using memoryStore(), which is not durable (entities are lost when the process exits); pass lmdbStore({ path }) from 'shardchart/adapters/lmdb' to keep them");
  } else if (!store.durable) {
    // Chosen on purpose (tests, caches): said at info level, so a test
    // suite that makes a system per case is not flooded with warnings.
    core.log.info({ store: store.kind }, `store "${store.kind}" is not durable: acknowledged events can be lost in a crash`);
  }
  store.useLogger?.(core.log.child({ store: store.kind }));
  try {
    await store.open();
  } catch (error) {
    await node?.close();
    throw error;
  }
  if (node === undefined) {
    await core.loadWakeups();
  } else {
    // Only the entities of owned shards live here; their wake-ups are loaded
    // as shards are acquired.
    if (hostShards) core.cluster = node;
    await node.start(core);
  }
  core.startSweep();
  system = buildSystem<TEntities>(core, node, services);
  return system;
}

function buildSystem<TEntities extends Record<string, EntityDefinition>>(core: SystemCore, node: ClusterNode | undefined, services: WorkflowServices | undefined): ActorSystem<TEntities> {
  return {
    name: core.name,
    store: core.store,
    ...serviceMethods(services, core.name),
    entity(type, id) {
      core.typeOf(type);
      checkEntityId(type, id);
      if (node !== undefined) return createClusterEntityRef(core, node.router, type, id) as never;
      return createEntityRef(core, type, id) as never;
    },
    async sendMany(items: readonly BatchItem[]): Promise<BatchResult[]> {
      return Promise.all(
        items.map(async (item): Promise<BatchResult> => {
          try {
            const ref: EntityRef = (this as ActorSystem).entity(item.type, item.id);
            const state = await ref.send(item.event, item.eventId !== undefined ? { eventId: item.eventId } : {});
            return { ok: true, state };
          } catch (error) {
            return { ok: false, error: error instanceof Error ? error : new Error(String(error)) };
          }
        }),
      );
    },
    deadLetters(options) {
      return core.store.readDeadLetters(options);
    },
    stats() {
      return core.statsSnapshot();
    },
    stop() {
      return core.stop();
    },
  };
}
