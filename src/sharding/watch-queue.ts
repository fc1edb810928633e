/**
 * The queue behind every {@link KvWatch}: the store side pushes events, one
 * consumer takes them with `for await`. Bounded (a consumer that falls
 * `pendingMax` events behind ends the watch with a retryable error instead
 * of letting the queue grow without limit), single-owner (a second iteration
 * throws at once rather than silently splitting the events), and counted.
 */
import { ClusterError, ConfigError } from '../errors.js';
import type { KvWatch, KvWatchEvent } from './kv.js';

/** Default bound of a watch queue. */
export const WATCH_PENDING_MAX = 65_536;

/** @internal */
export class WatchQueue implements KvWatch {
  received = 0;
  processed = 0;
  private items: KvWatchEvent[] = [];
  private head = 0;
  private waiter:
    | {
        resolve: (result: IteratorResult<KvWatchEvent>) => void;
        reject: (err: unknown) => void;
      }
    | undefined;
  private ended = false;
  private failure: Error | undefined;
  private iterated = false;
  private stopping: Promise<void> | undefined;

  /**
   * @param pendingMax bound on queued events
   * @param onStop called once when the consumer or the store ends the watch,
   *   to release the store side (unsubscribe, delete the consumer)
   */
  constructor(
    private readonly pendingMax: number,
    private readonly onStop: () => Promise<void>,
  ) {
    if (!Number.isInteger(pendingMax) || pendingMax < 1) {
      throw new ConfigError(
        `pendingMax must be a positive integer, got ${String(pendingMax)}.`,
      );
    }
  }

  get pending(): number {
    return this.items.length - this.head;
  }

  /** True once the watch has ended (stopped, failed or overflowed). */
  get done(): boolean {
    return this.ended;
  }

  /** Queues an event; ignored after the watch ended. */
  push(event: KvWatchEvent): void {
    if (this.ended) return;
    this.received++;
    const waiter = this.waiter;
    if (waiter !== undefined && this.pending === 0) {
      this.waiter = undefined;
      this.processed++;
      waiter.resolve({ value: event, done: false });
      return;
    }
    if (this.pending >= this.pendingMax) {
      this.fail(
        new ClusterError(
          'CLUSTER_UNAVAILABLE',
          `The KV watch fell ${this.pendingMax} events behind its store and was ended: start a new watch, which delivers the current values again.`,
          { retryable: true, details: { pendingMax: this.pendingMax } },
        ),
      );
      return;
    }
    this.items.push(event);
  }

  /** Ends the watch with an error, delivered after the queued events. */
  fail(err: Error): void {
    if (this.ended) return;
    this.failure = err;
    this.finish();
  }

  stop(): Promise<void> {
    this.finish();
    return this.stopping ?? Promise.resolve();
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    const waiter = this.waiter;
    if (waiter !== undefined && this.pending === 0) {
      this.waiter = undefined;
      if (this.failure === undefined)
        waiter.resolve({ value: undefined, done: true });
      else waiter.reject(this.failure);
    }
    this.stopping = this.onStop().catch(() => undefined);
  }

  [Symbol.asyncIterator](): AsyncIterator<KvWatchEvent> {
    if (this.iterated) {
      throw new ConfigError(
        'This KV watch is already being iterated: a watch has one consumer. Start another watch for a second one.',
      );
    }
    this.iterated = true;
    return {
      next: () => {
        if (this.pending > 0) {
          const value = this.items[this.head] as KvWatchEvent;
          this.items[this.head] = undefined as unknown as KvWatchEvent;
          this.head++;
          if (this.head > 1_024 && this.head * 2 > this.items.length) {
            this.items = this.items.slice(this.head);
            this.head = 0;
          }
          this.processed++;
          return Promise.resolve({ value, done: false });
        }
        if (this.ended) {
          if (this.failure !== undefined) {
            const failure = this.failure;
            this.failure = undefined;
            return Promise.reject(failure);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this.waiter = { resolve, reject };
        });
      },
      return: async () => {
        await this.stop();
        return { value: undefined, done: true };
      },
    };
  }
}
