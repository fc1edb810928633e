/**
 * The shard coordinator: membership, leases and shard ownership over a
 * {@link ClusterKv}, with no leader and no shared clock.
 *
 * ## Protocol (version 1; records in records.ts)
 *
 * Membership. A node registers `nodes.<id>` (create, or compare-and-set
 * replace of a dead predecessor) and rewrites it every `heartbeatIntervalMs`
 * by compare-and-set on its own last revision. Liveness is judged locally:
 * node B considers A dead once it has not seen A's record change for A's
 * `leaseTtlMs`, counted on B's monotonic clock from when B saw it, and only
 * while B's own view is healthy (watch caught up, own heartbeats succeeding:
 * a node that was itself cut off must not expire the others). B then
 * deletes A's record by compare-and-set on the revision B last saw; A's next
 * heartbeat fails and A knows it was expelled. Incarnations never come back:
 * a process that re-registers after expulsion takes a new incarnation.
 *
 * Lease. A's lease runs until the local time at which A *sent* its last
 * heartbeat that the store acknowledged, plus `leaseTtlMs - safetyMarginMs`.
 * Outside the lease A issues no fencing token and makes no claim; when it
 * lapses A drops every shard (`onLost`) at once. A paused or partitioned A
 * thus stops writing on its own, before anyone may take over.
 *
 * Ownership. `shards.<n>` names an owner and its incarnation and changes
 * only by compare-and-set on its revision; the revision of the record naming
 * this node is its fencing token. Every node computes the same target per
 * shard (rendezvous hashing over live members, allocation.ts). The target
 * claims a shard that is free (absent or `owner: null`) or whose owner
 * incarnation is dead; an owner whose shard now targets another live member
 * hands it over: `onRelease` (drain), then release by compare-and-set to
 * `owner: null`, at most `handoffConcurrency` at a time, so a join moves
 * shards gradually. A shard stays with its owner until released or until
 * its owner's incarnation is dead.
 *
 * ## What is safe, under which assumption
 *
 * At most one node holds a valid lease on a shard at any instant, assuming
 * only that the clocks of any two nodes advance at rates within a factor
 * (1 ± ρ) of each other with `safetyMarginMs >= 2ρ · leaseTtlMs`: no clock
 * is ever compared with another machine's. The argument: B may take A's
 * shard only after deleting A's record by compare-and-set on revision r,
 * which B saw no earlier than A sent heartbeat r, and after waiting
 * `leaseTtlMs` on its own clock since it saw r; the delete succeeding means
 * no later heartbeat of A was stored, so A's lease ended at A's send time of
 * r plus `leaseTtlMs - safetyMarginMs` on A's clock, which is earlier.
 * Claims whose justification involves a second key (the owner's node
 * record) re-read that key first, because a lagging watch may skip
 * revisions (see view.ts); a dead incarnation, once confirmed, stays dead.
 *
 * The lease does not cover a process paused between checking its token and
 * the write reaching the store (Kleppmann's fencing argument): for that the
 * store must refuse writes whose token is older than the newest owner
 * record (`check`, and the store's own per-entity sequence checks). The
 * safety margin also absorbs the usual time between check and write.
 *
 * Records this release cannot read (another protocol version, corruption)
 * are never overwritten automatically: they may belong to a node we cannot
 * understand. Their shards wait until an operator removes the record.
 */
import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';

import { ClusterError, ConfigError } from '../errors.js';
import type {
  EntityKey,
  FenceToken,
  WriteFence,
} from '../persistence/types.js';
import { systemClock, type Clock } from '../system/clock.js';
import { allocate, type AllocationNode } from './allocation.js';
import type { CoordinatorContext, Phase } from './context.js';
import {
  resolveCoordinatorOptions,
  type CoordinatorOptions,
  type CoordinatorStatus,
  type LostReason,
  type MemberStatus,
  type ResolvedCoordinatorOptions,
  type ShardStatus,
} from './coordinator-options.js';
import type { ClusterKv } from './kv.js';
import { Membership } from './membership.js';
import { monotonicClock } from './monotonic-clock.js';
import { Ownership } from './ownership.js';
import { ensureClusterConfig } from './cluster-config.js';
import { describeInvalid, describeMembers, describeShards } from './status.js';
import {
  ClusterView,
  ViewFeed,
  type NodeView,
  type ViewChange,
} from './view.js';

export type {
  CoordinatorOptions,
  CoordinatorStatus,
  LostReason,
  MemberStatus,
  ShardStatus,
};

/**
 * A running coordinator; it is also the {@link WriteFence} of the node's
 * store.
 */
