/**
 * {@link ClusterKv} on a NATS JetStream KV bucket (`@nats-io/kv` v3), the
 * store of the cluster protocol when nodes run over NATS.
 *
 * Reads and writes go through the KV client, reads from the stream leader
 * (`allow_direct: false`, so `get` sees every acknowledged write even when
 * the bucket has replicas): `create`, `update` (publish
 * with `Nats-Expected-Last-Subject-Sequence`), `delete`/`purge` with the same
 * header when a revision is expected. The bucket keeps one revision per key
 * (`history: 1`); revisions are the stream's sequence numbers.
 *
 * Watches do not use `kv.watch()`. Its ordered consumer notices a restarted
 * server only after two missed idle heartbeats (a minute with the client's
 * 30-second setting), and it does not say when the initial values are
 * complete if there are none. Each watch here runs its own ordered push
 * consumer (public `@nats-io/jetstream` API), knows from the consumer's
 * `num_pending` when it has caught up, and on every reconnect replaces the
 * consumer with one that starts right after the last revision delivered, so
 * a server restart costs one consumer creation, not a minute of silence.
 * Between the disconnect and catching up again it reports `interrupted`.
 */
import {
  DeliverPolicy,
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  type ConsumerMessages,
  type JetStreamClient,
  type JsMsg,
  type PushConsumer,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection, Status } from '@nats-io/transport-node';

import {
  ClusterError,
  ConfigError,
  type ShardchartError,
} from '../../errors.js';
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
} from '../../sharding/kv.js';
import { WATCH_PENDING_MAX, WatchQueue } from '../../sharding/watch-queue.js';
import { systemClock, type Clock } from '../../system/clock.js';

/** Options of {@link natsClusterKv}. */
export interface NatsClusterKvOptions {
  /** Timeout of each request to the server. Default 2,000 ms. */
  readonly timeoutMs?: number;
  /** Replicas of the bucket's stream when it is created (1, 3 or 5). Default 1. */
  readonly replicas?: number;
  /** Largest value accepted. Default 65,536 bytes (records of the protocol are tiny). */
  readonly valueBytesMax?: number;
  /** Clock for the reconnect backoff of watches. Default the system clock. */
  readonly clock?: Clock;
}

const OPERATION_HEADER = 'KV-Operation';
const BUCKET_NAME = /^[-\w]+$/;
const RESUBSCRIBE_DELAY_MS = [50, 100, 200, 400, 800, 1_600, 2_000] as const;

function unavailable(what: string, cause: unknown): ShardchartError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new ClusterError(
    'CLUSTER_UNAVAILABLE',
    `${what} failed: ${reason}. The NATS server may be unreachable or restarting; retry later. A write that failed this way may still have been applied.`,
    { cause, retryable: true },
  );
}

function wrongLastSequence(err: unknown): number | undefined {
  if (!(err instanceof JetStreamApiError)) return undefined;
  if (
    err.code !== JetStreamApiCodes.StreamWrongLastSequence &&
    err.code !== JetStreamApiCodes.StreamWrongLastSequenceUnknown
  ) {
    return undefined;
  }
  const actual = /(\d+)\s*$/.exec(err.message)?.[1];
  return actual === undefined ? -1 : Number(actual);
}

/** A NATS JetStream KV bucket as a {@link ClusterKv}. */
class NatsClusterKv implements ClusterKv {
  private readonly watches = new Set<NatsWatch>();
  private closed = false;
  readonly stream: string;
  readonly subjectPrefix: string;

  constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    private readonly kv: KV,
    readonly bucket: string,
    readonly timeoutMs: number,
    private readonly valueBytesMax: number,
    readonly clock: Clock,
  ) {
    this.stream = `KV_${bucket}`;
    this.subjectPrefix = `$KV.${bucket}.`;
  }

  private open(): void {
    if (this.closed || this.nc.isClosed()) {
      throw new ClusterError(
        'CLUSTER_UNAVAILABLE',
        'The KV client or its NATS connection is closed: create a new one.',
      );
    }
  }

  private checkValue(value: Uint8Array): void {
    if (!(value instanceof Uint8Array)) {
      throw new ConfigError('KV values must be Uint8Array bytes.');
    }
    if (value.length > this.valueBytesMax) {
      throw new ConfigError(
        `The KV value is ${value.length} bytes, above the ${this.valueBytesMax}-byte limit: store less per key.`,
        { details: { bytes: value.length, valueBytesMax: this.valueBytesMax } },
      );
    }
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.open();
    assertKvKey(key);
    try {
      const entry = await this.kv.get(key);
      if (entry === null || entry.operation !== 'PUT') return undefined;
      return {
        key,
        value: new Uint8Array(entry.value),
        revision: entry.revision,
      };
    } catch (err) {
      throw unavailable(`Reading KV key "${key}"`, err);
    }
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    this.open();
    assertKvKey(key);
    this.checkValue(value);
    try {
      return await this.kv.create(key, value);
    } catch (err) {
      const actual = wrongLastSequence(err);
      if (actual !== undefined) {
        throw new KvConflictError(key, 0, {
          cause: err,
          ...(actual > 0 ? { actualRevision: actual } : {}),
        });
      }
      throw unavailable(`Creating KV key "${key}"`, err);
    }
  }

  async update(
    key: string,
    value: Uint8Array,
    expectedRevision: number,
  ): Promise<number> {
    this.open();
    assertKvKey(key);
    assertRevision(expectedRevision, 'expectedRevision');
    this.checkValue(value);
    try {
      return await this.kv.update(key, value, expectedRevision);
    } catch (err) {
      const actual = wrongLastSequence(err);
      if (actual !== undefined) {
        throw new KvConflictError(key, expectedRevision, {
          cause: err,
          ...(actual >= 0 ? { actualRevision: actual } : {}),
        });
      }
      throw unavailable(`Updating KV key "${key}"`, err);
    }
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    this.open();
    assertKvKey(key);
    this.checkValue(value);
    try {
      return await this.kv.put(key, value);
    } catch (err) {
      throw unavailable(`Writing KV key "${key}"`, err);
    }
  }

  async delete(key: string, options?: KvConditionalOptions): Promise<void> {
    return this.remove(key, 'delete', options);
  }

  async purge(key: string, options?: KvConditionalOptions): Promise<void> {
    return this.remove(key, 'purge', options);
  }

  private async remove(
    key: string,
    how: 'delete' | 'purge',
    options: KvConditionalOptions | undefined,
  ): Promise<void> {
    this.open();
    assertKvKey(key);
    const expected = options?.expectedRevision;
    if (expected !== undefined) assertRevision(expected, 'expectedRevision');
    try {
      const opts =
        expected === undefined ? undefined : { previousSeq: expected };
      if (how === 'delete') await this.kv.delete(key, opts);
      else await this.kv.purge(key, opts);
    } catch (err) {
      const actual = wrongLastSequence(err);
      if (actual !== undefined && expected !== undefined) {
        throw new KvConflictError(key, expected, {
          cause: err,
          ...(actual >= 0 ? { actualRevision: actual } : {}),
        });
      }
      throw unavailable(`Deleting KV key "${key}"`, err);
    }
  }

  async keys(prefix = ''): Promise<string[]> {
    return (await this.list(prefix)).map((entry) => entry.key);
  }

  /**
   * One ordered consumer delivering the last message of every key under the
   * prefix; done when its pending count reaches zero.
   */
  async list(prefix = ''): Promise<KvEntry[]> {
    this.open();
    assertKvPrefix(prefix);
    let consumer: PushConsumer;
    try {
      consumer = await this.js.consumers.getPushConsumer(this.stream, {
        filter_subjects: this.filterFor(prefix),
        deliver_policy: DeliverPolicy.LastPerSubject,
      });
    } catch (err) {
      throw unavailable(`Listing KV prefix "${prefix}"`, err);
    }
    try {
      const info = await consumer.info(true);
      const total = info.num_pending;
      const entries: KvEntry[] = [];
      if (total > 0) {
        await new Promise<void>((resolve, reject) => {
          let seen = 0;
          let messages: ConsumerMessages | undefined;
          let finished = false;
          const finish = (err?: Error): void => {
            if (finished) return;
            finished = true;
            this.clock.clearTimeout(timer);
            void messages?.close();
            if (err === undefined) resolve();
            else reject(err);
          };
          const timer = this.clock.setTimeout(
            () =>
              finish(
                new Error(`no complete answer within ${this.timeoutMs} ms`),
              ),
            this.timeoutMs,
          );
          consumer
            .consume({
              callback: (m: JsMsg) => {
                if (finished) return;
                seen++;
                const entry = this.toEntry(m);
                if (entry !== undefined) entries.push(entry);
                if (m.info.pending === 0 || seen >= total) finish();
              },
            })
            .then(
              (started) => {
                messages = started;
                if (finished) void started.close();
              },
              (err: unknown) =>
                finish(err instanceof Error ? err : new Error(String(err))),
            );
        });
      }
      return entries.sort((a, b) =>
        a.key < b.key ? -1 : a.key > b.key ? 1 : 0,
      );
    } catch (err) {
      throw unavailable(`Listing KV prefix "${prefix}"`, err);
    } finally {
      consumer.delete().catch(() => undefined);
    }
  }

  async watch(prefix = '', options?: KvWatchOptions): Promise<KvWatch> {
    this.open();
    assertKvPrefix(prefix);
    const watch = new NatsWatch(
      this,
      prefix,
      options?.pendingMax ?? WATCH_PENDING_MAX,
      () => this.watches.delete(watch),
    );
    this.watches.add(watch);
    try {
      await watch.start();
    } catch (err) {
      await watch.queue.stop();
      throw unavailable(`Watching KV prefix "${prefix}"`, err);
    }
    return watch.queue;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.watches].map((watch) => watch.queue.stop()));
  }

  /** The subject filter of a prefix. */
  filterFor(prefix: string): string {
    return `${this.subjectPrefix}${prefix}>`;
  }

  /** A live entry from a stream message, or undefined for a delete marker. */
  toEntry(m: JsMsg): KvEntry | undefined {
    const operation = m.headers?.get(OPERATION_HEADER) ?? '';
    if (operation === 'DEL' || operation === 'PURGE') return undefined;
    return {
      key: m.subject.slice(this.subjectPrefix.length),
      value: new Uint8Array(m.data),
      revision: m.seq,
    };
  }
}

