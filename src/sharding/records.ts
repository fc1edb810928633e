/**
 * The records of the cluster protocol, as stored in the cluster KV bucket.
 * Part of the wire contract: every node of a system reads what the others
 * write. Each value is a codec envelope (version byte, msgpack map) with a
 * protocol version `v`; a record that does not decode, or carries another
 * `v`, is kept as *invalid* and never overwritten automatically (it may
 * belong to a node this release cannot understand; see coordinator.ts).
 *
 * | key | value |
 * | --- | --- |
 * | `config` | `{ v, shardCount }`, written once by the first node |
 * | `nodes.<nodeId>` | {@link NodeRecord}, rewritten by its node every heartbeat |
 * | `shards.<n>` | {@link ShardRecord}, changed only by compare-and-set |
 */
import { decodeEnvelope, encodeEnvelope } from '../codec/index.js';
import { ConfigError } from '../errors.js';

/**
 * Version of the record formats and of the protocol that uses them. Nodes
 * of one system must speak the same version; records of another version
 * are treated as unreadable and left alone.
 *
 * @example
 * ```ts
 * if (record.v !== PROTOCOL_VERSION) console.warn('a node of another release is in the cluster');
 * ```
 */
export const PROTOCOL_VERSION = 1;

const DECODE_LIMITS = { bytesMax: 16_384, depthMax: 4 } as const;
const LOAD_ENTRIES_MAX = 32;
const TYPES_MAX = 1_024;

/** A node's membership record, `nodes.<nodeId>`. */
export interface NodeRecord {
  readonly v: 1;
  readonly nodeId: string;
  /** Random per registration; a process re-registering after expulsion takes a new one. */
  readonly incarnation: string;
  /** Wall-clock ms when the process started. Informational: never compared across machines. */
  readonly startedAt: number;
  /** Entity types the node hosts. */
  readonly types: readonly string[];
  /** The node's lease TTL: others wait this long without seeing a heartbeat before expiring it. */
  readonly leaseTtlMs: number;
  /** Relative capacity for allocation (> 0). */
  readonly weight: number;
  /** `leaving` while the node hands its shards over before stopping. */
  readonly status: 'active' | 'leaving';
  /** Heartbeat counter of this incarnation. */
  readonly beat: number;
  /** Optional load figures (name -> number), for status and future allocation. */
  readonly load?: Readonly<Record<string, number>>;
}

/** A shard's owner record, `shards.<n>`; `owner: null` once released. */
export interface ShardRecord {
  readonly v: 1;
  readonly owner: string | null;
  readonly incarnation: string | null;
}

/** The system-wide settings every node must agree on, `config`. */
export interface ConfigRecord {
  readonly v: 1;
  readonly shardCount: number;
}

/** KV key of the config record. @internal */
export const CONFIG_KEY = 'config';
/** KV prefix of node records. @internal */
export const NODES_PREFIX = 'nodes.';
/** KV prefix of shard records. @internal */
export const SHARDS_PREFIX = 'shards.';

const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Throws `ConfigError` unless `nodeId` is 1 to 64 letters, digits, `_` or `-`.
 * @internal
 */
export function assertNodeId(nodeId: string): void {
  if (typeof nodeId !== 'string' || !NODE_ID.test(nodeId)) {
    throw new ConfigError(
      `Node id ${JSON.stringify(nodeId)} is invalid: use 1 to 64 letters, digits, "_" or "-", unique per running node.`,
      { details: { nodeId } },
    );
  }
}

/** @internal */
export const nodeKey = (nodeId: string): string => `${NODES_PREFIX}${nodeId}`;
/** @internal */
export const shardKey = (shard: number): string => `${SHARDS_PREFIX}${shard}`;

/** A decoded record, or the reason it could not be read. @internal */
export type Decoded<T> =
  | { readonly ok: true; readonly record: T }
  | { readonly ok: false; readonly reason: string };

function decodeMap(bytes: Uint8Array): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = decodeEnvelope(bytes, DECODE_LIMITS);
  } catch (err) {
    return `undecodable (${err instanceof Error ? err.message : String(err)})`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return 'not a map';
  }
  const map = value as Record<string, unknown>;
  if (map.v !== PROTOCOL_VERSION) {
    return `protocol version ${JSON.stringify(map.v)}, this release speaks ${PROTOCOL_VERSION}`;
  }
  return map;
}

const isPositiveFinite = (x: unknown): x is number =>
  typeof x === 'number' && Number.isFinite(x) && x > 0;

/** @internal */
export function encodeNodeRecord(record: NodeRecord): Uint8Array {
  return encodeEnvelope(record);
}

