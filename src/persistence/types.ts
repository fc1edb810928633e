/**
 * The storage contract. The engine in `src/` depends only on these types;
 * adapters in `adapters/<name>/` implement them and keep their driver to
 * themselves. Every adapter runs the shared conformance suite in
 * `test/adapters/conformance.ts`.
 */
import type { Logger } from 'pino';

/** Identifies one entity: its type and id (and later its tenant). */
export interface EntityKey {
  readonly type: string;
  readonly id: string;
}

/** Plain, msgpack-safe data: what events, contexts and records may hold. */
export type PlainData =
  | null
  | boolean
  | number
  | string
  | undefined
  | PlainData[]
  | { [key: string]: PlainData };

/**
 * One delayed event waiting to fire, as persisted. XState does not restore
 * delayed events (xstate issue 4860); the engine re-arms these on activation.
 */
export interface PendingTimer {
  /** XState's scheduled-event id (without the session prefix). */
  readonly id: string;
  /** The delayed event itself. */
  readonly event: { type: string; [key: string]: unknown };
  /** Actor path of the scheduling actor: `''` for the entity, else child ids joined by `/`. */
  readonly source: string;
  /** Actor path of the receiving actor, same form as `source`. */
  readonly target: string;
  /** The delay in ms as the machine declared it. */
  readonly delayMs: number;
  /** Absolute deadline in ms since the epoch (entity clock). */
  readonly dueAt: number;
}

/**
 * A message a machine published with `publish(...)`, as the journal and
 * snapshots keep it (see src/system/publish.ts). Its message id is derived
 * from where it is stored: the entity, the seq of the entry and its index.
 */
