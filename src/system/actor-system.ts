import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import type { AnyStateMachine } from 'xstate';
import { ConfigError, EntityError, InvalidInputError } from '../errors.js';
import type { DeadLetter, EntityKey, Store } from '../persistence/types.js';
import { systemClock, type Clock } from './clock.js';
import { EntityHost } from './entity-host.js';
import { FlushQueue } from './journal-writer.js';
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
  EntityState,
  SystemStats,
  TimerResume,
} from './types.js';
import { checkEntityId, positiveInt } from './validate.js';

type Listener = { next?: (s: EntityState) => void; error?: (err: unknown) => void };

const TIMER_RESUME: readonly TimerResume[] = ['deadline', 'remaining', 'restart'];

function isMachine(def: unknown): def is AnyStateMachine {
  return typeof def === 'object' && def !== null && 'getInitialSnapshot' in def && 'transition' in def && 'root' in def;
}

function resolveEntityType(name: string, def: EntityDefinition, options: ActorSystemOptions<never>): ResolvedEntityType {
  const cfg = isMachine(def) ? { machine: def } : def;
  if (!cfg || !isMachine(cfg.machine)) {
    throw new ConfigError(
      `Entity type "${name}" must be an XState v5 machine (createMachine/setup().createMachine) or { machine, input?, timerResume?, rejectUnhandled? }.`,
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
  };
  readonly log: Logger;
  readonly xstateLogger: (...args: unknown[]) => void;
  readonly contextLimits;
  readonly eventLimits;
  stopping = false;
  readonly runId = randomUUID();
  readonly flushes = new FlushQueue();
  readonly recencyStepMs: number;
  private stopped: Promise<void> | undefined;
  private live = 0;
  private evicting = 0;
  private readonly wakeups = new WakeupQueue();
  private wakeTimer: unknown;
  private wakeTimerAt = Infinity;
  private sweepTimer: unknown;

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
    this.recencyStepMs = options.passivateAfterMs > 0 ? Math.min(Math.max(options.passivateAfterMs / 16, 1), 1_000) : 1_000;
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
      const host = this.host(next.key.type, next.key.id);
      host.ensureActive().catch((err: unknown) => this.log.error({ type: next.key.type, id: next.key.id, err }, 'could not wake entity for its timer'));
    }
    this.stats.pendingWakeups = this.wakeups.size;
    this.armWakeTimer();
  }

  async loadWakeups(): Promise<void> {
    for await (const { key, wakeAt } of this.store.scanWakeups()) {
      this.wakeups.push(wakeAt, key, this.keyString(key.type, key.id));
    }
    this.stats.pendingWakeups = this.wakeups.size;
    this.armWakeTimer();
  }

  // ------------------------------------------------------------------- stop

  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
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
    await this.store.close();
  }

  statsSnapshot(): SystemStats {
    return { ...this.stats, liveEntities: this.live, pendingWakeups: this.wakeups.size };
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
  const logger = options.logger ?? pino({ level: 'warn' });
  let store = options.store;
  if (store === undefined) {
    // The one place the core reaches into an adapter: the memory store has
    // no driver, and an omitted store must still give a working system.
    const { memoryStore } = (await import('../../adapters/memory/index.js'));
    store = memoryStore();
  }
  const core = new SystemCore(options.name, store, options.clock ?? systemClock, resolved, logger);
  for (const [name, def] of Object.entries(options.entities)) {
    if (name.length === 0 || name.includes('\u0000')) throw new ConfigError(`Entity type names must be non-empty and printable; got ${JSON.stringify(name)}.`);
    core.types.set(name, resolveEntityType(name, def, options as never));
  }
  if (options.store === undefined) {
    core.log.warn({ store: store.kind }, "no store given: using memoryStore(), which is not durable (entities are lost when the process exits); pass lmdbStore({ path }) from 'shardchart/adapters/lmdb' to keep them");
  } else if (!store.durable) {
    core.log.warn({ store: store.kind }, `store "${store.kind}" is not durable: acknowledged events can be lost in a crash`);
  }
  await store.open();
  await core.loadWakeups();
  core.startSweep();
  return buildSystem<TEntities>(core);
}

function buildSystem<TEntities extends Record<string, EntityDefinition>>(core: SystemCore): ActorSystem<TEntities> {
  return {
    name: core.name,
    store: core.store,
    entity(type, id) {
      core.typeOf(type);
      checkEntityId(type, id);
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