export interface Coordinator extends WriteFence {
  readonly nodeId: string;
  /** The current incarnation (changes if the node is expelled and re-registers). */
  readonly incarnation: string;
  /** The coordinator as a store fence (itself). */
  readonly fence: WriteFence;
  /** Checks the shared config, starts watching and resolves once this node is a member. */
  start(): Promise<void>;
  /**
   * Leaves the cluster. Graceful (default): hands every shard over (at most
   * `handoffConcurrency` at a time), then deletes the membership record.
   * Otherwise drops everything at once and lets the lease expire.
   */
  stop(options?: { graceful?: boolean; timeoutMs?: number }): Promise<void>;
  /** True while this node may write: a heartbeat was acknowledged within the lease. */
  leaseValid(): boolean;
  /** True when this node holds `shard` with a valid lease (serving or draining). */
  owns(shard: number): boolean;
  ownedShards(): number[];
  /** The live owner of `shard` for routing, or undefined while it has none. */
  ownerOf(shard: number): string | undefined;
  members(): MemberStatus[];
  status(): CoordinatorStatus;
}

const REPORTED_MAX = 1_000;

/**
 * Drives one node: starts and stops it, keeps its view of the bucket (and
 * whether that view is healthy enough to judge others), computes targets,
 * and runs the loop that lets membership (membership.ts) and ownership
 * (ownership.ts) act on time and on every change.
 */
class ShardCoordinator implements Coordinator, CoordinatorContext {
  readonly nodeId: string;
  readonly fence: WriteFence = this;
  readonly cfg: ResolvedCoordinatorOptions;
  readonly kv: ClusterKv;
  readonly clock: Clock;
  readonly log: Logger;
  readonly view: ClusterView;
  private readonly membership: Membership;
  private readonly ownership: Ownership;
  private state: Phase = 'new';

  private readonly feed: ViewFeed;
  private healthySince: number | undefined;
  private readonly reported = new Set<string>();
  private targetsCache:
    { key: string; targets: string[] | undefined } | undefined;

  private wakeTimer: unknown;
  private wakeAt = Infinity;
  private tickQueued = false;
  private readonly joined: {
    promise: Promise<void>;
    resolve: () => void;
    reject: (err: Error) => void;
  };
  private left: (() => void) | undefined;