export interface OutboxMessage {
  /** NATS-style subject: dot-separated tokens, no wildcards. */
  readonly subject: string;
  /** Plain data; absent when the action gave none. */
  readonly data?: PlainData;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * A published message not yet delivered when a snapshot was taken. `seq` 0
 * marks messages published by the initial state of a new entity, which no
 * journal entry carries.
 */
export interface PendingOutboxMessage extends OutboxMessage {
  readonly seq: number;
  /** Position in its entry's `outbox` (or among the initial state's messages). */
  readonly index: number;
  /** The `at` of its entry: when the publishing event was applied. */
  readonly at: number;
}

/** One applied event in an entity's journal. */
export interface JournalEntry {
  /** 1 for the first event applied after the initial state; +1 per entry. */
  readonly seq: number;
  /** Clock time (ms since epoch) when the event was applied. */
  readonly at: number;
  /** The event as the root actor received it (external or internal). */
  readonly event: { type: string; [key: string]: unknown };
  /** The sender's idempotency key, when one was given. */
  readonly eventId?: string;
  /**
   * The complete set of pending timers right after this entry, present only
   * when it differs from the previous entry's set.
   */
  readonly timers?: readonly PendingTimer[];
  /**
   * Messages published by this step, in emission order; delivered only once
   * this entry is durable. Absent when it published nothing.
   */
  readonly outbox?: readonly OutboxMessage[];
}

/**
 * A recovery shortcut: the XState persisted snapshot after `seq`, plus what
 * the engine needs to resume (timers, recent event ids). Never the only
 * source of truth: the journal up to `seq` yields the same state.
 */
export interface StoredSnapshot {
  /** Format version of this record. */
  readonly v: 1;
  readonly seq: number;
  /** Clock time when the snapshot was taken. */
  readonly at: number;
  /** `machine.getPersistedSnapshot(...)`: plain JSON data. */
  readonly state: unknown;
  readonly timers: readonly PendingTimer[];
  /** Event ids applied most recently (the dedupe window), oldest first. */
  readonly eventIds: readonly string[];
  /**
   * Id of the system run that wrote it. Timers of an entity passivated and
   * reactivated within one run always keep their deadline; the configured
   * `timerResume` mode applies only across restarts.
   */
  readonly run?: string;
  /**
   * Published messages of entries up to `seq` not yet delivered when the
   * snapshot was taken, oldest first. Present (maybe empty) while the
   * entity's timer-index entry may be due for delivery (see publish.ts).
   */
  readonly outbox?: readonly PendingOutboxMessage[];
}

/**
 * One atomic, per-entity write: journal entries plus optionally a snapshot
 * and the entity's timer-index entry. Adapters group-commit writes of many
 * entities into one store transaction; each write succeeds or fails alone.
 */
export interface EntityWrite {
  readonly key: EntityKey;
  /** The seq of the last durable entry before `entries` (0 for none). */
  readonly expectedSeq: number;
  /** Consecutive entries starting at `expectedSeq + 1`; may be empty. */
  readonly entries: readonly JournalEntry[];
  /** Saved with the entries; refused silently if older than the stored one. */
  readonly snapshot?: StoredSnapshot;
  /**
   * Timer index: the earliest pending deadline of the entity, `null` to
   * remove it from the index, `undefined` to leave it unchanged.
   */
  readonly wakeAt?: number | null;
}

/** A failed event, recorded durably with its cause. */
export interface DeadLetter {
  readonly key: EntityKey;
  readonly event: { type: string; [key: string]: unknown };
  readonly eventId?: string;
  /** The ShardchartError code of the failure; EVENT_FAILED for an error the machine threw. */
  readonly code: string;
  readonly message: string;
  readonly at: number;
  /** Seq of the entity's durable state when the event failed. */
  readonly seq: number;
}

/** Journal as described in DESIGN.md. */
export interface Journal {
  /** Rejects with a `STORE_CONFLICT` StoreError when the last seq is not `expectedSeq`. */
  append(
    key: EntityKey,
    entries: readonly JournalEntry[],
    expectedSeq: number,
  ): Promise<void>;
  /** Entries with `fromSeq <= seq <= toSeq`, in seq order. */
  read(key: EntityKey, fromSeq: number, toSeq?: number): AsyncIterable<JournalEntry>;
  /** Seq of the last entry, 0 when empty. */
  lastSeq(key: EntityKey): Promise<number>;
}

/** Snapshot store as described in DESIGN.md. */
export interface SnapshotStore {
  load(key: EntityKey): Promise<StoredSnapshot | undefined>;
  /** Never moves seq backwards: an older snapshot is ignored. */
  save(key: EntityKey, snapshot: StoredSnapshot): Promise<void>;
}

/**
 * The fencing token a clustered node carries into a store write: the shard of
 * the entity, the revision of this node's owner record of that shard (a
 * number that grows with every change of owner), and the node id.
 */
export interface FenceToken {
  readonly shard: number;
  readonly token: number;
  readonly node: string;
}

/**
 * Installed by the cluster on a store that takes part in one
 * (`Store.setFence`). The store calls `tokenFor` right before each write and
 * `check` right before it commits: a write goes through only while this node
 * holds a valid lease on the entity's shard and its token is not older than
 * the newest owner record seen for that shard.
 */
export interface WriteFence {
  /**
   * The token for writing `key` now. Throws a retryable `ClusterError`
   * (`NOT_OWNER`) when this node holds no valid lease on the entity's shard.
   */
  tokenFor(key: EntityKey): FenceToken;
  /**
   * Throws a `ClusterError` (`FENCED`) when `token` is older than the newest
   * owner record of its shard, or (`NOT_OWNER`) when the lease has expired
   * since `tokenFor`.
   */
  check(token: FenceToken): void;
}

/** What a clustered node gives its store (`Store.joinCluster`). */
export interface ClusterBinding {
  readonly fence: WriteFence;
  readonly nodeId: string;
  /** The system name, for naming streams and buckets. */
  readonly system: string;
  /** The node's NATS connection (a `NatsConnection` from @nats-io/transport-node). */
  readonly connection: unknown;
  /**
   * The cluster's shards: how many, and which one an entity is in. A store
   * may keep its timer index by shard, so that a node that acquires a few
   * shards reads only their part of it (`scanWakeups({ partitions })`).
   */
  readonly shards?: {
    readonly count: number;
    of(key: EntityKey): number;
  };
}

/** What `Store.scanWakeups` is asked for. */
export interface WakeupScanOptions {
  /**
   * Only the entities of these shards are needed (see
   * `ClusterBinding.shards`). A store may yield others too, and the caller
   * filters; one that keeps its index by shard reads only these.
   */
  readonly partitions?: ReadonlySet<number>;
}

/** The complete adapter contract. */
export interface Store {
  /** Short adapter name for logs: 'memory', 'lmdb', ... */
  readonly kind: string;
  /** False when acknowledged writes do not survive a process crash. */
  readonly durable: boolean;
  readonly journal: Journal;
  readonly snapshots: SnapshotStore;
  /** Opens the underlying storage; called once by createActorSystem. */
  open(): Promise<void>;
  /** Atomic per-entity write, group-committed with concurrent writes. */
  write(write: EntityWrite): Promise<void>;
  /** Every entity in the timer index with its earliest deadline (see WakeupScanOptions). */
  scanWakeups(options?: WakeupScanOptions): AsyncIterable<{ key: EntityKey; wakeAt: number }>;
  /** Every entity that has a journal or a snapshot. */
  scanEntities(type?: string): AsyncIterable<EntityKey>;
  appendDeadLetter(letter: DeadLetter): Promise<void>;
  /** Dead letters, oldest first; `limit` defaults to 1000. */
  readDeadLetters(options?: { key?: EntityKey; limit?: number }): Promise<DeadLetter[]>;
  /**
   * The engine passivated the entity and will read it again before its next
   * write: the store may drop what it keeps in memory about it (seq caches).
   * Optional; a hint, never needed for correctness.
   */
  forget?(key: EntityKey): void;
  /**
   * Makes the store part of a cluster node: installs fencing (see
   * `WriteFence`) and hands over the node's broker connection, which a store
   * created without its own (`natsStore()`) uses. Called by createActorSystem
   * before `open()` when a `cluster` option is given; stores that cannot take
   * part in a cluster leave it out, and createActorSystem refuses them then.
   */
  joinCluster?(binding: ClusterBinding): void;
  /**
   * Hands the store the system's logger (a child with the system's name),
   * which a store created without a logger of its own writes its warnings
   * to. Called by createActorSystem before `open()`. Optional.
   */
  useLogger?(logger: Logger): void;
  /** Flushes pending writes and releases the storage. Idempotent. */
  close(): Promise<void>;
  /** Approximate bytes used on disk (or in memory). */
  sizeBytes(): Promise<number>;
}
