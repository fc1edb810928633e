/**
 * The key-value store the cluster protocol runs on, as an interface: the
 * coordinator (coordinator.ts) needs only what JetStream KV offers, and an
 * in-memory implementation (memory-kv.ts) gives tests and embedded use the
 * same behaviour without a server.
 *
 * Semantics every implementation keeps (the shared behaviour suite in
 * test/sharding/kv-behaviour.ts runs against each):
 *
 * - Every write (put, delete, purge) gets a revision from one counter per
 *   bucket that only grows. A key's revision is that of its latest write,
 *   delete markers included, so compare-and-set on a deleted key compares
 *   against the marker.
 * - `create` succeeds only when the key has no live value; `update`,
 *   `delete` and `purge` with `expectedRevision` succeed only when the key's
 *   latest write has that revision. A mismatch rejects with
 *   {@link KvConflictError}; nothing is written.
 * - `get` returns the latest acknowledged write (linearizable): the
 *   coordinator re-reads a node record with it before taking that node's
 *   shards, so a read served by a lagging replica would be unsafe.
 * - A failure to reach the store rejects with `ClusterError`
 *   `CLUSTER_UNAVAILABLE` (retryable). Such a failure is ambiguous for
 *   writes: the write may have been applied, exactly as with a lost reply
 *   from a server. Callers must be correct either way.
 * - A watch delivers, in revision order, the live values under its prefix
 *   when it starts, then `ready`, then every later put and delete. When the
 *   connection drops it delivers `interrupted`; after reconnecting it
 *   delivers what it missed (at least the latest write of every key changed
 *   meanwhile) and `ready` again.
 *
 * Keys are NATS subject tokens joined by dots (`nodes.n1`, `shards.17`):
 * letters, digits and `-_/=` in each token. Prefixes are `''` (every key) or
 * end with a dot (`'nodes.'`), because JetStream filters whole tokens.
 */
import { ConfigError, StoreError } from '../errors.js';

/** A live value and the revision of the write that stored it. */
export interface KvEntry {
  readonly key: string;
  readonly value: Uint8Array;
  readonly revision: number;
}

/** What a watch delivers; see the module comment for the order. */
export type KvWatchEvent =
  | {
      readonly kind: 'put';
      readonly key: string;
      readonly value: Uint8Array;
      readonly revision: number;
    }
  | { readonly kind: 'delete'; readonly key: string; readonly revision: number }
  /** Everything the store held when the watch (re)started has been delivered. */
  | { readonly kind: 'ready' }
  /** The watch lost the store; it resumes and says `ready` again when caught up. */
  | { readonly kind: 'interrupted' };

/**
 * A running watch: an async iterable with one consumer (a second
 * `for await` throws) and counters in the style of nats.js iterators.
 */
export interface KvWatch extends AsyncIterable<KvWatchEvent> {
  /** Events queued by the store so far. */
  readonly received: number;
  /** Events handed to the consumer so far. */
  readonly processed: number;
  /** Events queued and not yet handed over. */
  readonly pending: number;
  /**
   * Ends the watch: the iteration finishes after the events already queued.
   * Resolves when the store side has let go. Idempotent.
   */
  stop(): Promise<void>;
}

/** Options of {@link ClusterKv.watch}. */
export interface KvWatchOptions {
  /**
   * Events a slow consumer may leave queued before the watch ends with a
   * `ClusterError` (`CLUSTER_UNAVAILABLE`): the consumer then starts a new
   * watch, which delivers the current values again. Default 65,536.
   */
  readonly pendingMax?: number;
}

/** Options of writes that may be conditional on the key's revision. */
export interface KvConditionalOptions {
  /** The write succeeds only if the key's latest write has this revision. */
  readonly expectedRevision?: number;
}

/**
 * The key-value store of the cluster protocol. See the module comment for
 * the semantics every implementation keeps.
 *
 * @example
 * ```ts
 * const kv: ClusterKv = createMemoryKv();
 * const revision = await kv.create('shards.7', bytes);
 * await kv.update('shards.7', newBytes, revision); // KvConflictError if someone wrote first
 * ```
 */
