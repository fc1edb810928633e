/**
 * Options, defaults and status shapes of the shard coordinator
 * (coordinator.ts), with the checks that keep the lease arithmetic sound.
 */
import type { Logger } from 'pino';

import { ConfigError } from '../errors.js';
import type { FenceToken } from '../persistence/types.js';
import type { Clock } from '../system/clock.js';
import type { ClusterKv } from './kv.js';
import { assertNodeId } from './records.js';
import { assertShardCount } from './shard.js';

/**
 * Why a shard was lost without a handoff.
 *
 * @example
 * ```ts
 * onLost: (shard, reason) => { if (reason === 'lease-lapsed') metrics.leaseLapses.inc(); host.drop(shard); }
 * ```
 */
export type LostReason =
  /** No heartbeat was acknowledged for the lease TTL minus the safety margin. */
  | 'lease-lapsed'
  /** A newer owner record for the shard was seen. */
  | 'taken'
  /** Another node expired this node's membership record. */
  | 'expelled'
  /** A process with the same node id replaced this one. */
  | 'superseded'
  /** `stop()` ended the coordinator with the shard still held. */
  | 'stopped';

/**
 * Options of {@link createCoordinator}.
 *
 * @example
 * ```ts
 * const options: CoordinatorOptions = { kv, nodeId: 'n1', shardCount: 256, leaseTtlMs: 5_000 };
 * ```
 */
export interface CoordinatorOptions {
  /** The cluster KV bucket shared by every node of the system. */
  readonly kv: ClusterKv;
  /** Unique per running process: 1 to 64 letters, digits, `_` or `-`. */
  readonly nodeId: string;
  /** Shards of the system; every node must use the same number (checked). */
  readonly shardCount: number;
  /** Lease TTL: a node not seen to heartbeat for this long is expired. Default 5,000. */
  readonly leaseTtlMs?: number;
  /**
   * How much sooner than its TTL this node's own lease ends, to absorb clock
   * rate differences between machines and the time a write already checked
   * takes to reach the store. Default `leaseTtlMs / 5`.
   */
  readonly safetyMarginMs?: number;
  /** Heartbeat period. Default `leaseTtlMs / 3`; must leave room for two beats per lease. */
  readonly heartbeatIntervalMs?: number;
  /** Shards this node hands over at once (draining plus release). Default 8. */
  readonly handoffConcurrency?: number;
  /** Longest wait for `onRelease`; the shard is released anyway after it. Default 30,000. */
  readonly handoffTimeoutMs?: number;
  /** Claims in flight at once. Default 64. */
  readonly claimConcurrency?: number;
  /** No shard is claimed until this many nodes are live (avoids grabbing everything at a cold start). Default 1. */
  readonly minMembers?: number;
  /** This node's allocation weight (> 0). Default 1. */
  readonly weight?: number;
  /** Entity types this node hosts, published in its record. */
  readonly types?: readonly string[];
  /** Load figures published with each heartbeat (at most 32 entries). */
  readonly load?: () => Readonly<Record<string, number>>;
  /** Overrides the random incarnation id (tests). */
  readonly incarnation?: string;
  /** Monotonic clock for leases and timers. Default {@link monotonicClock}. */
  readonly clock?: Clock;
  /** Wall clock for `startedAt` only. Default the system clock. */
  readonly wallClock?: Clock;
  readonly logger?: Logger;
  /**
   * This node now owns `shard`; `token` is the fencing token of its writes.
   * A returned promise that rejects makes the coordinator release the shard
   * (the host could not start serving it) and not claim it again for a
   * lease TTL.
   */
  readonly onAcquired?: (
    shard: number,
    token: FenceToken,
  ) => void | Promise<void>;
  /**
   * Graceful handoff: finish in-flight work, passivate the shard's entities,
   * then resolve. Writes stay allowed until it resolves (or
   * `handoffTimeoutMs` passes); then the shard is released. If the lease
   * lapses meanwhile, `onLost` is called while this is still running.
   */
  readonly onRelease?: (shard: number) => void | Promise<void>;
  /** Stop serving `shard` at once, no draining: writes are refused already. */
  readonly onLost?: (shard: number, reason: LostReason) => void;
  /** The coordinator stopped by itself (another process took over this node id). */
  readonly onStopped?: (reason: 'superseded') => void;
}

/** @internal */
export interface ResolvedCoordinatorOptions {
  readonly nodeId: string;
  readonly shardCount: number;
  readonly leaseTtlMs: number;
  readonly safetyMarginMs: number;
  readonly heartbeatIntervalMs: number;
  readonly handoffConcurrency: number;
  readonly handoffTimeoutMs: number;
  readonly claimConcurrency: number;
  readonly minMembers: number;
  readonly weight: number;
  readonly types: readonly string[];
}

function integer(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  const resolved = value ?? fallback;
  if (!Number.isInteger(resolved) || resolved < min || resolved > max) {
    throw new ConfigError(
      `Coordinator option "${name}" must be an integer from ${min} to ${max}, got ${String(value)}.`,
      { details: { option: name, value } },
    );
  }
  return resolved;
}

