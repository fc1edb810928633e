import { ConfigError } from '../errors.js';
import { defaultDecodeLimits } from '../codec/index.js';
import { checkSubjectToken } from './subjects.js';

/** Connection options for NATS (a subset of @nats-io/transport-node's). */
export interface ClusterNatsOptions {
  /** `nats://host:port`, or several. */
  servers: string | string[];
  user?: string;
  pass?: string;
  token?: string;
}

/** The `cluster` option of createActorSystem. */
export interface ClusterOptions {
  nats: ClusterNatsOptions;
  /** Unique per running process of the system: two live processes with one node id never both own shards. */
  nodeId: string;
  /** Shards of the system; fixed for its lifetime (changing it re-maps every entity). Default 256. */
  shardCount?: number;
  /** A node whose heartbeat is not seen for this long is dead and its shards are claimed. Default 5_000. */
  leaseTtlMs?: number;
  /** False for a client node: it sends and reads but hosts no shards. Default true. */
  hostShards?: boolean;
  /** How long `send` waits for the owner's answer before TIMEOUT (the event may still be applied). Default 30_000. */
  sendTimeoutMs?: number;
  /** Largest message accepted on any cluster subject. Default 1 MiB. */
  messageBytesMax?: number;
  /** Events of one shard being applied at once on its owner. Default 256. */
  shardInFlightMax?: number;
  /**
   * Watch registrations (one per watching node and entity, from `subscribe`
   * and `waitFor` on other nodes) this node keeps at most. Past it a new
   * watch is refused with the retryable WATCHES_FULL, and the subscriber
   * retries until a registration lapses. Default 100_000.
   */
  watchesMax?: number;
}

export interface ResolvedClusterOptions {
  readonly nats: ClusterNatsOptions;
  readonly nodeId: string;
  readonly shardCount: number;
  readonly leaseTtlMs: number;
  readonly hostShards: boolean;
  readonly sendTimeoutMs: number;
  readonly messageBytesMax: number;
  readonly shardInFlightMax: number;
  readonly watchesMax: number;
}

function int(
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < min ||
    value > max
  ) {
    throw new ConfigError(
      `Option "cluster.${name}" must be an integer from ${min} to ${max}; got ${JSON.stringify(value)}.`,
      { details: { option: `cluster.${name}` } },
    );
  }
  return value;
}

export function resolveClusterOptions(
  options: ClusterOptions,
): ResolvedClusterOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(
      'Option "cluster" must be an object: { nats: { servers }, nodeId, shardCount?, leaseTtlMs? }.',
    );
  }
  const servers = options.nats?.servers;
  const list = Array.isArray(servers) ? servers : [servers];
  if (
    list.length === 0 ||
    list.some((s) => typeof s !== 'string' || s.length === 0)
  ) {
    throw new ConfigError(
      'Option "cluster.nats.servers" must be a NATS URL such as "nats://127.0.0.1:4222", or a list of them.',
      { details: { option: 'cluster.nats.servers' } },
    );
  }
  if (
    typeof options.nodeId !== 'string' ||
    !checkSubjectToken(options.nodeId) ||
    !/^[A-Za-z0-9_-]{1,64}$/.test(options.nodeId)
  ) {
    throw new ConfigError(
      `Option "cluster.nodeId" must be 1 to 64 letters, digits, "_" or "-", unique per running node; got ${JSON.stringify(options.nodeId)}.`,
      {
        details: { option: 'cluster.nodeId' },
      },
    );
  }
  return {
    nats: options.nats,
    nodeId: options.nodeId,
    shardCount: int('shardCount', options.shardCount, 256, 1, 65_536),
    leaseTtlMs: int('leaseTtlMs', options.leaseTtlMs, 5_000, 300, 600_000),
    hostShards: options.hostShards ?? true,
    sendTimeoutMs: int(
      'sendTimeoutMs',
      options.sendTimeoutMs,
      30_000,
      1,
      3_600_000,
    ),
    messageBytesMax: int(
      'messageBytesMax',
      options.messageBytesMax,
      defaultDecodeLimits.bytesMax,
      1_024,
      64 * 1_048_576,
    ),
    shardInFlightMax: int(
      'shardInFlightMax',
      options.shardInFlightMax,
      256,
      1,
      100_000,
    ),
    watchesMax: int('watchesMax', options.watchesMax, 100_000, 1, 10_000_000),
  };
}