/**
 * One watch: a chain of ordered push consumers, each starting right after
 * the last revision the previous one delivered.
 */
class NatsWatch {
  readonly queue: WatchQueue;
  private lastRevision = 0;
  private everCaughtUp = false;
  private caughtUp = false;
  private session:
    | {
        consumer: PushConsumer;
        messages: ConsumerMessages | undefined;
        generation: number;
      }
    | undefined;
  private generation = 0;
  private stopped = false;
  private statusIterator: AsyncIterable<Status> | undefined;
  private retryTimer: unknown;
  private retryAttempt = 0;

  constructor(
    private readonly owner: NatsClusterKv,
    private readonly prefix: string,
    pendingMax: number,
    private readonly onStopped: () => void,
  ) {
    this.queue = new WatchQueue(pendingMax, () => this.shutdown());
  }

  async start(): Promise<void> {
    this.statusIterator = this.owner.nc.status();
    void this.followStatus(this.statusIterator);
    await this.openSession();
  }

  private async followStatus(iterator: AsyncIterable<Status>): Promise<void> {
    try {
      for await (const status of iterator) {
        if (this.stopped) return;
        if (status.type === 'disconnect') this.interrupt();
        else if (status.type === 'reconnect') this.resubscribe(true);
        else if (status.type === 'close') {
          this.queue.fail(
            new ClusterError(
              'CLUSTER_UNAVAILABLE',
              'The NATS connection of this KV watch was closed: connect again and start a new watch.',
              { retryable: true },
            ),
          );
          return;
        }
      }
    } catch {
      // The status iterator ends with the connection; `close` handles it.
    }
  }

  private async openSession(): Promise<void> {
    const generation = ++this.generation;
    const resume = this.lastRevision > 0;
    const consumer = await this.owner.js.consumers.getPushConsumer(
      this.owner.stream,
      resume
        ? {
            filter_subjects: this.owner.filterFor(this.prefix),
            opt_start_seq: this.lastRevision + 1,
          }
        : {
            filter_subjects: this.owner.filterFor(this.prefix),
            deliver_policy: DeliverPolicy.LastPerSubject,
          },
    );
    if (this.stopped || generation !== this.generation) {
      this.deleteConsumer(consumer);
      return;
    }
    const info = await consumer.info(true);
    // Deletes are values the watcher must see once it has seen the key, or
    // may have: always after the first catch-up, and in a restarted first
    // session whose predecessor delivered something.
    const deliverDeletes = resume;
    const total = info.num_pending;
    let seen = 0;
    this.session = { consumer, messages: undefined, generation };
    const messages = await consumer.consume({
      callback: (m: JsMsg) => {
        if (generation !== this.generation) return;
        seen++;
        this.deliver(m, deliverDeletes || this.everCaughtUp);
        if (!this.caughtUp && (m.info.pending === 0 || seen >= total)) {
          this.markCaughtUp();
        }
      },
    });
    if (this.stopped || generation !== this.generation) {
      void messages.close();
      this.deleteConsumer(consumer);
      return;
    }
    this.session.messages = messages;
    this.retryAttempt = 0;
    if (total === 0) this.markCaughtUp();
    void messages.closed().then(() => {
      // Closed by the library (it gave up recreating the consumer) rather
      // than by us: start over from the last revision.
      if (!this.stopped && this.session?.generation === generation) {
        this.resubscribe(false);
      }
    });
  }

  private deliver(m: JsMsg, deliverDeletes: boolean): void {
    if (m.seq <= this.lastRevision) return;
    this.lastRevision = m.seq;
    const operation = m.headers?.get(OPERATION_HEADER) ?? '';
    const key = m.subject.slice(this.owner.subjectPrefix.length);
    if (operation === 'DEL' || operation === 'PURGE') {
      if (deliverDeletes)
        this.queue.push({ kind: 'delete', key, revision: m.seq });
      return;
    }
    this.queue.push({
      kind: 'put',
      key,
      value: new Uint8Array(m.data),
      revision: m.seq,
    });
  }

