import type { Logger } from 'pino';
import { ConfigError, EntityError, TimeoutError } from '../errors.js';
import type {
  EntityKey,
  OutboxMessage,
  PendingOutboxMessage,
} from '../persistence/types.js';
import type { Clock } from './clock.js';
import {
  publishDefaults,
  type PublishedMessage,
  type Publisher,
} from './publish.js';

/**
 * Delivery of published messages (see publish.ts for the design): the
 * system's {@link Publishing} calls the publisher with a timeout; each
 * entity's {@link Outbox} keeps its undelivered messages and delivers them
 * in order, one at a time, once durable, retrying with backoff.
 */

/**
 * Sends are refused while `pendingMax` messages of the entity wait for a
 * failing or slow publisher.
 *
 * @internal
 */
export function outboxFull(key: EntityKey, pendingMax: number): EntityError {
  return new EntityError(
    'OUTBOX_FULL',
    `${key.type}/${key.id} has ${pendingMax} published messages waiting for delivery (publishPendingMax): the publisher is failing or slow. Retry later; check the publisher and the logs.`,
    { retryable: true, details: { key, publishPendingMax: pendingMax } },
  );
}

function escapeIdPart(part: string): string {
  if (!part.includes('/') && !part.includes('%')) return part;
  return part.replace(/%/g, '%25').replace(/\//g, '%2F');
}

/**
 * The message id of the `index`-th message of entry `seq` of `entity`:
 * `<system>/<type>/<id>/<seq>/<index>`, e.g. `shop/order/o-1/3/0`.
 */
function publishedMessageId(
  system: string,
  entity: EntityKey,
  seq: number,
  index: number,
): string {
  return `${system}/${escapeIdPart(entity.type)}/${escapeIdPart(entity.id)}/${seq}/${index}`;
}

/** Resolved publishing options. @internal */
export interface PublishOptions {
  timeoutMs: number;
  backoffMs: number;
  pendingMax: number;
}

/** Counters the system reports in `stats()`. @internal */
export interface PublishStats {
  published: number;
  publishFailures: number;
}

/**
 * The system's side of publishing: which publisher delivers, with which
 * timeout. One per system; each entity's {@link Outbox} calls `deliver`.
 *
 * @internal
 */
export class Publishing {
  private publisher: Publisher | undefined;
  /** The `publisher` option was given: it wins over `setPublisher`. */
  private readonly explicit: boolean;
  private warnedNone = false;

  constructor(
    readonly system: string,
    readonly clock: Clock,
    readonly log: Logger,
    readonly options: PublishOptions,
    readonly stats: PublishStats,
    publisher: Publisher | undefined,
    /** A publisher will be set (a cluster node sets one): wait for it instead of dropping. */
    private readonly expectPublisher: boolean,
  ) {
    if (publisher !== undefined && typeof publisher !== 'function') {
      throw new ConfigError(
        'Option "publisher" must be a function (message) => Promise<void>.',
      );
    }
    this.publisher = publisher;
    this.explicit = publisher !== undefined;
  }

  /**
   * Sets the publisher unless the `publisher` option gave one (a cluster
   * node calls this with its NATS publisher).
   */
  setPublisher(publisher: Publisher): void {
    if (typeof publisher !== 'function') {
      throw new ConfigError(
        'setPublisher expects a function (message) => Promise<void>.',
      );
    }
    if (!this.explicit) this.publisher = publisher;
  }

  /** Hands one message to the publisher; rejects on failure or timeout. */
  deliver(message: PublishedMessage): Promise<void> {
    const publisher = this.publisher;
    if (publisher === undefined) {
      if (this.expectPublisher) {
        return Promise.reject(
          new Error('the cluster node has not set its publisher yet'),
        );
      }
      if (!this.warnedNone) {
        this.warnedNone = true;
        this.log.warn(
          {
            type: message.entity.type,
            id: message.entity.id,
            subject: message.subject,
          },
          'a machine published a message but the system has no `publisher` option: published messages stay in the journal only; pass createActorSystem({ publisher }) to deliver them',
        );
      }
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = this.clock.setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(
          new TimeoutError(
            `The publisher did not settle within ${this.options.timeoutMs} ms (publishTimeoutMs); the message is retried.`,
            { details: { id: message.id, subject: message.subject } },
          ),
        );
      }, this.options.timeoutMs);
      const done = (error?: unknown): void => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(timer);
        if (error === undefined) resolve();
        else
          reject(
            error instanceof Error
              ? error
              : new Error('the publisher failed', { cause: error }),
          );
      };
      try {
        Promise.resolve(publisher(message)).then(
          () => done(),
          (error: unknown) =>
            done(error ?? new Error('the publisher rejected')),
        );
      } catch (error) {
        done(error ?? new Error('the publisher threw'));
      }
    });
  }
}

/** Identifies attempts, so a late answer to a timed-out one is ignored. */
let attemptCounter = 0;

/**
 * The messages of one entity that are waiting for delivery, oldest first,
 * and the loop that delivers them. Created with the entity's first message:
 * most entities never publish.
 *
 * @internal
 */
export class Outbox {
  /** Waiting messages; those before `head` are delivered and dropped lazily. */
  private items: PendingOutboxMessage[] = [];
  private head = 0;
  /** Messages of entries up to this seq are durable. */
  private durableSeq = 0;
  /** Messages of the initial state (seq 0) are durable: a snapshot holds them. */
  private initDurable = false;
  /** The last message delivered by this host, compared on reset. */
  private lastSeq = -1;
  private lastIndex = -1;
  /** The attempt in flight; 0 for none. */
  private attempt = 0;
  private retryTimer: unknown = undefined;
  private retryAt = 0;
  private failures = 0;
  private waiters: (() => void)[] | undefined;
  private closed = false;
  /** The entity's timer-index entry may be due for undelivered messages. */
  indexed = false;

