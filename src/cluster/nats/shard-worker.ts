/**
 * The owner side of one shard: consumes the shard's subject of the events
 * stream and applies each event to its entity, acknowledging the message
 * only after the entity's send resolved (that is, after the event is durable
 * in the store). Until then the message stays in the stream, so an event
 * survives the death of its owner and is delivered to the next one.
 *
 * The stream is a work queue and each shard has one durable consumer. A new
 * owner deletes and recreates that consumer: what is left in the stream is
 * exactly what no owner acknowledged, and it is delivered at once instead of
 * after the previous owner's ack wait. A previous owner that is still running
 * (paused past its lease) loses its consumer with it, and its store writes are
 * refused by fencing, so it cannot apply those events a second time.
 *
 * The consumer keeps its state in the server's memory (`mem_storage`), not
 * in a file: with a file, nats-server 2.9 rewrites each consumer's state
 * file (open, write, close) after every delivery and every ack, up to ten
 * times a second per consumer, and with a consumer per shard that was about
 * half of the server's CPU at 1,000 events/s over 256 shards
 * (bench/cluster.bench.ts: about 600 µs of server CPU per event against 300
 * with memory state). Nothing is lost by it: the stream is a work queue, so
 * what the consumer acknowledged is gone from the stream and what it did
 * not is still there, and every new owner recreates the consumer anyway.
 * Only a restart of the nats-server loses the consumer itself; the worker
 * then creates it again (see `watch`), and the new consumer delivers every
 * message not yet acknowledged.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import {
  ClusterError,
  isShardchartError,
  type ShardchartError,
} from '../../errors.js';
import type { EntityState } from '../../system/types.js';
import {
  decodeMessage,
  encodeMessage,
  toWireError,
  type QueryMessage,
  type SendMessage,
} from '../protocol.js';
import type { Subjects } from '../subjects.js';

/** What a shard worker needs from the node. */
export interface ShardHost {
  /** Applies an event on this node (throws NOT_OWNER when the shard is not ours). */
  apply(message: SendMessage): Promise<EntityState>;
  /** True while this node holds the shard with a valid lease. */
  ownsShard(shard: number): boolean;
  /** Answers a query on this node. */
  query(
    message: QueryMessage,
  ): Promise<{ state?: EntityState; value?: unknown }>;
  readonly limits: { bytesMax: number; depthMax: number };
  invalid(error: ShardchartError, where: string): void;
  log(
    level: 'warn' | 'error' | 'info',
    fields: Record<string, unknown>,
    message: string,
  ): void;
}

/** Errors after which the event must go to the next owner, unanswered here. */
function handOver(error: unknown): boolean {
  return (
    isShardchartError(error) &&
    (error.code === 'NOT_OWNER' ||
      error.code === 'FENCED' ||
      error.code === 'SYSTEM_STOPPED')
  );
}

export class ShardWorker {
  private messages: ConsumerMessages | undefined;
  private querySub: Subscription | undefined;
  private inFlight = 0;
  /**
   * `replyTo#cid` of the sends this worker is applying now, with the stream
   * sequence of the message being applied (see `handle`).
   */
  private readonly applying = new Map<string, number>();
  private idle: (() => void)[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    readonly shard: number,
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly subjects: Subjects,
    private readonly host: ShardHost,
    private readonly inFlightMax: number,
    private readonly ackWaitMs: number,
  ) {}

  async start(): Promise<void> {
    const name = this.subjects.consumer(this.shard);
    try {
      await this.jsm.consumers.delete(this.subjects.stream, name);
    } catch (error) {
      if (!/not found|10014/i.test(String((error as Error).message ?? error)))
        throw error;
    }
    await this.createConsumer();
    if (this.stopped) return;
    this.querySub = this.nc.subscribe(this.subjects.query(this.shard), {
      callback: (err, msg) => {
        if (err) return;
        void this.answerQuery(msg.data).then((bytes) => msg.respond(bytes));
      },
    });
    await this.consume();
  }

  private async createConsumer(): Promise<void> {
    await this.jsm.consumers.add(this.subjects.stream, {
      durable_name: this.subjects.consumer(this.shard),
      filter_subject: this.subjects.shard(this.shard),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: this.ackWaitMs * 1_000_000,
      max_ack_pending: this.inFlightMax,
      // State in memory: see the header.
      mem_storage: true,
    });
  }

  private async consume(): Promise<void> {
    const consumer = await this.js.consumers.get(
      this.subjects.stream,
      this.subjects.consumer(this.shard),
    );
    if (this.stopped) return;
    const messages = await consumer.consume({
      max_messages: Math.min(this.inFlightMax, 512),
    });
    if (this.stopped) {
      // stop() ran meanwhile and had nothing to close yet.
      await messages.close().catch(() => undefined);
      return;
    }
    this.messages = messages;
    const loop = this.run(messages);
    const before = this.loop;
    this.loop =
      before === undefined
        ? loop
        : Promise.all([before, loop]).then(() => undefined);
    void this.watch(messages);
  }

