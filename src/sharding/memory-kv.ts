/**
 * An in-memory {@link ClusterKv}: the semantics of a JetStream KV bucket with
 * history 1 (one revision counter per bucket, delete markers that carry a
 * revision, compare-and-set against the latest write), without a server.
 * For tests, simulations and single-process use; nothing survives the
 * process.
 */
import { ClusterError, ConfigError } from '../errors.js';
import {
  assertKvKey,
  assertKvPrefix,
  assertRevision,
  KvConflictError,
  type ClusterKv,
  type KvConditionalOptions,
  type KvEntry,
  type KvWatch,
  type KvWatchOptions,
} from './kv.js';
import { WATCH_PENDING_MAX, WatchQueue } from './watch-queue.js';

/** Options of {@link createMemoryKv}. */
export interface MemoryKvOptions {
  /** Largest value accepted, in bytes. Default 1 MiB (the NATS default payload limit). */
  readonly valueBytesMax?: number;
}

/**
 * A memory KV. It is itself a client; `connect()` gives further clients of
 * the same data, each with its own watches and `close()`, as separate
 * processes would have.
 */
export interface MemoryKv extends ClusterKv {
  connect(): ClusterKv;
  /** The revision of the latest write to the bucket (0 when empty). */
  readonly revision: number;
}

interface Slot {
  /** Undefined for a delete marker. */
  value: Uint8Array | undefined;
  revision: number;
}

interface Listener {
  readonly prefix: string;
  readonly queue: WatchQueue;
}

class MemoryBucket {
  readonly slots = new Map<string, Slot>();
  readonly listeners = new Set<Listener>();
  revision = 0;

  constructor(readonly valueBytesMax: number) {}

  write(key: string, value: Uint8Array | undefined): number {
    const revision = ++this.revision;
    this.slots.set(key, { value, revision });
    for (const listener of this.listeners) {
      if (!key.startsWith(listener.prefix)) continue;
      listener.queue.push(
        value === undefined
          ? { kind: 'delete', key, revision }
          : { kind: 'put', key, value, revision },
      );
    }
    return revision;
  }

  expect(key: string, expectedRevision: number | undefined): void {
    if (expectedRevision === undefined) return;
    assertRevision(expectedRevision, 'expectedRevision');
    const actual = this.slots.get(key)?.revision ?? 0;
    if (actual !== expectedRevision) {
      throw new KvConflictError(key, expectedRevision, {
        actualRevision: actual,
      });
    }
  }

  checkValue(value: Uint8Array): Uint8Array {
    if (!(value instanceof Uint8Array)) {
      throw new ConfigError('KV values must be Uint8Array bytes.');
    }
    if (value.length > this.valueBytesMax) {
      throw new ConfigError(
        `The KV value is ${value.length} bytes, above the ${this.valueBytesMax}-byte limit: store less per key.`,
        { details: { bytes: value.length, valueBytesMax: this.valueBytesMax } },
      );
    }
    // The caller may reuse its buffer (the codec does); keep a copy.
    return value.slice();
  }

  live(prefix: string): KvEntry[] {
    const entries: KvEntry[] = [];
    for (const [key, slot] of this.slots) {
      if (slot.value !== undefined && key.startsWith(prefix)) {
        entries.push({
          key,
          value: slot.value.slice(),
          revision: slot.revision,
        });
      }
    }
    return entries;
  }
}

class MemoryKvClient implements ClusterKv {
  private closed = false;
  private readonly watches = new Set<WatchQueue>();

  constructor(protected readonly bucket: MemoryBucket) {}

  private open(): void {
    if (this.closed) {
      throw new ClusterError(
        'CLUSTER_UNAVAILABLE',
        'This KV client is closed: connect a new one.',
      );
    }
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.open();
    assertKvKey(key);
    const slot = this.bucket.slots.get(key);
    if (slot?.value === undefined) return undefined;
    return { key, value: slot.value.slice(), revision: slot.revision };
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    this.open();
    assertKvKey(key);
    const copy = this.bucket.checkValue(value);
    const slot = this.bucket.slots.get(key);
    if (slot?.value !== undefined) {
      throw new KvConflictError(key, 0, { actualRevision: slot.revision });
    }
    return this.bucket.write(key, copy);
  }

  async update(
    key: string,
    value: Uint8Array,
    expectedRevision: number,
  ): Promise<number> {
    this.open();
    assertKvKey(key);
    assertRevision(expectedRevision, 'expectedRevision');
    const copy = this.bucket.checkValue(value);
    this.bucket.expect(key, expectedRevision);
    return this.bucket.write(key, copy);
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    this.open();
    assertKvKey(key);
    return this.bucket.write(key, this.bucket.checkValue(value));
  }

  async delete(key: string, options?: KvConditionalOptions): Promise<void> {
    this.open();
    assertKvKey(key);
    this.bucket.expect(key, options?.expectedRevision);
    this.bucket.write(key, undefined);
  }

  async purge(key: string, options?: KvConditionalOptions): Promise<void> {
    // With history 1 a purge and a delete leave the same state: one marker.
    return this.delete(key, options);
  }

  async keys(prefix = ''): Promise<string[]> {
    return (await this.list(prefix)).map((entry) => entry.key);
  }

  async list(prefix = ''): Promise<KvEntry[]> {
    this.open();
    assertKvPrefix(prefix);
    return this.bucket
      .live(prefix)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async watch(prefix = '', options?: KvWatchOptions): Promise<KvWatch> {
    this.open();
    assertKvPrefix(prefix);
    const listener: Listener = {
      prefix,
      queue: new WatchQueue(
        options?.pendingMax ?? WATCH_PENDING_MAX,
        async () => {
          this.bucket.listeners.delete(listener);
          this.watches.delete(listener.queue);
        },
      ),
    };
    // Initial values in revision order, as a JetStream consumer delivers
    // the last message per subject, then live writes from the same instant:
    // both happen synchronously here, so nothing falls between them.
    const initial = this.bucket
      .live(prefix)
      .sort((a, b) => a.revision - b.revision);
    for (const entry of initial) {
      listener.queue.push({ kind: 'put', ...entry });
    }
    listener.queue.push({ kind: 'ready' });
    this.bucket.listeners.add(listener);
    this.watches.add(listener.queue);
    return listener.queue;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.watches].map((watch) => watch.stop()));
  }
}

class MemoryKvRoot extends MemoryKvClient implements MemoryKv {
  connect(): ClusterKv {
    return new MemoryKvClient(this.bucket);
  }

  get revision(): number {
    return this.bucket.revision;
  }
}

/**
 * Creates an empty in-memory KV bucket.
 *
 * @example
 * ```ts
 * const kv = createMemoryKv();
 * const a = kv.connect(), b = kv.connect(); // two "processes" sharing one bucket
 * await a.create('shards.1', new Uint8Array([1]));
 * await b.create('shards.1', new Uint8Array([2])); // rejects with KvConflictError
 * ```
 */
export function createMemoryKv(options: MemoryKvOptions = {}): MemoryKv {
  const valueBytesMax = options.valueBytesMax ?? 1_048_576;
  if (!Number.isInteger(valueBytesMax) || valueBytesMax < 1) {
    throw new ConfigError(
      `valueBytesMax must be a positive integer, got ${String(valueBytesMax)}.`,
    );
  }
  return new MemoryKvRoot(new MemoryBucket(valueBytesMax));
}
