/**
 * Shardchart: durable, sharded actor system for XState v5 statecharts.
 * The public surface is this hand-written list; nothing is re-exported
 * wholesale.
 */
export { createActorSystem } from './system/actor-system.js';
export { createSimulatedClock, systemClock } from './system/clock.js';
export type { Clock, SimulatedClock } from './system/clock.js';
export type {
  ActorSystem,
  ActorSystemOptions,
  BatchItem,
  BatchResult,
  EntityDefinition,
  EntityRef,
  EntityState,
  EntityTypeConfig,
  RestartPolicy,
  SendOptions,
  SystemStats,
  TimerResume,
  Unsubscribe,
  WaitForOptions,
} from './system/types.js';
export {
  CheckFailedError,
  CodecError,
  ConfigError,
  DefinitionError,
  EntityError,
  GraphError,
  InvalidInputError,
  ShardchartError,
  StoreError,
  TimeoutError,
  errorCodes,
  isShardchartError,
} from './errors.js';
export type { ErrorCode } from './errors.js';
export type {
  DeadLetter,
  EntityKey,
  EntityWrite,
  Journal,
  JournalEntry,
  PendingTimer,
  PlainData,
  SnapshotStore,
  Store,
  StoredSnapshot,
} from './persistence/types.js';
export {
  decode,
  decodeEnvelope,
  encode,
  encodeEnvelope,
  ENVELOPE_VERSION,
  defaultDecodeLimits,
} from './codec/index.js';
export type { DecodeLimits } from './codec/index.js';
