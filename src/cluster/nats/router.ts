/**
 * The sending side of a node: routes an entity's events to its shard's
 * JetStream subject and its reads to the shard's owner, and matches the
 * answers. Any node (also a client node that hosts no shards) sends this way;
 * an owner sends to its own shards through the stream too, so there is one
 * path, one order and one durability rule for every event.
 */
import { randomUUID } from 'node:crypto';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  ClusterError,
  isShardchartError,
  TimeoutError,
  type ShardchartError,
} from '../../errors.js';
import type { Clock } from '../../system/clock.js';
import type { EntityState } from '../../system/types.js';
import { shardOf } from '../../sharding/shard.js';
import {
  decodeMessage,
  encodeMessage,
  fromWireError,
  type QueryMessage,
  type ReplyMessage,
} from '../protocol.js';
import type { ResolvedClusterOptions } from '../options.js';
import type { Subjects } from '../subjects.js';
import { StateFeed, type WatchQuerier } from './state-feed.js';
import { StreamPublisher } from './stream-publisher.js';

type AnyEvent = { type: string; [key: string]: unknown };

interface Pending {
  resolve(state: EntityState): void;
  reject(error: Error): void;
  timer: unknown;
  /** A send's next re-publish (see `Router.send`). */
  resend?: ReturnType<typeof setTimeout>;
}

/** Errors of the NATS client that mean "try again shortly". */
function transient(error: unknown): boolean {
  if (isShardchartError(error)) return error.retryable;
  const code =
    error instanceof Error ? (error as { code?: unknown }).code : undefined;
  const text =
    error instanceof Error
      ? `${error.name} ${error.message} ${typeof code === 'string' || typeof code === 'number' ? code : ''}`
      : String(error);
  return /timeout|no responders|503|disconnect|closed|reconnect|CONNECTION|TIMEOUT/i.test(
    text,
  );
}

