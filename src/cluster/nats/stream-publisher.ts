/**
 * Publishes to a JetStream stream and waits for the stream's acknowledgement
 * (PubAck) without a NATS request per message: every publish carries a reply
 * subject under one inbox subscription of this publisher, and the PubAcks
 * are matched by it.
 *
 * Why not `js.publish()`: in @nats-io/jetstream and nats-core 3.4 each call
 * is a request that creates two Error objects for async stack traces, a
 * timer, and on success one more Error (`RequestError("cancelled")`, built
 * and dropped after the answer). With the cluster's send path measured under
 * load (bench/cluster.bench.ts), those stack captures were the largest single
 * cost of the sending process. Here a publish costs one map entry, and one
 * timer runs per publisher while any PubAck is awaited.
 */
import {
  createInbox,
  headers,
  type Msg,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import type { Clock } from '../../system/clock.js';

interface Awaited {
  readonly deadline: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/** How often overdue PubAcks are looked for; a timeout fires up to this late. */
const SWEEP_MS = 100;

/** A PubAck that did not come in time; the message may still be stored (retry with the same message id). */
export class PubAckTimeoutError extends Error {
  override readonly name = 'PubAckTimeoutError';
}

/** The stream refused the message (`error` in the PubAck). */
export class PubAckRefusedError extends Error {
  override readonly name = 'PubAckRefusedError';
  constructor(
    message: string,
    readonly code: number | undefined,
  ) {
    super(message);
  }
}

export class StreamPublisher {
  private readonly prefix: string;
  private readonly awaited = new Map<number, Awaited>();
  private next = 1;
  private subscription: Subscription | undefined;
  private sweep: unknown;

  constructor(
    private readonly nc: NatsConnection,
    private readonly clock: Clock,
  ) {
    this.prefix = `${createInbox()}.`;
  }

  start(): void {
    this.subscription = this.nc.subscribe(`${this.prefix}*`, {
      callback: (err, msg) => {
        if (!err) this.answer(msg);
      },
    });
  }

  /**
   * Publishes `data` to `subject` with `Nats-Msg-Id: msgID` and resolves when
   * the stream acknowledged it (also as a duplicate). Rejects with
   * PubAckTimeoutError after `timeoutMs`, with PubAckRefusedError when the
   * stream refuses it, and with the client's error when the connection is
   * closed. A message without a stream gets "no responders" (code 503).
   */
  publish(
    subject: string,
    data: Uint8Array,
    msgID: string,
    timeoutMs: number,
  ): Promise<void> {
    const token = this.next++;
    return new Promise<void>((resolve, reject) => {
      const h = headers();
      h.set('Nats-Msg-Id', msgID);
      try {
        this.nc.publish(subject, data, {
          reply: `${this.prefix}${token}`,
          headers: h,
        });
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      this.awaited.set(token, {
        deadline: this.clock.now() + timeoutMs,
        resolve,
        reject,
      });
      this.armSweep();
    });
  }

  private answer(msg: Msg): void {
    const token = Number(msg.subject.slice(this.prefix.length));
    const awaited = this.awaited.get(token);
    // A PubAck after its timeout: the caller has moved on (and retries).
    if (awaited === undefined) return;
    this.awaited.delete(token);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      awaited.reject(
        new PubAckRefusedError(
          `no responders: no stream captures the subject`,
          503,
        ),
      );
      return;
    }
    let ack: { error?: { code?: number; description?: string } };
    try {
      ack = JSON.parse(new TextDecoder().decode(msg.data)) as typeof ack;
    } catch {
      awaited.reject(new PubAckRefusedError('an unreadable PubAck', undefined));
      return;
    }
    if (ack.error !== undefined) {
      awaited.reject(
        new PubAckRefusedError(
          ack.error.description ?? 'the stream refused the message',
          ack.error.code,
        ),
      );
      return;
    }
    awaited.resolve();
  }

  private armSweep(): void {
    if (this.sweep !== undefined) return;
    this.sweep = this.clock.setTimeout(() => {
      this.sweep = undefined;
      const now = this.clock.now();
      for (const [token, awaited] of this.awaited) {
        if (awaited.deadline > now) continue;
        this.awaited.delete(token);
        awaited.reject(
          new PubAckTimeoutError('timeout waiting for the PubAck'),
        );
      }
      if (this.awaited.size > 0) this.armSweep();
    }, SWEEP_MS);
  }

  /** Fails every awaited PubAck and stops listening. */
  close(): void {
    this.subscription?.unsubscribe();
    if (this.sweep !== undefined) this.clock.clearTimeout(this.sweep);
    this.sweep = undefined;
    for (const awaited of this.awaited.values()) {
      awaited.reject(new Error('closed: the publisher stopped'));
    }
    this.awaited.clear();
  }
}