/** @internal */
export function resolveCoordinatorOptions(
  options: CoordinatorOptions,
): ResolvedCoordinatorOptions {
  assertNodeId(options.nodeId);
  assertShardCount(options.shardCount);
  const leaseTtlMs = integer(
    'leaseTtlMs',
    options.leaseTtlMs,
    5_000,
    30,
    3_600_000,
  );
  const safetyMarginMs = integer(
    'safetyMarginMs',
    options.safetyMarginMs,
    Math.floor(leaseTtlMs / 5),
    0,
    Math.floor(leaseTtlMs / 2),
  );
  // Two heartbeats must fit in the part of the lease this node may use, so
  // that one lost heartbeat does not cost the lease.
  const usable = leaseTtlMs - safetyMarginMs;
  const heartbeatIntervalMs = integer(
    'heartbeatIntervalMs',
    options.heartbeatIntervalMs,
    Math.max(1, Math.floor(leaseTtlMs / 3)),
    1,
    Math.max(1, Math.floor(usable / 2)),
  );
  const weight = options.weight ?? 1;
  if (!(weight > 0) || !Number.isFinite(weight)) {
    throw new ConfigError(
      `Coordinator option "weight" must be a finite number greater than 0, got ${String(weight)}.`,
    );
  }
  const types = options.types ?? [];
  if (!Array.isArray(types) || !types.every((t) => typeof t === 'string')) {
    throw new ConfigError(
      'Coordinator option "types" must be a list of entity type names.',
    );
  }
  return {
    nodeId: options.nodeId,
    shardCount: options.shardCount,
    leaseTtlMs,
    safetyMarginMs,
    heartbeatIntervalMs,
    handoffConcurrency: integer(
      'handoffConcurrency',
      options.handoffConcurrency,
      8,
      1,
      65_536,
    ),
    handoffTimeoutMs: integer(
      'handoffTimeoutMs',
      options.handoffTimeoutMs,
      30_000,
      1,
      3_600_000,
    ),
    claimConcurrency: integer(
      'claimConcurrency',
      options.claimConcurrency,
      64,
      1,
      65_536,
    ),
    minMembers: integer('minMembers', options.minMembers, 1, 1, 10_000),
    weight,
    types: [...types],
  };
}

/**
 * One member as this node sees it (`status().members`).
 *
 * @example
 * ```ts
 * coordinator.members().filter((m) => !m.alive).map((m) => m.nodeId); // suspected dead
 * ```
 */
export interface MemberStatus {
  readonly nodeId: string;
  readonly incarnation: string;
  readonly self: boolean;
  /** Heartbeating (seen within its lease TTL) and not leaving. */
  readonly alive: boolean;
  readonly status: 'active' | 'leaving';
  /** Local ms since this node last saw the member's record change. */
  readonly lastSeenAgoMs: number;
  readonly leaseTtlMs: number;
  readonly weight: number;
  readonly types: readonly string[];
  /** Wall-clock start time reported by the member itself. */
  readonly startedAt: number;
  readonly load: Readonly<Record<string, number>> | undefined;
  /** Shard records naming this member's current incarnation. */
  readonly shardsOwned: number;
}

/**
 * One shard as this node sees it (`status().shards`).
 *
 * @example
 * ```ts
 * coordinator.status().shards.filter((s) => !s.ownerAlive).length; // shards waiting for an owner
 * ```
 */
export interface ShardStatus {
  readonly shard: number;
  /** Owner named by the record (null when released or never claimed). */
  readonly owner: string | null;
  /** True when the owner is a live member with the recorded incarnation. */
  readonly ownerAlive: boolean;
  /** The node rendezvous allocation assigns the shard to now. */
  readonly target: string | undefined;
  /** Revision of the owner record (the owner's fencing token), 0 if none. */
  readonly revision: number;
}

/**
 * A snapshot for `shardchart cluster status` and for logs.
 *
 * @example
 * ```ts
 * const { phase, leaseValid, ownedShards } = coordinator.status();
 * ```
 */
export interface CoordinatorStatus {
  readonly nodeId: string;
  readonly incarnation: string;
  readonly phase:
    'new' | 'starting' | 'joining' | 'active' | 'leaving' | 'stopped';
  readonly leaseValid: boolean;
  /** Local ms until this node's lease ends (negative once lapsed). */
  readonly leaseRemainingMs: number;
  /** False while the watch is interrupted or heartbeats fail: no node is judged dead then. */
  readonly viewHealthy: boolean;
  readonly shardCount: number;
  readonly ownedShards: readonly number[];
  readonly releasingShards: readonly number[];
  readonly members: readonly MemberStatus[];
  readonly shards: readonly ShardStatus[];
  /** Records this release cannot read; never overwritten automatically. */
  readonly invalidRecords: readonly { key: string; reason: string }[];
  readonly counters: {
    readonly acquired: number;
    readonly handedOff: number;
    readonly lost: number;
    readonly nodesExpired: number;
  };
}
