/**
 * The sharding area: the shard function, rendezvous allocation, the cluster
 * KV interface with its in-memory implementation, and the coordinator that
 * runs membership, leases and shard ownership over it. The NATS JetStream
 * KV implementation lives with the rest of the NATS code, in
 * src/cluster/nats/kv.ts.
 */
export { shardOf, shardCountMax } from './shard.js';
export {
  allocate,
  allocationMoves,
  type AllocationNode,
} from './allocation.js';
export {
  KvConflictError,
  isKvConflict,
  type ClusterKv,
  type KvConditionalOptions,
  type KvEntry,
  type KvWatch,
  type KvWatchEvent,
  type KvWatchOptions,
} from './kv.js';
export {
  createMemoryKv,
  type MemoryKv,
  type MemoryKvOptions,
} from './memory-kv.js';
export { monotonicClock } from './monotonic-clock.js';
export {
  createCoordinator,
  type Coordinator,
  type CoordinatorOptions,
  type CoordinatorStatus,
  type LostReason,
  type MemberStatus,
  type ShardStatus,
} from './coordinator.js';
export {
  PROTOCOL_VERSION,
  type ConfigRecord,
  type NodeRecord,
  type ShardRecord,
} from './records.js';