  constructor(
    private readonly key: EntityKey,
    private readonly p: Publishing,
  ) {}

  /** Messages not yet delivered. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** A publisher call is in flight. */
  get inFlight(): boolean {
    return this.attempt !== 0;
  }

  /** Adds the messages of entry `seq` (applied at `at`); not durable yet. */
  add(seq: number, at: number, messages: readonly OutboxMessage[]): void {
    for (let index = 0; index < messages.length; index++) {
      this.items.push({ ...messages[index]!, seq, index, at });
    }
  }

  /**
   * Starts over from what recovery found (all durable), skipping what this
   * host delivered already (the entity restarted after a failure).
   */
  reset(recovered: readonly PendingOutboxMessage[], durableSeq: number): void {
    this.items = recovered.filter((m) => this.isAfterDelivered(m));
    this.head = 0;
    this.durableSeq = durableSeq;
    this.initDurable = true;
    this.closed = false;
    this.pump();
  }

  /** Everything up to `seq` is durable (and seq-0 messages too when a snapshot went with it). */
  durable(seq: number, withSnapshot: boolean): void {
    if (seq > this.durableSeq) this.durableSeq = seq;
    if (withSnapshot) this.initDurable = true;
    this.pump();
  }

  /**
   * The entity failed: messages of entries that never became durable are
   * gone with the live actor.
   */
  dropUndurable(): void {
    let n = this.items.length;
    while (n > this.head && !this.isDurable(this.items[n - 1]!)) n--;
    this.items.length = n;
  }

  /** The undelivered messages, for a snapshot. */
  pending(): PendingOutboxMessage[] {
    return this.items.slice(this.head);
  }

  /**
   * The timer-index deadline the outbox needs: now (or the next retry) while
   * messages wait, else null. Records whether the index is now due.
   */
  indexDeadline(now: number): number | null {
    this.indexed = this.size > 0;
    if (!this.indexed) return null;
    return this.retryTimer !== undefined ? Math.max(now, this.retryAt) : now;
  }

  /**
   * Delivers what is deliverable now, in order; resolves when nothing
   * deliverable is left or at the first failure. A retry waiting for its
   * backoff is tried at once.
   */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.retryTimer !== undefined) {
      this.p.clock.clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.pump();
    }
    if (this.attempt === 0) return Promise.resolve();
    return new Promise((resolve) => (this.waiters ??= []).push(resolve));
  }

  /** Stops delivering (the host let go of the entity). */
  close(): void {
    this.closed = true;
    this.attempt = 0;
    if (this.retryTimer !== undefined) {
      this.p.clock.clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.wake();
  }

  private isDurable(m: PendingOutboxMessage): boolean {
    return m.seq === 0 ? this.initDurable : m.seq <= this.durableSeq;
  }

  private isAfterDelivered(m: PendingOutboxMessage): boolean {
    return (
      m.seq > this.lastSeq ||
      (m.seq === this.lastSeq && m.index > this.lastIndex)
    );
  }

  /** Moves past messages already delivered (the head, or some after a reset). */
  private skipDelivered(): void {
    while (
      this.head < this.items.length &&
      !this.isAfterDelivered(this.items[this.head]!)
    )
      this.head++;
    this.compact();
  }

  private pump(): void {
    if (this.closed || this.attempt !== 0 || this.retryTimer !== undefined)
      return;
    this.skipDelivered();
    const m = this.items[this.head];
    if (m === undefined || !this.isDurable(m)) {
      this.wake();
      return;
    }
    const token = ++attemptCounter;
    this.attempt = token;
    const message: PublishedMessage = {
      id: publishedMessageId(this.p.system, this.key, m.seq, m.index),
      subject: m.subject,
      data: m.data,
      headers: m.headers,
      entity: this.key,
      seq: m.seq,
      index: m.index,
      at: m.at,
    };
    this.p.deliver(message).then(
      () => this.delivered(token, m),
      (error: unknown) => this.failed(token, m, error),
    );
  }

  private delivered(token: number, m: PendingOutboxMessage): void {
    if (token !== this.attempt) return;
    this.attempt = 0;
    this.failures = 0;
    this.p.stats.published++;
    if (this.isAfterDelivered(m)) {
      this.lastSeq = m.seq;
      this.lastIndex = m.index;
    }
    this.skipDelivered();
    this.pump();
  }

  private failed(token: number, m: PendingOutboxMessage, error: unknown): void {
    if (token !== this.attempt) return;
    this.attempt = 0;
    this.failures++;
    this.p.stats.publishFailures++;
    const { backoffMs } = this.p.options;
    const delay = Math.min(
      backoffMs * 2 ** Math.min(this.failures - 1, 30),
      publishDefaults.backoffMsMax,
    );
    this.p.log.warn(
      {
        type: this.key.type,
        id: this.key.id,
        seq: m.seq,
        subject: m.subject,
        err: error,
        failures: this.failures,
        retryInMs: delay,
      },
      'publishing a message failed; retrying',
    );
    this.retryAt = this.p.clock.now() + delay;
    this.retryTimer = this.p.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.pump();
    }, delay);
    this.wake();
  }

  private wake(): void {
    const ws = this.waiters;
    if (ws === undefined) return;
    this.waiters = undefined;
    for (const w of ws) w();
  }

  /** Drops delivered messages once they are most of the array. */
  private compact(): void {
    if (this.head === 0) return;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 64 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
