/**
 * Options of the nats adapter: their defaults, their validation, and the
 * names of the streams and buckets they lead to.
 */
import type {
  NatsConnection,
  NodeConnectionOptions,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';

import { ConfigError } from '../../src/errors.js';
import { describe } from './keys.js';

/** Options of `natsStore`. */
export interface NatsStoreOptions {
  /**
   * NATS server URL(s) for a connection the store opens and closes itself.
   * Leave out `servers` and `connection` in a cluster node: the store then
   * uses the node's connection (handed over by `joinCluster`).
   */
  readonly servers?: string | readonly string[];
  /** Further options for that connection (credentials, TLS, name...). */
  readonly connectionOptions?: Omit<NodeConnectionOptions, 'servers'>;
  /**
   * A connection to use instead (from `@nats-io/transport-node` v3). The
   * store never closes a connection it was given.
   */
  readonly connection?: NatsConnection;
  /**
   * Prefix of every stream, bucket and subject of this store: letters,
   * digits, `_` and `-`. Default `shardchart_<system>` in a cluster node,
   * else `shardchart`. Stores with different prefixes share a NATS account
   * without seeing each other's data.
   */
  readonly prefix?: string;
  /**
   * Refuse to open (`STORE_UNSAFE`) unless every NATS server answering for
   * the store is known to fsync each write before acknowledging it
   * (`sync_interval: always`). Default false: the store only warns.
   */
  readonly requireSyncAlways?: boolean;
  /**
   * HTTP monitoring endpoints of the NATS servers (`http://host:8222`), read
   * at open to find out whether they fsync every write. Without them, the
   * store can tell only from the server version (below 2.10 cannot).
   */
  readonly monitorUrls?: string | readonly string[];
  /** Replicas of the streams and buckets the store creates (1 to 5). Default 1. */
  readonly replicas?: number;
  /**
   * Where warnings go. Default: the actor system's logger (a store used
   * outside a system: a pino logger at level `warn`).
   */
  readonly logger?: Logger;
  /**
   * How long a request to the server (a publish acknowledgement, a read)
   * may take before it fails with a retryable `STORE_FAILED`. Default 5,000.
   */
  readonly requestTimeoutMs?: number;
  /** Requests awaiting their answer at most; more wait their turn. Default 1,024. */
  readonly requestsInFlightMax?: number;
  /**
   * Operations accepted and not settled at most (queued behind earlier
   * writes of their entity or behind `requestsInFlightMax`); more are
   * refused with a retryable `STORE_FAILED`. Default 100,000.
   */
  readonly pendingOpsMax?: number;
  /** Entities whose last journal position is cached at most. Default 100,000. */
  readonly cachedEntitiesMax?: number;
  /**
   * Read every stream through its leader, as replicated streams always
   * are, also when it has one replica. For tests of that read path.
   *
   * @internal
   */
  readonly leaderReads?: boolean;
}

/** Defaults of the nats adapter's limits, in one place. */
export const defaults = {
  requestTimeoutMs: 5_000,
  requestsInFlightMax: 1_024,
  pendingOpsMax: 100_000,
  cachedEntitiesMax: 100_000,
  replicas: 1,
  /** How long the monitoring endpoints may take to answer at open. */
  monitorTimeoutMs: 2_000,
} as const;

/** Validated options. */
export interface Settings {
  readonly servers: readonly string[] | undefined;
  readonly connectionOptions: Omit<NodeConnectionOptions, 'servers'>;
  readonly connection: NatsConnection | undefined;
  readonly prefix: string | undefined;
  readonly requireSyncAlways: boolean;
  readonly monitorUrls: readonly string[];
  readonly replicas: number;
  readonly logger: Logger | undefined;
  readonly requestTimeoutMs: number;
  readonly requestsInFlightMax: number;
  readonly pendingOpsMax: number;
  readonly cachedEntitiesMax: number;
  readonly leaderReads: boolean;
}

const PREFIX = /^[A-Za-z0-9_-]{1,64}$/;

export function validate(options: NatsStoreOptions): Settings {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(
      `natsStore takes an optional options object, got ${describe(options)}.`,
    );
  }
  const strings = (name: string, value: unknown): string[] | undefined => {
    if (value === undefined) return undefined;
    const list: unknown[] = Array.isArray(value) ? value : [value];
    if (
      list.length === 0 ||
      list.some((item) => typeof item !== 'string' || item.length === 0)
    ) {
      throw new ConfigError(
        `natsStore option '${name}' must be a non-empty string or a list of them, got ${describe(value)}.`,
        { details: { [name]: value } },
      );
    }
    return list as string[];
  };
  const positive = (
    name: keyof NatsStoreOptions,
    fallback: number,
    max = Number.MAX_SAFE_INTEGER,
  ): number => {
    const value = options[name] ?? fallback;
    if (
      typeof value !== 'number' ||
      !Number.isSafeInteger(value) ||
      value < 1 ||
      value > max
    ) {
      throw new ConfigError(
        `natsStore option '${name}' must be an integer from 1 to ${max}, got ${describe(value)}.`,
        { details: { [name]: value } },
      );
    }
    return value;
  };
  const connection = options.connection;
  if (
    connection !== undefined &&
    (typeof connection !== 'object' ||
      connection === null ||
      typeof (connection as { publish?: unknown }).publish !== 'function')
  ) {
    throw new ConfigError(
      `natsStore option 'connection' must be a NatsConnection from @nats-io/transport-node, got ${describe(connection)}.`,
    );
  }
  const servers = strings('servers', options.servers);
  if (servers !== undefined && connection !== undefined) {
    throw new ConfigError(
      "natsStore takes either 'servers' (it connects itself) or 'connection' (it uses yours), not both.",
    );
  }
  if (options.prefix !== undefined && !isPrefix(options.prefix)) {
    throw new ConfigError(
      `natsStore option 'prefix' must be 1 to 64 letters, digits, '_' or '-', got ${describe(options.prefix)}.`,
      { details: { prefix: options.prefix } },
    );
  }
  if (
    options.requireSyncAlways !== undefined &&
    typeof options.requireSyncAlways !== 'boolean'
  ) {
    throw new ConfigError(
      `natsStore option 'requireSyncAlways' must be a boolean, got ${describe(options.requireSyncAlways)}.`,
    );
  }
  const monitorUrls = strings('monitorUrls', options.monitorUrls) ?? [];
  for (const url of monitorUrls) {
    if (!/^https?:\/\//.test(url)) {
      throw new ConfigError(
        `natsStore option 'monitorUrls' takes HTTP URLs of the servers' monitoring port, such as 'http://127.0.0.1:8222', got ${describe(url)}.`,
        { details: { monitorUrls } },
      );
    }
  }
  const connectionOptions = options.connectionOptions ?? {};
  if (typeof connectionOptions !== 'object' || connectionOptions === null) {
    throw new ConfigError(
      `natsStore option 'connectionOptions' must be an object, got ${describe(connectionOptions)}.`,
    );
  }
  return {
    servers,
    connectionOptions,
    connection,
    prefix: options.prefix,
    requireSyncAlways: options.requireSyncAlways ?? false,
    monitorUrls,
    replicas: positive('replicas', defaults.replicas, 5),
    logger: options.logger,
    requestTimeoutMs: positive('requestTimeoutMs', defaults.requestTimeoutMs),
    requestsInFlightMax: positive(
      'requestsInFlightMax',
      defaults.requestsInFlightMax,
    ),
    pendingOpsMax: positive('pendingOpsMax', defaults.pendingOpsMax),
    cachedEntitiesMax: positive(
      'cachedEntitiesMax',
      defaults.cachedEntitiesMax,
    ),
    leaderReads: options.leaderReads === true,
  };
}