  private markCaughtUp(): void {
    if (this.caughtUp) return;
    this.caughtUp = true;
    this.everCaughtUp = true;
    this.queue.push({ kind: 'ready' });
  }

  private interrupt(): void {
    if (this.caughtUp) {
      this.caughtUp = false;
      this.queue.push({ kind: 'interrupted' });
    }
    this.generation++;
    this.dropSession();
  }

  private dropSession(): void {
    const session = this.session;
    this.session = undefined;
    if (session === undefined) return;
    void session.messages?.close();
    this.deleteConsumer(session.consumer);
  }

  /**
   * Deletes a consumer this watch no longer uses. When the server is away
   * (the usual reason a session ends) the delete fails; it is retried a few
   * times a second apart, and the server drops whatever is left after the
   * consumer's 5-minute inactivity threshold.
   */
  private deleteConsumer(consumer: PushConsumer, attemptsLeft = 10): void {
    consumer.delete().catch(() => {
      if (attemptsLeft <= 0 || this.owner.nc.isClosed()) return;
      this.owner.clock.setTimeout(
        () => this.deleteConsumer(consumer, attemptsLeft - 1),
        1_000,
      );
    });
  }

  private resubscribe(immediately: boolean): void {
    if (this.stopped) return;
    this.interrupt();
    this.owner.clock.clearTimeout(this.retryTimer);
    const delay = immediately
      ? 0
      : RESUBSCRIBE_DELAY_MS[
          Math.min(this.retryAttempt, RESUBSCRIBE_DELAY_MS.length - 1)
        ];
    this.retryAttempt++;
    this.retryTimer = this.owner.clock.setTimeout(() => {
      if (this.stopped) return;
      this.openSession().catch(() => {
        // JetStream is often not ready right after a server restart; try
        // again with backoff until it is, or until the watch is stopped.
        if (!this.stopped) this.resubscribe(false);
      });
    }, delay as number);
  }

  private async shutdown(): Promise<void> {
    this.stopped = true;
    this.owner.clock.clearTimeout(this.retryTimer);
    (this.statusIterator as { stop?: () => void } | undefined)?.stop?.();
    this.generation++;
    this.dropSession();
    this.onStopped();
  }
}

/**
 * Opens (creating when missing) the KV bucket `bucket` on `nc` as a
 * {@link ClusterKv}. Bucket names are letters, digits, `-` and `_`. The connection should reconnect forever
 * (`maxReconnectAttempts: -1`): watches resume by themselves after each
 * reconnect, and requests made while disconnected fail with a retryable
 * `ClusterError` (`CLUSTER_UNAVAILABLE`).
 *
 * @example
 * ```ts
 * const nc = await connect({ servers: 'nats://127.0.0.1:4222', maxReconnectAttempts: -1 });
 * const kv = await natsClusterKv(nc, 'SHARDCHART_shop_CLUSTER');
 * ```
 */
export async function natsClusterKv(
  nc: NatsConnection,
  bucket: string,
  options: NatsClusterKvOptions = {},
): Promise<ClusterKv> {
  if (typeof bucket !== 'string' || !BUCKET_NAME.test(bucket)) {
    throw new ConfigError(
      `${JSON.stringify(bucket)} is not a valid KV bucket name: use letters, digits, "-" and "_".`,
      { details: { bucket } },
    );
  }
  const timeoutMs = options.timeoutMs ?? 2_000;
  const valueBytesMax = options.valueBytesMax ?? 65_536;
  for (const [name, value] of [
    ['timeoutMs', timeoutMs],
    ['valueBytesMax', valueBytesMax],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) {
      throw new ConfigError(
        `${name} must be a positive integer, got ${String(value)}.`,
      );
    }
  }
  const js = jetstream(nc, { timeout: timeoutMs });
  let kv: KV | undefined;
  // Nodes starting together race to create the bucket: the loser's create
  // fails ("subjects overlap with an existing stream" on nats-server 2.9)
  // and its next try finds the bucket the winner made.
  for (let attempt = 1; kv === undefined; attempt++) {
    try {
      kv = await new Kvm(js).create(bucket, {
        history: 1,
        replicas: options.replicas ?? 1,
        // Reads go to the stream leader, not to any replica: the coordinator
        // re-reads an owner's record before taking its shard and must not get
        // a lagging replica's answer (direct gets may be served by followers).
        allow_direct: false,
        description: 'Shardchart cluster membership and shard ownership',
      });
    } catch (err) {
      if (attempt >= 3) throw unavailable(`Opening KV bucket "${bucket}"`, err);
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
    }
  }
  return new NatsClusterKv(
    nc,
    js,
    kv,
    bucket,
    timeoutMs,
    valueBytesMax,
    options.clock ?? systemClock,
  );
}
