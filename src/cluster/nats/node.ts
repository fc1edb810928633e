/**
 * One node of a clustered system over NATS: the connection, the events
 * stream, the shard coordinator (membership, leases, ownership; see
 * src/sharding/coordinator.ts), one ShardWorker per owned shard, the router
 * for sends and reads, the ingress subjects and the status responder.
 *
 * Loaded lazily by createActorSystem when the `cluster` option is given, so
 * an embedded system never loads the NATS client.
 */
import { randomUUID } from 'node:crypto';
import {
  connect,
  headers,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { encode } from '../../codec/index.js';
import type { PublishedMessage } from '../../system/publish.js';
import {
  ClusterError,
  ConfigError,
  isShardchartError,
  toError,
  type ShardchartError,
} from '../../errors.js';
import type { EntityKey, Store, WriteFence } from '../../persistence/types.js';
import type { SystemCore } from '../../system/actor-system.js';
import type { EntityState } from '../../system/types.js';
import {
  createCoordinator,
  type Coordinator,
} from '../../sharding/coordinator.js';
import { shardOf } from '../../sharding/shard.js';
import { natsClusterKv } from './kv.js';
import type { ResolvedClusterOptions } from '../options.js';
import {
  encodeMessage,
  type QueryMessage,
  type SendMessage,
} from '../protocol.js';
import { subjectsFor, type Subjects } from '../subjects.js';
import type { ClusterStats } from '../stats.js';
import { Ingress } from './ingress.js';
import { Router } from './router.js';
import { ShardWorker, type ShardHost } from './shard-worker.js';
import { WatchRegistry } from './watch-registry.js';

export class ClusterNode implements ShardHost {
  readonly incarnation = randomUUID().slice(0, 8);
  readonly subjects: Subjects;
  readonly router: Router;
  readonly limits: { bytesMax: number; depthMax: number };
  private readonly workers = new Map<number, ShardWorker>();
  /** Acquired shards whose timers are still to be loaded (see `loadWakeupsOf`). */
  private readonly wakeupShards = new Set<number>();
  private wakeupScan: Promise<void> | undefined;
  private core: SystemCore | undefined;
  private coordinator: Coordinator | undefined;
  private ingress: Ingress | undefined;
  private statusSub: Subscription | undefined;
  private readonly logger: Logger;
  /** Watches of this node's entities by other nodes' subscribers. */
  private readonly watches: WatchRegistry;
  private stopping = false;
  readonly counters = { messagesInvalid: 0, handoffs: 0, shardsLost: 0 };

  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly options: ResolvedClusterOptions,
    readonly system: string,
    logger: Logger,
  ) {
    this.subjects = subjectsFor(system);
    this.logger = logger.child({ system, node: options.nodeId });
    this.limits = { bytesMax: options.messageBytesMax, depthMax: 64 };
    this.router = new Router(
      nc,
      this.subjects,
      options,
      {
        now: Date.now,
        setTimeout: (fn, ms) => setTimeout(fn, ms),
        clearTimeout: (t) => clearTimeout(t as never),
      },
      this.incarnation,
      (error, where) => this.invalid(error, where ?? this.router.replySubject),
    );
    // Wall-clock time, as the router's: watches are renewed by other
    // processes, whatever clock this system's entities run on.
    this.watches = new WatchRegistry(
      {
        now: Date.now,
        setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
        clearTimeout: (t) => clearTimeout(t as never),
      },
      options.watchesMax,
      options.messageBytesMax,
      (shard, bytes) => this.publishState(this.subjects.state(shard), bytes),
    );
  }

  /** Publishes on a state subject; a closed connection loses the message, as core NATS does. */
  private publishState(subject: string, bytes: Uint8Array): void {
    try {
      this.nc.publish(subject, bytes);
    } catch (error) {
      this.logger.warn(
        { subject, err: error },
        'could not publish an entity state to its watchers',
      );
    }
  }

  /** Connects to NATS and prepares the stream; the node takes no shards yet. */
  static async connect(
    system: string,
    options: ResolvedClusterOptions,
    logger: Logger,
  ): Promise<ClusterNode> {
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: options.nats.servers,
        user: options.nats.user,
        pass: options.nats.pass,
        token: options.nats.token,
        name: `shardchart-${system}-${options.nodeId}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        waitOnFirstConnect: false,
      });
    } catch (error) {
      throw new ClusterError(
        'CLUSTER_UNAVAILABLE',
        `Could not connect to NATS at ${String(options.nats.servers)} (${error instanceof Error ? error.message : String(error)}); check that the server runs with JetStream (-js) and the URL.`,
        {
          cause: error,
          retryable: true,
        },
      );
    }
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const node = new ClusterNode(nc, js, jsm, options, system, logger);
    await node.ensureStream();
    return node;
  }

  private async ensureStream(): Promise<void> {
    const config = {
      name: this.subjects.stream,
      subjects: [this.subjects.shardWildcard],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: 120_000_000_000,
      max_msg_size: this.options.messageBytesMax,
    };
    try {
      await this.jsm.streams.info(this.subjects.stream);
    } catch {
      try {
        await this.jsm.streams.add(config);
      } catch (error) {
        // Another node created it in between ("already in use", or on
        // nats-server 2.9 "subjects overlap with an existing stream"):
        // fine if the stream is there now.
        await this.jsm.streams.info(this.subjects.stream).catch(() => {
          throw error;
        });
      }
    }
  }

  /** The fence the store must use (valid once `start` has run). */
  get fence(): WriteFence {
    return {
      tokenFor: (key) => this.requireCoordinator().fence.tokenFor(key),
      check: (token) => this.requireCoordinator().fence.check(token),
    };
  }

  private requireCoordinator(): Coordinator {
    if (this.coordinator === undefined) {
      throw new ClusterError(
        'NOT_OWNER',
        'This node has not joined the cluster yet; retry.',
        { retryable: true },
      );
    }
    return this.coordinator;
  }

  bindStore(store: Store): void {
    if (store.joinCluster === undefined) {
      throw new ConfigError(
        `Store "${store.kind}" cannot be shared by a cluster: entities move between nodes, so every node must reach the same store. Use natsStore() from 'shardchart/adapters/nats'.`,
        { details: { store: store.kind } },
      );
    }
    store.joinCluster({
      fence: this.fence,
      nodeId: this.options.nodeId,
      system: this.system,
      connection: this.nc,
      shards: {
        count: this.options.shardCount,
        of: (key) => this.shardOf(key),
      },
    });
  }

  /** Joins the cluster: starts routing, ingress and (unless a client node) the coordinator. */
  async start(core: SystemCore): Promise<void> {
    this.core = core;
    this.router.start();
    core.setPublisher((message) => this.publishDomainEvent(message));
    this.statusSub = this.nc.subscribe(this.subjects.adminStatus, {
      callback: (err, msg) => {
        if (err) return;
        try {
          msg.respond(new TextEncoder().encode(JSON.stringify(this.status())));
        } catch {
          // The asker is gone.
        }
      },
    });
    if (!this.options.hostShards) return;
    this.ingress = new Ingress(
      this.nc,
      this.subjects,
      this.limits,
      this.router,
      core,
      (error, where) => this.invalid(error, where),
    );
    this.ingress.start();
    const kv = await natsClusterKv(
      this.nc,
      `SHARDCHART_${this.system}_CLUSTER`,
    );
    this.coordinator = createCoordinator({
      kv,
      nodeId: this.options.nodeId,
      shardCount: this.options.shardCount,
      leaseTtlMs: this.options.leaseTtlMs,
      types: [...core.types.keys()],
      logger: this.logger,
      onAcquired: (shard) => this.acquired(shard),
      onRelease: (shard) => this.release(shard),
      onLost: (shard) => this.lost(shard),
    });
    await this.coordinator.start();
  }

  owns(key: EntityKey): boolean {
    const coordinator = this.coordinator;
    return (
      coordinator !== undefined &&
      coordinator.owns(shardOf(key.type, key.id, this.options.shardCount))
    );
  }

  shardOf(key: EntityKey): number {
    return shardOf(key.type, key.id, this.options.shardCount);
  }

  private acquired(shard: number): Promise<void> | void {
    const core = this.core;
    if (core === undefined || this.stopping || this.workers.has(shard)) return;
    const worker = new ShardWorker(
      shard,
      this.nc,
      this.js,
      this.jsm,
      this.subjects,
      this,
      this.options.shardInFlightMax,
      Math.max(30_000, this.options.leaseTtlMs * 6),
    );
    this.workers.set(shard, worker);
    this.logger.info({ shard }, 'shard acquired');
    const started = worker.start().catch((error: unknown) => {
      this.logger.error(
        { shard, err: error },
        'could not start consuming the shard; it is released for another node',
      );
      this.workers.delete(shard);
      throw error;
    });
    this.loadWakeupsOf(shard);
    // The shard's watchers renew their watches here at once (see StateFeed).
    started.then(
      () => {
        if (this.workers.get(shard) === worker)
          this.publishState(
            this.subjects.state(shard),
            encodeMessage({ k: 'moved', shard }),
          );
      },
      () => undefined,
    );
    return started;
  }

  /**
   * Arms the timers of an acquired shard's entities from the store's timer
   * index. The shards acquired together (at start, or a dead node's many
   * shards at failover) share one scan; shards acquired while a scan runs
   * wait for the next. The store is told which shards the scan is for: one
   * that keeps its index by shard (natsStore) reads only their part.
   */
  private loadWakeupsOf(shard: number): void {
    this.wakeupShards.add(shard);
    if (this.wakeupScan !== undefined) return;
    this.wakeupScan = (async () => {
      // Let the rest of a burst of acquisitions join this scan.
      await new Promise((r) => setTimeout(r, 20));
      let delay = 250;
      while (
        this.wakeupShards.size > 0 &&
        this.core !== undefined &&
        !this.stopping
      ) {
        const shards = new Set(this.wakeupShards);
        this.wakeupShards.clear();
        try {
          await this.core.loadWakeups((key) => {
            const s = this.shardOf(key);
            return shards.has(s) && this.workers.has(s);
          }, shards);
          delay = 250;
        } catch (error) {
          this.logger.error(
            { shards: [...shards], err: error },
            'could not load the timer index of the shards; retrying',
          );
          for (const s of shards)
            if (this.workers.has(s)) this.wakeupShards.add(s);
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 5_000);
        }
      }
    })().finally(() => {
      this.wakeupScan = undefined;
      // A shard acquired after the loop's last check and before this runs.
      const [next] = this.wakeupShards;
      if (next !== undefined && !this.stopping && this.core !== undefined)
        this.loadWakeupsOf(next);
    });
  }

  /** Graceful handoff: finish what was taken, passivate the shard's entities, then let go. */
  private async release(shard: number): Promise<void> {
    const worker = this.workers.get(shard);
    this.counters.handoffs++;
    if (worker !== undefined) await worker.drain();
    this.workers.delete(shard);
    this.watches.dropShard(shard);
    await this.core?.passivateWhere((key) => this.shardOf(key) === shard);
    this.logger.info({ shard }, 'shard handed off');
  }

  /** The lease lapsed or another node took the shard: stop at once, write nothing more. */
  private lost(shard: number): void {
    this.counters.shardsLost++;
    this.workers.get(shard)?.stop();
    this.workers.delete(shard);
    this.watches.dropShard(shard);
    this.core?.discardWhere(
      (key) => this.shardOf(key) === shard,
      new ClusterError(
        'NOT_OWNER',
        `This node lost shard ${shard} (its lease lapsed or another node took it); the event is applied by the new owner.`,
        { retryable: true },
      ),
    );
    this.logger.warn({ shard }, 'shard lost');
  }

  // ---------------------------------------------------------------- ShardHost

  ownsShard(shard: number): boolean {
    return this.coordinator?.owns(shard) ?? false;
  }

  apply(message: SendMessage): Promise<EntityState> {
    const core = this.core;
    if (core === undefined)
      return Promise.reject(
        new ClusterError('NOT_OWNER', 'The node is not started.', {
          retryable: true,
        }),
      );
    try {
      return core.applyLocal(
        message.type,
        message.id,
        message.event,
        message.eventId,
      );
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  async query(
    message: QueryMessage,
  ): Promise<{ state?: EntityState; value?: unknown }> {
    const core = this.core;
    const shard = this.shardOf(message);
    // A leaving node answers as a non-owner (retryable), not SYSTEM_STOPPED:
    // the asker's read or watch goes on with the next owner.
    if (
      core === undefined ||
      core.stopping ||
      this.stopping ||
      !this.owns(message) ||
      !this.workers.has(shard)
    ) {
      throw new ClusterError(
        'NOT_OWNER',
        `This node does not own ${message.type}/${message.id}; retry.`,
        { retryable: true },
      );
    }
    if (message.op === 'watch') return this.watches.watch(core, message, shard);
    return core.queryLocal(message);
  }

  invalid(error: ShardchartError, where: string): void {
    this.counters.messagesInvalid++;
    this.logger.warn(
      { where, code: error.code, err: error.message },
      'invalid message dropped',
    );
  }

  log(
    level: 'warn' | 'error' | 'info',
    fields: Record<string, unknown>,
    message: string,
  ): void {
    this.logger[level](fields, message);
  }

  status(): Record<string, unknown> {
    const coordinator = this.coordinator;
    const core = this.core;
    // Entities in memory by type, for `shardchart cluster status`; a status
    // request is rare enough for one pass over the hosts.
    const entitiesByType: Record<string, number> = {};
    for (const host of core?.hosts.values() ?? [])
      entitiesByType[host.key.type] = (entitiesByType[host.key.type] ?? 0) + 1;
    return {
      system: this.system,
      nodeId: this.options.nodeId,
      incarnation: this.incarnation,
      hostShards: this.options.hostShards,
      ownedShards: [...this.workers.keys()].sort((a, b) => a - b),
      /** Entities of this node that other nodes' subscribers watch. */
      watchedEntities: this.watches.size,
      /** Entities this node's subscribers watch (wherever they live). */
      watchingEntities: this.router.states.size,
      liveEntities: core?.statsSnapshot().liveEntities ?? 0,
      entitiesByType,
      eventsApplied: core?.stats.eventsApplied ?? 0,
      messagesInvalid: this.counters.messagesInvalid,
      handoffs: this.counters.handoffs,
      shardsLost: this.counters.shardsLost,
      sent: this.router.stats.sent,
      coordinator: coordinator?.status(),
    };
  }

  stats(): ClusterStats {
    return {
      nodeId: this.options.nodeId,
      ownedShards: this.workers.size,
      messagesInvalid: this.counters.messagesInvalid,
      eventsRouted: this.router.stats.sent,
      eventsResent: this.router.stats.resends,
      handoffs: this.counters.handoffs,
      shardsLost: this.counters.shardsLost,
    };
  }

  /**
   * Publishes a machine's domain event (the `publish` action) once its step is
   * durable: msgpack body, `Nats-Msg-Id` = the message id (stable across
   * redeliveries, so a JetStream stream or a consumer dedupes), plus the
   * message's own headers. When a JetStream stream captures the subject the
   * delivery waits for its acknowledgement (at-least-once); otherwise it is a
   * core NATS publish, which reaches the subscribers connected right now
   * (at-most-once, as core NATS is).
   */
  private async publishDomainEvent(message: PublishedMessage): Promise<void> {
    const h = headers();
    // The machine's own headers first: the ones that describe the body and
    // its identity are the system's and cannot be overwritten.
    for (const [name, value] of Object.entries(message.headers ?? {}))
      h.set(name, value);
    h.set('Nats-Msg-Id', message.id);
    h.set('Content-Type', 'application/msgpack');
    h.set('Shardchart-Entity', `${message.entity.type}/${message.entity.id}`);
    const data = encode(message.data ?? null);
    if (await this.streamCaptures(message.subject)) {
      await this.js.publish(message.subject, data, {
        headers: h,
        msgID: message.id,
        timeout: 5_000,
      });
    } else {
      // No stream captures the subject: plain NATS delivery.
      this.nc.publish(message.subject, data, { headers: h });
    }
  }

  /** Subject -> whether a JetStream stream captures it, looked up at most every 10 s. */
  private readonly captured = new Map<string, { yes: boolean; at: number }>();

  private async streamCaptures(subject: string): Promise<boolean> {
    const known = this.captured.get(subject);
    if (known !== undefined && Date.now() - known.at < 10_000) return known.yes;
    let yes: boolean;
    try {
      await this.jsm.streams.find(subject);
      yes = true;
    } catch (error) {
      const text =
        error instanceof Error
          ? `${error.name} ${error.message}`
          : String(error);
      if (!/no stream matches subject|not found/i.test(text)) throw error;
      yes = false;
    }
    if (this.captured.size > 10_000) this.captured.clear();
    this.captured.set(subject, { yes, at: Date.now() });
    return yes;
  }

  /** Leaves the cluster: hands every shard over, then stops routing. */
  async leave(): Promise<void> {
    this.stopping = true;
    this.watches.dropAll();
    this.ingress?.stop();
    await this.coordinator?.stop();
    for (const worker of this.workers.values()) worker.stop();
    this.workers.clear();
    this.router.close();
    this.statusSub?.unsubscribe();
  }

  async close(): Promise<void> {
    try {
      await this.nc.drain();
    } catch (error) {
      if (!isShardchartError(error))
        this.logger.debug({ err: error }, 'NATS drain');
    }
  }
}
