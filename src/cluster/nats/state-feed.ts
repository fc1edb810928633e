/**
 * The watching side of `subscribe` on clustered refs: the owner of a
 * watched entity pushes each new state on its shard's `state.<n>` subject
 * (see watch-registry.ts), and this node listens there.
 *
 * Per node, one core NATS subscription per shard subject, shared by every
 * watched entity of that shard, and one watch per entity, shared by every
 * local subscriber of it. A watch registers with the owner (a `watch`
 * query), renews every `WATCH_TTL_MS / 3`, and hands its subscribers each
 * state whose seq is higher than the last one they got: from a push, or
 * from a renewal's answer (the first one, one that went to a new owner, or
 * one after pushes were missed). Across an owner change, states applied
 * before the watch reached the new owner arrive as the newest of them.
 */
import type { Logger } from 'pino';
import type { Subscription, NatsConnection } from '@nats-io/transport-node';
import {
  ClusterError,
  EntityError,
  type ShardchartError,
} from '../../errors.js';
import type { Clock } from '../../system/clock.js';
import type { EntityState } from '../../system/types.js';
import { decodeMessage, type ClusterMessage } from '../protocol.js';
import type { Subjects } from '../subjects.js';

type Observer = {
  next?: (state: EntityState) => void;
  error?: (err: unknown) => void;
};

/**
 * How long an owner keeps a watch without a renewal. Renewals go every
 * third of it, so a watch outlives two lost or late renewals; when a
 * watching node dies, its owner publishes for at most this long. 3 s makes
 * a renewal one small request per watched entity per second, against the
 * ten reads a second of the polling it replaces.
 */
export const WATCH_TTL_MS = 3_000;

/** Delay before a failed registration or renewal is tried again (the shard moves). */
const RETRY_MS = 250;

function stoppedError(): EntityError {
  return new EntityError(
    'SYSTEM_STOPPED',
    'The actor system stopped; subscriptions to its entities end with it.',
  );
}

interface Subscriber {
  readonly observer: Observer;
  /** Seq of the last state this subscriber got (-1: none). */
  lastSeq: number;
}

interface Watch {
  readonly k: string;
  readonly type: string;
  readonly id: string;
  readonly shard: number;
  readonly subscribers: Set<Subscriber>;
  readonly log: Logger;
  readonly checkRunning: () => void;
  readonly stopping: () => boolean;
  /** Seq and state of the newest state received (-1: none). */
  lastSeq: number;
  latest: EntityState | undefined;
  timer: unknown;
  /** A registration or renewal is on its way to the owner. */
  renewing: boolean;
  /** Renew again as soon as the one on its way is answered. */
  again: boolean;
  closed: boolean;
}

/** What the feed needs from the router: the watch query. */
export interface WatchQuerier {
  watch(
    type: string,
    id: string,
    ttlMs: number,
    seq: number,
  ): Promise<EntityState | undefined>;
  shard(type: string, id: string): number;
}

/** What a subscriber's ref knows of its system (SystemCore's part). */
export interface WatchingSystem {
  readonly log: Logger;
  readonly stopping: boolean;
  checkRunning(): void;
}