function isPrefix(value: unknown): value is string {
  return typeof value === 'string' && PREFIX.test(value);
}

/** Streams, buckets and subjects of one store, all derived from its prefix. */
export interface Names {
  readonly prefix: string;
  /** Stream of the journals: one subject per entity. */
  readonly journalStream: string;
  readonly journalSubjects: string;
  journalSubject(tokens: string): string;
  /** Filter of every journal subject of entities of `typeToken`. */
  journalTypeFilter(typeToken: string): string;
  /** KV bucket of snapshots, key `<type>.<id>`. */
  readonly snapshotBucket: string;
  /** KV bucket of the timer index, key `<type>.<id>`, value the deadline. */
  readonly wakeupBucket: string;
  /** Stream of dead letters: one subject per entity, oldest first. */
  readonly deadLetterStream: string;
  readonly deadLetterSubjects: string;
  deadLetterSubject(tokens: string): string;
}

export function namesFor(prefix: string): Names {
  return {
    prefix,
    journalStream: `${prefix}_journal`,
    journalSubjects: `${prefix}.journal.>`,
    journalSubject: (tokens) => `${prefix}.journal.${tokens}`,
    journalTypeFilter: (typeToken) => `${prefix}.journal.${typeToken}.*`,
    snapshotBucket: `${prefix}_snapshots`,
    wakeupBucket: `${prefix}_wakeups`,
    deadLetterStream: `${prefix}_dead_letters`,
    deadLetterSubjects: `${prefix}.dead.>`,
    deadLetterSubject: (tokens) => `${prefix}.dead.${tokens}`,
  };
}

/** Stream that holds KV bucket `bucket`, and its subjects. */
export function kvStream(bucket: string): string {
  return `KV_${bucket}`;
}

export function kvSubject(bucket: string, key: string): string {
  return `$KV.${bucket}.${key}`;
}

/**
 * The default prefix: `shardchart_<system>` for a cluster node (so two
 * systems on one NATS account stay apart), `shardchart` otherwise.
 */
export function defaultPrefix(system: string | undefined): string {
  if (system === undefined) return 'shardchart';
  const prefix = `shardchart_${system}`;
  if (!isPrefix(prefix)) {
    throw new ConfigError(
      `The system name ${describe(system)} cannot name NATS streams (letters, digits, '_' and '-', at most 53 of them). Pass natsStore({ prefix }) with such a name.`,
      { details: { system } },
    );
  }
  return prefix;
}