  constructor(readonly options: CoordinatorOptions) {
    this.cfg = resolveCoordinatorOptions(options);
    if (options.kv === undefined || options.kv === null) {
      throw new ConfigError(
        'Coordinator option "kv" is required: pass the cluster KV bucket.',
      );
    }
    this.kv = options.kv;
    this.nodeId = this.cfg.nodeId;
    this.clock = options.clock ?? monotonicClock;
    this.log = (options.logger ?? pino({ level: 'silent' })).child({
      node: this.nodeId,
      area: 'sharding',
    });
    this.view = new ClusterView(this.cfg.shardCount);
    this.feed = new ViewFeed(this.view, this.kv, this.clock, this.log, {
      changed: (change) => this.onChange(change),
      readinessChanged: () => this.refreshHealth(),
      delivered: () => this.requestTick(),
      retryMs: this.cfg.heartbeatIntervalMs,
    });
    this.membership = new Membership(
      this,
      {
        joined: () => this.joinedCluster(),
        expelled: () => this.expelled(),
        superseded: () => this.superseded(),
        healthChanged: () => this.refreshHealth(),
      },
      options.incarnation ?? randomUUID().replace(/-/g, '').slice(0, 16),
      (options.wallClock ?? systemClock).now(),
    );
    this.ownership = new Ownership(this, this.membership);
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined);
    this.joined = { promise, resolve, reject };
  }

  get incarnation(): string {
    return this.membership.incarnation;
  }

  phase(): Phase {
    return this.state;
  }

  private isStopped(): boolean {
    return this.state === 'stopped';
  }

  // ------------------------------------------------------------ lifecycle

  async start(): Promise<void> {
    if (this.state !== 'new') {
      throw new ConfigError(
        'The coordinator was started already: create a new one to join again.',
      );
    }
    this.state = 'starting';
    await this.ensureConfig();
    if (this.isStopped()) return this.joined.promise;
    await this.feed.open();
    if (this.isStopped()) return this.joined.promise;
    this.state = 'joining';
    this.tick();
    return this.joined.promise;
  }

  async stop(
    options: { graceful?: boolean; timeoutMs?: number } = {},
  ): Promise<void> {
    if (this.isStopped()) return;
    const graceful = options.graceful ?? true;
    if (graceful && this.state === 'active') {
      this.state = 'leaving';
      this.membership.beatSoon(); // publish `leaving` now
      const timeoutMs =
        options.timeoutMs ??
        this.cfg.handoffTimeoutMs + 2 * this.cfg.leaseTtlMs;
      await new Promise<void>((resolve) => {
        const timer = this.clock.setTimeout(resolve, timeoutMs);
        this.left = () => {
          this.clock.clearTimeout(timer);
          resolve();
        };
        this.tick();
      });
      this.left = undefined;
    }
    await this.shutdown(graceful && this.ownership.idle());
  }

  private async shutdown(deleteRecord: boolean): Promise<void> {
    if (this.isStopped()) return;
    const wasMember = this.state === 'active' || this.state === 'leaving';
    this.state = 'stopped';
    this.clock.clearTimeout(this.wakeTimer);
    this.wakeAt = Infinity;
    // The lease ends here, before anything else goes out: nothing this node
    // sends after this line may be taken as a sign of life.
    this.membership.endLease();
    this.ownership.loseAll('stopped');
    this.joined.reject(
      new ClusterError(
        'CLUSTER_UNAVAILABLE',
        'The coordinator was stopped before this node joined the cluster.',
        {
          retryable: true,
        },
      ),
    );
    await this.feed.stop();
    if (deleteRecord && wasMember) await this.membership.deleteRecord();
    this.log.info({ graceful: deleteRecord }, 'left the cluster');
  }

  private async ensureConfig(): Promise<void> {
    try {
      await ensureClusterConfig(this.kv, this.cfg.shardCount, {
        stopped: () => this.isStopped(),
        delay: (ms) => this.delay(ms),
        log: this.log,
      });
    } catch (err) {
      this.state = 'stopped';
      throw err;
    }
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimeout(resolve, ms));
  }

  private joinedCluster(): void {
    this.state = 'active';
    this.log.info({ incarnation: this.incarnation }, 'joined the cluster');
    this.joined.resolve();
    this.requestTick();
  }

  private expelled(): void {
    if (this.membership.leaseValid()) {
      this.log.error(
        { leaseRemainingMs: this.membership.leaseEnd - this.clock.now() },
        'expelled while this node still held a valid lease: clocks drift apart faster than safetyMarginMs allows',
      );
    }
    this.log.warn(
      'expelled from the cluster (no heartbeat seen within the lease TTL)',
    );
    this.membership.endLease();
    this.ownership.loseAll('expelled');
    this.membership.renew();
    if (this.state === 'leaving') {
      this.left?.();
      return;
    }
    this.state = 'joining';
    this.requestTick();
  }

  private superseded(): void {
    this.log.error(
      'another process took over this node id; stopping this coordinator',
    );
    this.membership.endLease();
    this.ownership.loseAll('superseded');
    void this.shutdown(false).then(() =>
      this.options.onStopped?.('superseded'),
    );
  }

  // ----------------------------------------------------------------- view

  private onChange(change: ViewChange): void {
    if (change.kind === 'node') {
      if (change.nodeId === this.nodeId)
        this.membership.ownRecordChanged(change.revision);
    } else if (change.kind === 'shard') {
      this.ownership.shardChanged(change.shard);
    } else if (change.kind === 'config') {
      const config = this.view.config;
      if (
        config?.ok === true &&
        config.record.shardCount !== this.cfg.shardCount
      ) {
        this.log.error(
          {
            cluster: config.record.shardCount,
            configured: this.cfg.shardCount,
          },
          'the cluster config record changed its shard count',
        );
      }
    }
  }

  /** The view is healthy while the watch is caught up and heartbeats succeed. */
  private refreshHealth(): void {
    if (!this.feed.ready || !this.membership.heartbeatOk)
      this.healthySince = undefined;
    else this.healthySince ??= this.clock.now();
  }

  healthy(): boolean {
    return this.healthySince !== undefined;
  }

  deadline(node: NodeView): number | undefined {
    if (this.healthySince === undefined || node.record === undefined)
      return undefined;
    return Math.max(node.seenAt, this.healthySince) + node.record.leaseTtlMs;
  }

  private isLive(node: NodeView, now: number): boolean {
    const record = node.record;
    if (record === undefined || record.status !== 'active') return false;
    if (node.nodeId === this.nodeId) {
      return this.state === 'active' && record.incarnation === this.incarnation;
    }
    const deadline = this.deadline(node);
    return deadline === undefined || now < deadline;
  }

  /** Target owner per shard, or undefined while too few members are live. */
  private targets(now: number): string[] | undefined {
    const live: AllocationNode[] = [];
    for (const node of this.view.nodes.values()) {
      if (this.isLive(node, now))
        live.push({ id: node.nodeId, weight: node.record?.weight ?? 1 });
    }
    const key = live
      .map((n) => `${n.id}:${n.weight ?? 1}`)
      .sort()
      .join(',');
    if (this.targetsCache?.key === key) return this.targetsCache.targets;
    const enough =
      live.length > 0 &&
      (live.length >= this.cfg.minMembers || this.state === 'leaving');
    const targets = enough ? allocate(this.cfg.shardCount, live) : undefined;
    this.targetsCache = { key, targets };
    return targets;
  }

  reportOnce(key: string, report: () => void): void {
    if (this.reported.has(key)) return;
    if (this.reported.size > REPORTED_MAX) this.reported.clear();
    this.reported.add(key);
    report();
  }

  // --------------------------------------------------------- the loop

  requestTick(): void {
    if (this.tickQueued) return;
    this.tickQueued = true;
    queueMicrotask(() => {
      this.tickQueued = false;
      this.tick();
    });
  }

  private tick(): void {
    const state = this.state;
    if (state !== 'joining' && state !== 'active' && state !== 'leaving')
      return;
    const now = this.clock.now();
    if (this.ownership.holding() && now >= this.membership.leaseEnd) {
      this.ownership.loseAll('lease-lapsed');
    }
    if (state === 'joining') {
      if (this.feed.complete) this.membership.register(now);
    } else if (now >= this.membership.nextHeartbeat()) {
      this.membership.heartbeat(now);
    }
    this.membership.expireNodes(now);
    if (
      this.feed.complete &&
      (this.state === 'active' || this.state === 'leaving')
    ) {
      this.ownership.reconcile(now, this.targets(now));
    }
    if (this.state === 'leaving' && this.ownership.idle()) this.left?.();
    this.schedule(now);
  }

  /** Sets the one timer to the next moment anything is due. */
  private schedule(now: number): void {
    if (this.isStopped()) return;
    let at = Math.min(
      now + this.cfg.heartbeatIntervalMs,
      this.membership.nextHeartbeat(),
      this.ownership.nextWake(now),
    );
    if (this.ownership.holding()) at = Math.min(at, this.membership.leaseEnd);
    for (const node of this.view.nodes.values()) {
      if (node.nodeId === this.nodeId) continue;
      const deadline = this.deadline(node);
      if (deadline !== undefined && deadline > now) at = Math.min(at, deadline);
    }
    at = Math.max(at, now + 1);
    if (at === this.wakeAt) return;
    this.clock.clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = this.clock.setTimeout(() => {
      this.wakeAt = Infinity;
      this.tick();
    }, at - now);
  }

  // -------------------------------------------------------- fence, query

  leaseValid(): boolean {
    return this.membership.leaseValid();
  }

  tokenFor(key: EntityKey): FenceToken {
    return this.ownership.tokenFor(key);
  }

  check(token: FenceToken): void {
    this.ownership.check(token);
  }

  owns(shard: number): boolean {
    return this.ownership.owns(shard);
  }

  ownedShards(): number[] {
    return this.ownership.ownedShards();
  }

  ownerOf(shard: number): string | undefined {
    const record = this.view.shards.get(shard)?.record;
    if (record === undefined || record.owner === null) return undefined;
    const node = this.view.nodes.get(record.owner);
    if (node === undefined || node.record?.incarnation !== record.incarnation)
      return undefined;
    const serving =
      this.isLive(node, this.clock.now()) || node.record.status === 'leaving';
    return serving ? record.owner : undefined;
  }

  members(): MemberStatus[] {
    const now = this.clock.now();
    return describeMembers(
      this.view,
      now,
      (node) => this.isLive(node, now),
      (node) =>
        node.nodeId === this.nodeId &&
        node.record?.incarnation === this.incarnation,
    );
  }

  status(): CoordinatorStatus {
    const now = this.clock.now();
    const leaseEnd = this.membership.leaseEnd;
    return {
      nodeId: this.nodeId,
      incarnation: this.incarnation,
      phase: this.state,
      leaseValid: this.membership.leaseValid(now),
      leaseRemainingMs: Number.isFinite(leaseEnd) ? leaseEnd - now : -1,
      viewHealthy: this.healthy(),
      shardCount: this.cfg.shardCount,
      ownedShards: this.ownership.ownedShards(),
      releasingShards: this.ownership.releasingShards(),
      members: this.members(),
      shards: describeShards(
        this.view,
        this.feed.complete ? this.targets(now) : undefined,
        (shard) => this.ownerOf(shard),
      ),
      invalidRecords: describeInvalid(this.view),
      counters: {
        ...this.ownership.counters,
        nodesExpired: this.membership.nodesExpired,
      },
    };
  }
}

/**
 * Creates the shard coordinator of one node (see the module comment for the
 * protocol and its safety argument). Call `start()` to join.
 *
 * @example
 * ```ts
 * const coordinator = createCoordinator({
 *   kv, nodeId: 'n1', shardCount: 256, leaseTtlMs: 5_000,
 *   onAcquired: (shard, token) => host.startShard(shard, token),
 *   onRelease: (shard) => host.drainShard(shard),
 *   onLost: (shard) => host.dropShard(shard),
 * });
 * await coordinator.start();
 * store.joinCluster({ fence: coordinator.fence, ... });
 * ```
 */
export function createCoordinator(options: CoordinatorOptions): Coordinator {
  return new ShardCoordinator(options);
}