export interface ClusterKv {
  /** The live value of `key`, or undefined when it has none (never written or deleted). */
  get(key: string): Promise<KvEntry | undefined>;
  /** Stores `value` if `key` has no live value; returns the new revision. */
  create(key: string, value: Uint8Array): Promise<number>;
  /** Stores `value` if the key's latest write has `expectedRevision`; returns the new revision. */
  update(
    key: string,
    value: Uint8Array,
    expectedRevision: number,
  ): Promise<number>;
  /** Stores `value` unconditionally; returns the new revision. */
  put(key: string, value: Uint8Array): Promise<number>;
  /** Writes a delete marker (the key then has no live value). */
  delete(key: string, options?: KvConditionalOptions): Promise<void>;
  /** Deletes the key and drops its history. */
  purge(key: string, options?: KvConditionalOptions): Promise<void>;
  /** Keys with a live value under `prefix`, sorted. */
  keys(prefix?: string): Promise<string[]>;
  /** Live entries under `prefix`, sorted by key. */
  list(prefix?: string): Promise<KvEntry[]>;
  /** Starts a watch of `prefix`; see {@link KvWatch}. */
  watch(prefix?: string, options?: KvWatchOptions): Promise<KvWatch>;
  /** Stops every watch of this client. The KV is not usable afterwards. */
  close(): Promise<void>;
}

/**
 * A compare-and-set lost: `create` found a live value, or a conditional
 * write found another revision than expected. Nothing was written. Code
 * `STORE_CONFLICT`; `details` holds `key`, `expectedRevision` (0 for
 * `create`) and, when the store says so, `actualRevision`.
 *
 * @example
 * ```ts
 * try { await kv.update(key, value, revision); }
 * catch (err) { if (err instanceof KvConflictError) reread(); else throw err; }
 * ```
 */
export class KvConflictError extends StoreError {
  readonly key: string;
  readonly expectedRevision: number;

  constructor(
    key: string,
    expectedRevision: number,
    options?: ErrorOptions & { actualRevision?: number },
  ) {
    const expected =
      expectedRevision === 0 ? 'no live value' : `revision ${expectedRevision}`;
    const actual =
      options?.actualRevision === undefined
        ? 'another'
        : `revision ${options.actualRevision}`;
    super(
      'STORE_CONFLICT',
      `The KV key "${key}" was expected at ${expected} but is at ${actual}: another writer got there first. Read the key again and decide anew.`,
      {
        cause: options?.cause,
        details: {
          key,
          expectedRevision,
          ...(options?.actualRevision === undefined
            ? {}
            : { actualRevision: options.actualRevision }),
        },
      },
    );
    this.name = 'KvConflictError';
    this.key = key;
    this.expectedRevision = expectedRevision;
  }
}

/**
 * True when `err` is a lost compare-and-set ({@link KvConflictError}).
 *
 * @example
 * ```ts
 * await kv.create(key, value).catch((err) => { if (!isKvConflict(err)) throw err; });
 * ```
 */
export function isKvConflict(err: unknown): err is KvConflictError {
  return err instanceof KvConflictError;
}

const KEY_TOKEN = /^[-/=\w]+$/;

/**
 * Throws `ConfigError` unless `key` is a valid KV key (dot-separated tokens
 * of letters, digits and `-_/=`), the rule JetStream KV applies.
 * @internal
 */
export function assertKvKey(key: string): void {
  if (
    typeof key !== 'string' ||
    key === '' ||
    !key.split('.').every((token) => KEY_TOKEN.test(token))
  ) {
    throw new ConfigError(
      `${JSON.stringify(key)} is not a valid KV key: use dot-separated tokens of letters, digits and "-_/=".`,
      { details: { key } },
    );
  }
}

/**
 * Throws `ConfigError` unless `prefix` is `''` or valid key tokens followed
 * by a dot.
 * @internal
 */
export function assertKvPrefix(prefix: string): void {
  if (prefix === '') return;
  if (typeof prefix !== 'string' || !prefix.endsWith('.')) {
    throw new ConfigError(
      `${JSON.stringify(prefix)} is not a valid KV prefix: use '' or whole tokens followed by a dot, as 'nodes.'.`,
      { details: { prefix } },
    );
  }
  assertKvKey(prefix.slice(0, -1));
}

/**
 * Throws `ConfigError` unless `revision` is a positive safe integer.
 * @internal
 */
export function assertRevision(revision: number, what: string): void {
  if (!Number.isSafeInteger(revision) || revision < 1) {
    throw new ConfigError(
      `${what} must be a positive integer revision, got ${String(revision)}.`,
      { details: { revision } },
    );
  }
}