  /**
   * Creates the consumer again when it disappears while this node still
   * owns the shard: a restarted nats-server does not keep consumers whose
   * state is in memory. (A consumer deleted by a new owner also ends up
   * here, but then this node no longer holds the shard's lease.)
   */
  private async watch(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const status of messages.status()) {
        if (this.stopped || this.messages !== messages) return;
        if (
          (status.type === 'consumer_not_found' ||
            status.type === 'consumer_deleted') &&
          this.host.ownsShard(this.shard)
        ) {
          await this.recreate(messages);
          return;
        }
      }
    } catch {
      // The status feed ends with the consumer's messages.
    }
  }

  private async recreate(old: ConsumerMessages): Promise<void> {
    this.host.log(
      'warn',
      { shard: this.shard },
      'the shard consumer is gone (the NATS server restarted?); creating it again',
    );
    this.messages = undefined;
    await old.close().catch(() => undefined);
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await this.createConsumer();
        await this.consume();
        return;
      } catch (error) {
        this.host.log(
          'warn',
          { shard: this.shard, err: error },
          'could not create the shard consumer again; retrying',
        );
        await new Promise((r) =>
          setTimeout(r, Math.min(2_000, 100 * 2 ** attempt)),
        );
      }
    }
  }

  private async run(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const m of messages) {
        if (this.stopped) {
          m.nak();
          continue;
        }
        this.handle(m);
      }
    } catch (error) {
      if (!this.stopped)
        this.host.log(
          'warn',
          { shard: this.shard, err: error },
          'shard consumer ended',
        );
    }
  }

  private handle(m: JsMsg): void {
    let message: SendMessage;
    try {
      const decoded = decodeMessage(m.data, this.host.limits);
      if (decoded.k !== 'send')
        throw new ClusterError(
          'MESSAGE_INVALID',
          `Only send messages belong on ${m.subject}; got a "${decoded.k}" message.`,
        );
      message = decoded;
    } catch (error) {
      // Nobody can ever apply it: take it out of the stream.
      this.host.invalid(error as ShardchartError, m.subject);
      m.term();
      return;
    }
    // A router publishes a send again when its answer is late (see
    // Router.send). While this node still applies the first copy, the
    // repeat is dropped here: the first copy's answer settles the send, and
    // the entity's dedupe window need not cover a long mailbox.
    const sendKey =
      message.replyTo !== undefined && message.cid !== undefined
        ? `${message.replyTo}#${message.cid}`
        : undefined;
    if (sendKey !== undefined) {
      const applyingSeq = this.applying.get(sendKey);
      // The server redelivered the very message being applied (its ack wait
      // ran out). Acking it would take the event out of the stream before
      // it is durable, and if this node lost the shard now, no next owner
      // would ever see it. The first delivery's ack or nak settles it.
      if (applyingSeq === m.seq) return;
      if (applyingSeq !== undefined) {
        m.ack();
        return;
      }
      this.applying.set(sendKey, m.seq);
    }
    const done = (): void => {
      if (sendKey !== undefined) this.applying.delete(sendKey);
    };
    this.inFlight++;
    this.host.apply(message).then(
      (state) => {
        done();
        this.reply(message, { k: 'reply', cid: message.cid, ok: true, state });
        m.ack();
        this.settle();
      },
      (error: unknown) => {
        done();
        if (handOver(error)) {
          // Not ours (any more) or stopping: the next owner applies and answers it.
          m.nak();
        } else {
          this.reply(message, {
            k: 'reply',
            cid: message.cid,
            ok: false,
            error: toWireError(error),
          });
          m.ack();
        }
        this.settle();
      },
    );
  }

  private reply(
    message: SendMessage,
    body: Parameters<typeof encodeMessage>[0],
  ): void {
    if (message.replyTo === undefined) return;
    try {
      this.nc.publish(message.replyTo, encodeMessage(body));
    } catch (error) {
      this.host.log(
        'warn',
        { shard: this.shard, err: error },
        'could not send an answer; the sender times out and may retry',
      );
    }
  }

  private async answerQuery(data: Uint8Array): Promise<Uint8Array> {
    try {
      const decoded = decodeMessage(data, this.host.limits);
      if (decoded.k !== 'query')
        throw new ClusterError(
          'MESSAGE_INVALID',
          `Only query messages belong on ${this.subjects.query(this.shard)}; got a "${decoded.k}" message.`,
        );
      if (this.stopped)
        throw new ClusterError(
          'NOT_OWNER',
          `Shard ${this.shard} is moving to another node; retry.`,
          { retryable: true },
        );
      const answer = await this.host.query(decoded);
      return encodeMessage({ k: 'reply', ok: true, ...answer });
    } catch (error) {
      if (isShardchartError(error, 'MESSAGE_INVALID'))
        this.host.invalid(error, this.subjects.query(this.shard));
      return encodeMessage({
        k: 'reply',
        ok: false,
        error: toWireError(error),
      });
    }
  }

  private settle(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.idle.length > 0) {
      const waiters = this.idle;
      this.idle = [];
      for (const wake of waiters) wake();
    }
  }

  /** Stops taking events and resolves when those taken are answered. */
  async drain(): Promise<void> {
    this.stop();
    if (this.inFlight > 0)
      await new Promise<void>((resolve) => this.idle.push(resolve));
    await this.loop;
  }

  /** Stops at once: events not yet answered are left to the next owner. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.querySub?.unsubscribe();
    void this.messages?.close().catch(() => undefined);
  }
}