export class Router implements WatchQuerier {
  private readonly pending = new Map<number, Pending>();
  private nextCid = 1;
  private subscription: Subscription | undefined;
  readonly replySubject: string;
  private readonly publisher: StreamPublisher;
  /** The states of watched entities, pushed by their owners (`subscribe` on refs). */
  readonly states: StateFeed;
  closed = false;
  stats = { sent: 0, repliesInvalid: 0, publishRetries: 0, resends: 0 };

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly options: ResolvedClusterOptions,
    private readonly clock: Clock,
    incarnation: string,
    /** Counts a malformed message received on `where` (default: the reply subject). */
    private readonly onInvalid: (
      error: ShardchartError,
      where?: string,
    ) => void,
  ) {
    this.replySubject = subjects.reply(options.nodeId, incarnation);
    this.publisher = new StreamPublisher(nc, clock);
    this.states = new StateFeed(
      nc,
      subjects,
      { bytesMax: options.messageBytesMax, depthMax: 64 },
      clock,
      this,
      onInvalid,
    );
  }

  start(): void {
    this.publisher.start();
    const limits = { bytesMax: this.options.messageBytesMax, depthMax: 64 };
    this.subscription = this.nc.subscribe(this.replySubject, {
      callback: (err, msg) => {
        if (err) return;
        let reply: ReplyMessage;
        try {
          const decoded = decodeMessage(msg.data, limits);
          if (decoded.k !== 'reply')
            throw new ClusterError(
              'MESSAGE_INVALID',
              `Expected a reply on ${this.replySubject}, got a "${decoded.k}" message.`,
            );
          reply = decoded;
        } catch (error) {
          this.stats.repliesInvalid++;
          this.onInvalid(error as ShardchartError);
          return;
        }
        if (reply.cid === undefined) return;
        // A late answer (after a timeout) or a second one (after failover
        // or a re-publish) is dropped.
        const pending = this.take(reply.cid);
        if (!pending) return;
        if (reply.ok) pending.resolve(reply.state as EntityState);
        else pending.reject(fromWireError(reply.error));
      },
    });
  }

  shard(type: string, id: string): number {
    return shardOf(type, id, this.options.shardCount);
  }

  /**
   * Publishes the event to its shard's stream (retrying while the stream is
   * unreachable) and resolves with the owner's answer.
   */
  send(
    type: string,
    id: string,
    event: AnyEvent,
    eventId: string | undefined,
    timeoutMs: number | undefined,
  ): Promise<EntityState> {
    if (this.closed)
      return Promise.reject(
        new ClusterError(
          'CLUSTER_UNAVAILABLE',
          'This node has left the cluster; send from a running system.',
          { retryable: true },
        ),
      );
    const cid = this.nextCid++;
    const waitMs = timeoutMs ?? this.options.sendTimeoutMs;
    const deadline = this.clock.now() + waitMs;
    const data = encodeMessage({
      k: 'send',
      type,
      id,
      event,
      eventId: eventId ?? randomUUID(),
      replyTo: this.replySubject,
      cid,
      sentAt: this.clock.now(),
    });
    const subject = this.subjects.shard(this.shard(type, id));
    return new Promise<EntityState>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.take(cid);
        reject(
          new TimeoutError(
            `No answer for the event "${event.type}" to ${type}/${id} within ${waitMs} ms; it may still be applied. Retry with the same eventId to be safe.`,
            {
              details: { type, id, timeoutMs: waitMs },
            },
          ),
        );
      }, waitMs);
      const pending: Pending = { resolve, reject, timer };
      this.pending.set(cid, pending);
      this.stats.sent++;
      // The message id makes a retried publish of this very send a no-op for
      // the stream; a caller's own retry (a new send, same eventId) is a new
      // message that the entity's applied event ids answer as a duplicate.
      void this.publish(
        subject,
        data,
        `${this.replySubject}/${cid}`,
        deadline,
        cid,
      );
      // No answer for a while: publish again under a new message id (same
      // eventId, same cid). An owner that acked the event and died before
      // its answer left, or an answer lost with a connection, would
      // otherwise cost the whole send timeout; the entity's applied event
      // ids answer the repeat as a duplicate, and the first answer wins.
      let attempt = 0;
      const resend = (): void => {
        if (this.pending.get(cid) !== pending || this.closed) return;
        attempt++;
        this.stats.resends++;
        void this.publish(
          subject,
          data,
          `${this.replySubject}/${cid}/${attempt}`,
          deadline,
          cid,
        );
        pending.resend = setTimeout(resend, this.resendMs);
        pending.resend.unref();
      };
      pending.resend = setTimeout(resend, this.resendMs);
      pending.resend.unref();
    });
  }

  /** Removes a pending request and stops its timers; undefined when it is settled already. */
  private take(cid: number): Pending | undefined {
    const pending = this.pending.get(cid);
    if (pending === undefined) return undefined;
    this.pending.delete(cid);
    this.clock.clearTimeout(pending.timer);
    if (pending.resend !== undefined) clearTimeout(pending.resend);
    return pending;
  }

  /**
   * How long a send waits for an answer before it publishes again: twice the
   * lease TTL, so a failover (a lease lapsing, a new owner consuming) has
   * had its time first, and at least 2 s.
   */
  private get resendMs(): number {
    return Math.max(2_000, 2 * this.options.leaseTtlMs);
  }

  private async publish(
    subject: string,
    data: Uint8Array,
    msgID: string,
    deadline: number,
    cid: number,
  ): Promise<void> {
    let delay = 25;
    for (;;) {
      if (!this.pending.has(cid)) return;
      try {
        await this.publisher.publish(
          subject,
          data,
          msgID,
          Math.max(500, Math.min(5_000, deadline - this.clock.now())),
        );
        return;
      } catch (error) {
        if (
          !transient(error) ||
          this.clock.now() + delay >= deadline ||
          this.closed
        ) {
          const pending = this.take(cid);
          if (!pending) return;
          pending.reject(
            new ClusterError(
              'CLUSTER_UNAVAILABLE',
              `The event could not be stored in the cluster's stream (${error instanceof Error ? error.message : String(error)}); retry later with the same eventId.`,
              {
                retryable: true,
                cause: error,
              },
            ),
          );
          return;
        }
        this.stats.publishRetries++;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 1_000);
      }
    }
  }

  /** A read on the entity's owner; retried while the shard has no owner. */
  async query(
    message: QueryMessage,
    timeoutMs?: number,
  ): Promise<ReplyMessage & { ok: true }> {
    const waitMs = timeoutMs ?? this.options.sendTimeoutMs;
    const deadline = this.clock.now() + waitMs;
    const subject = this.subjects.query(this.shard(message.type, message.id));
    const data = encodeMessage(message);
    const limits = { bytesMax: this.options.messageBytesMax, depthMax: 64 };
    let delay = 25;
    for (;;) {
      let failure: unknown;
      try {
        const answer = await this.nc.request(subject, data, {
          timeout: Math.max(200, Math.min(5_000, deadline - this.clock.now())),
        });
        const reply = decodeMessage(answer.data, limits);
        if (reply.k !== 'reply')
          throw new ClusterError(
            'MESSAGE_INVALID',
            `Expected a reply to a query, got a "${reply.k}" message.`,
          );
        if (reply.ok) return reply;
        const error = fromWireError(reply.error);
        if (error.code !== 'NOT_OWNER') throw error;
        failure = error;
      } catch (error) {
        if (!transient(error)) throw error;
        failure = error;
      }
      if (this.clock.now() + delay >= deadline || this.closed) {
        throw new ClusterError(
          'CLUSTER_UNAVAILABLE',
          `No owner of ${message.type}/${message.id} answered within ${waitMs} ms (${failure instanceof Error ? failure.message : String(failure)}); retry later.`,
          {
            retryable: true,
            cause: failure,
            details: { type: message.type, id: message.id },
          },
        );
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 500);
    }
  }

  /**
   * Registers or renews this node's watch of an entity with its owner (see
   * WatchQuery); resolves with the state the owner sent, if any. The
   * node's reply subject names the watcher: it is unique per process.
   */
  async watch(
    type: string,
    id: string,
    ttlMs: number,
    seq: number,
  ): Promise<EntityState | undefined> {
    const reply = await this.query(
      {
        k: 'query',
        op: 'watch',
        type,
        id,
        watcher: this.replySubject,
        ttlMs,
        seq,
      },
      // Past its TTL the owner forgot the watch anyway: the answer of a
      // later attempt registers it again.
      Math.max(ttlMs, 1_000),
    );
    return reply.state;
  }

  close(): void {
    this.closed = true;
    this.states.stop();
    this.publisher.close();
    this.subscription?.unsubscribe();
    const error = new ClusterError(
      'CLUSTER_UNAVAILABLE',
      'The node stopped before the answer arrived; the event may still be applied. Retry with the same eventId.',
      { retryable: true },
    );
    for (const cid of [...this.pending.keys()]) this.take(cid)?.reject(error);
  }
}