export class StateFeed {
  private readonly watches = new Map<string, Watch>();
  private readonly shards = new Map<
    number,
    { sub: Subscription; watches: Set<Watch> }
  >();
  private closed = false;
  readonly stats = { statesReceived: 0, renewals: 0 };

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly limits: { bytesMax: number; depthMax: number },
    private readonly clock: Clock,
    private readonly querier: WatchQuerier,
    private readonly onInvalid: (error: ShardchartError, where: string) => void,
  ) {}

  /** Watched entities (with at least one local subscriber). */
  get size(): number {
    return this.watches.size;
  }

  /**
   * Delivers every new state of the entity to `observer`, the current one
   * first, until the returned function is called or a lasting error (given
   * to `observer.error`) ends it. Deliveries are never synchronous.
   */
  subscribe(
    system: WatchingSystem,
    type: string,
    id: string,
    observer: Observer,
  ): () => void {
    const k = `${type}\u0000${id}`;
    const subscriber: Subscriber = { observer, lastSeq: -1 };
    let watch = this.watches.get(k);
    if (watch === undefined) {
      watch = this.open(system, k, type, id);
    } else if (watch.latest !== undefined) {
      // Others watch it already: the newest state is the current one.
      const known = watch;
      queueMicrotask(() => {
        if (known.latest !== undefined && subscriber.lastSeq < 0)
          this.deliver(known, subscriber, known.latest);
      });
    }
    watch.subscribers.add(subscriber);
    const current = watch;
    return () => {
      if (!current.subscribers.delete(subscriber)) return;
      if (current.subscribers.size === 0) this.close(current);
    };
  }

  private open(
    system: WatchingSystem,
    k: string,
    type: string,
    id: string,
  ): Watch {
    const shard = this.querier.shard(type, id);
    const watch: Watch = {
      k,
      type,
      id,
      shard,
      subscribers: new Set(),
      log: system.log,
      checkRunning: () => system.checkRunning(),
      stopping: () => system.stopping,
      lastSeq: -1,
      latest: undefined,
      timer: undefined,
      renewing: false,
      again: false,
      closed: false,
    };
    this.watches.set(k, watch);
    // Asynchronously, as every delivery: the caller gets its unsubscribe
    // first, and its observer is in place for an error.
    if (this.closed) {
      queueMicrotask(() => this.fail(watch, stoppedError()));
      return watch;
    }
    let listening = this.shards.get(shard);
    if (listening === undefined) {
      const subject = this.subjects.state(shard);
      let sub: Subscription;
      try {
        sub = this.nc.subscribe(subject, {
          callback: (err, msg) => {
            if (!err) this.received(subject, msg.data);
          },
        });
      } catch (error) {
        // The connection is closed or draining: the node is stopping.
        const failure = new ClusterError(
          'CLUSTER_UNAVAILABLE',
          `Could not listen on ${subject} for the states of ${type}/${id} (${error instanceof Error ? error.message : String(error)}).`,
          { cause: error, retryable: true },
        );
        queueMicrotask(() => this.fail(watch, failure));
        return watch;
      }
      listening = { sub, watches: new Set() };
      this.shards.set(shard, listening);
    }
    listening.watches.add(watch);
    queueMicrotask(() => this.renew(watch));
    return watch;
  }

  private close(watch: Watch): void {
    if (watch.closed) return;
    watch.closed = true;
    if (watch.timer !== undefined) this.clock.clearTimeout(watch.timer);
    watch.timer = undefined;
    if (this.watches.get(watch.k) === watch) this.watches.delete(watch.k);
    const listening = this.shards.get(watch.shard);
    if (listening !== undefined && listening.watches.delete(watch)) {
      if (listening.watches.size === 0) {
        this.shards.delete(watch.shard);
        listening.sub.unsubscribe();
      }
    }
    // A renewal on its way is answered into a closed watch and dropped; the
    // owner's registration lapses after WATCH_TTL_MS.
  }

  private received(subject: string, data: Uint8Array): void {
    let message: ClusterMessage;
    try {
      message = decodeMessage(data, this.limits);
      if (message.k !== 'state' && message.k !== 'moved')
        throw new ClusterError(
          'MESSAGE_INVALID',
          `Only state and moved messages belong on ${subject}; got a "${message.k}" message.`,
        );
    } catch (error) {
      this.onInvalid(error as ShardchartError, subject);
      return;
    }
    if (message.k === 'moved') {
      // A new owner consumes the shard: register there now.
      for (const watch of this.shards.get(message.shard)?.watches ?? [])
        this.renew(watch);
      return;
    }
    const watch = this.watches.get(`${message.type}\u0000${message.id}`);
    // Another node's watch, or a shard subject carrying another shard's entity.
    if (watch === undefined || this.subjects.state(watch.shard) !== subject)
      return;
    this.stats.statesReceived++;
    if (message.state !== undefined) this.newState(watch, message.state);
    // Too large to publish: fetch it (the answer fails as a snapshot would).
    else if (message.seq > watch.lastSeq) this.renew(watch);
  }

  private newState(watch: Watch, state: EntityState): void {
    if (watch.closed || state.seq <= watch.lastSeq) return;
    watch.lastSeq = state.seq;
    watch.latest = state;
    for (const subscriber of [...watch.subscribers])
      this.deliver(watch, subscriber, state);
  }

  private deliver(
    watch: Watch,
    subscriber: Subscriber,
    state: EntityState,
  ): void {
    if (state.seq <= subscriber.lastSeq || !watch.subscribers.has(subscriber))
      return;
    subscriber.lastSeq = state.seq;
    try {
      subscriber.observer.next?.(state);
    } catch (error) {
      watch.log.error(
        { err: error },
        'an entity subscriber threw; it stays subscribed',
      );
    }
  }

  /** Registers or renews the watch with the owner, then schedules the next renewal. */
  private renew(watch: Watch): void {
    if (watch.closed) return;
    if (watch.renewing) {
      watch.again = true;
      return;
    }
    watch.renewing = true;
    watch.again = false;
    if (watch.timer !== undefined) this.clock.clearTimeout(watch.timer);
    watch.timer = undefined;
    this.stats.renewals++;
    const asked = (async () => {
      watch.checkRunning();
      return this.querier.watch(
        watch.type,
        watch.id,
        WATCH_TTL_MS,
        watch.lastSeq,
      );
    })();
    asked.then(
      (state) => {
        watch.renewing = false;
        if (watch.closed) return;
        if (state !== undefined) this.newState(watch, state);
        if (watch.again) this.renew(watch);
        else this.schedule(watch, WATCH_TTL_MS / 3);
      },
      (error: unknown) => {
        watch.renewing = false;
        if (watch.closed) return;
        // A moving shard answers again soon; anything else ends the watch.
        if (
          error instanceof Error &&
          (error as { retryable?: unknown }).retryable === true &&
          !watch.stopping() &&
          !this.closed
        ) {
          this.schedule(watch, watch.again ? 0 : RETRY_MS);
          return;
        }
        this.fail(watch, error);
      },
    );
  }

  private schedule(watch: Watch, ms: number): void {
    if (watch.timer !== undefined) this.clock.clearTimeout(watch.timer);
    watch.timer = this.clock.setTimeout(() => {
      watch.timer = undefined;
      this.renew(watch);
    }, ms);
  }

  private fail(watch: Watch, error: unknown): void {
    const subscribers = [...watch.subscribers];
    this.close(watch);
    for (const subscriber of subscribers) {
      try {
        subscriber.observer.error?.(error);
      } catch (thrown) {
        watch.log.error(
          { err: thrown },
          "an entity subscriber's error handler threw",
        );
      }
    }
  }

  /** The node leaves the cluster: every subscription ends with SYSTEM_STOPPED. */
  stop(): void {
    if (this.closed) return;
    this.closed = true;
    const error = stoppedError();
    for (const watch of [...this.watches.values()]) this.fail(watch, error);
  }
}