/** @internal */
export function decodeNodeRecord(
  bytes: Uint8Array,
  key: string,
): Decoded<NodeRecord> {
  const map = decodeMap(bytes);
  if (typeof map === 'string') return { ok: false, reason: map };
  const {
    nodeId,
    incarnation,
    startedAt,
    types,
    leaseTtlMs,
    weight,
    status,
    beat,
    load,
  } = map;
  if (typeof nodeId !== 'string' || nodeKey(nodeId) !== key) {
    return {
      ok: false,
      reason: `nodeId ${JSON.stringify(nodeId)} does not match the key`,
    };
  }
  if (
    typeof incarnation !== 'string' ||
    incarnation === '' ||
    incarnation.length > 128
  ) {
    return { ok: false, reason: 'incarnation missing' };
  }
  if (typeof startedAt !== 'number' || !Number.isFinite(startedAt)) {
    return { ok: false, reason: 'startedAt missing' };
  }
  if (
    !Array.isArray(types) ||
    types.length > TYPES_MAX ||
    !types.every((t) => typeof t === 'string')
  ) {
    return { ok: false, reason: 'types is not a list of strings' };
  }
  if (!Number.isSafeInteger(leaseTtlMs) || !isPositiveFinite(leaseTtlMs)) {
    return { ok: false, reason: 'leaseTtlMs missing' };
  }
  if (!isPositiveFinite(weight)) return { ok: false, reason: 'weight missing' };
  if (status !== 'active' && status !== 'leaving') {
    return { ok: false, reason: `status ${JSON.stringify(status)}` };
  }
  if (!Number.isSafeInteger(beat) || (beat as number) < 0) {
    return { ok: false, reason: 'beat missing' };
  }
  let loadRecord: Record<string, number> | undefined;
  if (load !== undefined && load !== null) {
    if (typeof load !== 'object' || Array.isArray(load)) {
      return { ok: false, reason: 'load is not a map' };
    }
    const entries = Object.entries(load as Record<string, unknown>);
    if (
      entries.length > LOAD_ENTRIES_MAX ||
      !entries.every(([, n]) => typeof n === 'number' && Number.isFinite(n))
    ) {
      return { ok: false, reason: 'load is not a map of numbers' };
    }
    loadRecord = Object.fromEntries(entries) as Record<string, number>;
  }
  return {
    ok: true,
    record: {
      v: PROTOCOL_VERSION,
      nodeId,
      incarnation,
      startedAt,
      types: types,
      leaseTtlMs: leaseTtlMs,
      weight,
      status,
      beat: beat as number,
      ...(loadRecord === undefined ? {} : { load: loadRecord }),
    },
  };
}

/** @internal */
export function encodeShardRecord(record: ShardRecord): Uint8Array {
  return encodeEnvelope(record);
}

/** @internal */
export function decodeShardRecord(bytes: Uint8Array): Decoded<ShardRecord> {
  const map = decodeMap(bytes);
  if (typeof map === 'string') return { ok: false, reason: map };
  const { owner, incarnation } = map;
  if (owner === null && (incarnation === null || incarnation === undefined)) {
    return {
      ok: true,
      record: { v: PROTOCOL_VERSION, owner: null, incarnation: null },
    };
  }
  if (typeof owner !== 'string' || !NODE_ID.test(owner)) {
    return { ok: false, reason: `owner ${JSON.stringify(owner)}` };
  }
  if (typeof incarnation !== 'string' || incarnation === '') {
    return { ok: false, reason: 'incarnation missing' };
  }
  return { ok: true, record: { v: PROTOCOL_VERSION, owner, incarnation } };
}

/** @internal */
export function encodeConfigRecord(record: ConfigRecord): Uint8Array {
  return encodeEnvelope(record);
}

/** @internal */
export function decodeConfigRecord(bytes: Uint8Array): Decoded<ConfigRecord> {
  const map = decodeMap(bytes);
  if (typeof map === 'string') return { ok: false, reason: map };
  if (!Number.isSafeInteger(map.shardCount) || (map.shardCount as number) < 1) {
    return { ok: false, reason: 'shardCount missing' };
  }
  return {
    ok: true,
    record: { v: PROTOCOL_VERSION, shardCount: map.shardCount as number },
  };
}

/** The shard number of a `shards.<n>` key below `shardCount`, else undefined. @internal */
export function parseShardKey(
  key: string,
  shardCount: number,
): number | undefined {
  if (!key.startsWith(SHARDS_PREFIX)) return undefined;
  const text = key.slice(SHARDS_PREFIX.length);
  if (!/^(0|[1-9]\d{0,9})$/.test(text)) return undefined;
  const shard = Number(text);
  return shard < shardCount ? shard : undefined;
}
