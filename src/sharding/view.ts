/**
 * A node's local view of the cluster KV bucket, fed by one watch of the
 * whole bucket: node records with the local time each revision was first
 * seen, shard records, and the newest revision seen per shard (deletes
 * included), which is what fencing compares tokens against.
 *
 * The view can lag and, because the bucket keeps one revision per key, a
 * slow watch may skip intermediate revisions, so two keys in the view need
 * not show the same instant. Decisions that must be safe therefore rest on
 * compare-and-set against a revision of a single key, plus a fresh read
 * where a second key matters (see `confirmDead` in membership.ts).
 * @internal
 */
import type { Logger } from 'pino';

import type { Clock } from '../system/clock.js';
import type { ClusterKv, KvWatch, KvWatchEvent } from './kv.js';
import {
  CONFIG_KEY,
  decodeConfigRecord,
  decodeNodeRecord,
  decodeShardRecord,
  NODES_PREFIX,
  parseShardKey,
  type ConfigRecord,
  type Decoded,
  type NodeRecord,
  type ShardRecord,
} from './records.js';

export interface NodeView {
  readonly nodeId: string;
  readonly revision: number;
  /** Local (monotonic) time when this revision was first seen. */
  readonly seenAt: number;
  readonly record: NodeRecord | undefined;
  /** Why the record could not be read, when it could not. */
  readonly invalid: string | undefined;
}

export interface ShardView {
  readonly revision: number;
  readonly record: ShardRecord | undefined;
  readonly invalid: string | undefined;
}

/** What a change touched, so the coordinator knows what to re-check. */
export type ViewChange =
  | {
      readonly kind: 'node';
      readonly nodeId: string;
      /** Revision of the write; undefined for a key found gone after a resync. */
      readonly revision: number | undefined;
    }
  | { readonly kind: 'shard'; readonly shard: number }
  | { readonly kind: 'config' }
  | { readonly kind: 'other'; readonly key: string };

export class ClusterView {
  readonly nodes = new Map<string, NodeView>();
  readonly shards = new Map<number, ShardView>();
  config: Decoded<ConfigRecord> | undefined;
  private readonly newestRevision: Float64Array;
  private resyncing: Set<string> | undefined;

  constructor(readonly shardCount: number) {
    this.newestRevision = new Float64Array(shardCount);
  }

  /** The newest revision of `shards.<shard>` seen, delete markers included; 0 if none. */
  newestShardRevision(shard: number): number {
    return this.newestRevision[shard] ?? 0;
  }

  put(
    key: string,
    value: Uint8Array,
    revision: number,
    now: number,
  ): ViewChange {
    this.resyncing?.delete(key);
    if (key.startsWith(NODES_PREFIX)) {
      const nodeId = key.slice(NODES_PREFIX.length);
      const previous = this.nodes.get(nodeId);
      if (previous?.revision === revision)
        return { kind: 'node', nodeId, revision };
      const decoded = decodeNodeRecord(value, key);
      this.nodes.set(nodeId, {
        nodeId,
        revision,
        seenAt: now,
        record: decoded.ok ? decoded.record : undefined,
        invalid: decoded.ok ? undefined : decoded.reason,
      });
      return { kind: 'node', nodeId, revision };
    }
    const shard = parseShardKey(key, this.shardCount);
    if (shard !== undefined) {
      this.noteShardRevision(shard, revision);
      const decoded = decodeShardRecord(value);
      this.shards.set(shard, {
        revision,
        record: decoded.ok ? decoded.record : undefined,
        invalid: decoded.ok ? undefined : decoded.reason,
      });
      return { kind: 'shard', shard };
    }
    if (key === CONFIG_KEY) {
      this.config = decodeConfigRecord(value);
      return { kind: 'config' };
    }
    return { kind: 'other', key };
  }

  delete(key: string, revision: number | undefined): ViewChange {
    this.resyncing?.delete(key);
    if (key.startsWith(NODES_PREFIX)) {
      const nodeId = key.slice(NODES_PREFIX.length);
      this.nodes.delete(nodeId);
      return { kind: 'node', nodeId, revision };
    }
    const shard = parseShardKey(key, this.shardCount);
    if (shard !== undefined) {
      if (revision !== undefined) this.noteShardRevision(shard, revision);
      this.shards.delete(shard);
      return { kind: 'shard', shard };
    }
    if (key === CONFIG_KEY) {
      this.config = undefined;
      return { kind: 'config' };
    }
    return { kind: 'other', key };
  }

  /** A new watch is about to deliver every live key again. */
  beginResync(): void {
    this.resyncing = new Set<string>([
      ...[...this.nodes.keys()].map((id) => `${NODES_PREFIX}${id}`),
      ...[...this.shards.keys()].map((shard) => `shards.${shard}`),
      ...(this.config === undefined ? [] : [CONFIG_KEY]),
    ]);
  }

  /** The new watch is ready: keys it did not deliver were deleted meanwhile. */
  endResync(): ViewChange[] {
    const gone = this.resyncing;
    this.resyncing = undefined;
    if (gone === undefined) return [];
    return [...gone].map((key) => this.delete(key, undefined));
  }

  private noteShardRevision(shard: number, revision: number): void {
    if (revision > (this.newestRevision[shard] ?? 0)) {
      this.newestRevision[shard] = revision;
    }
  }
}

/** What a {@link ViewFeed} reports to its owner. @internal */
export interface ViewFeedEvents {
  /** A key changed in the view. */
  changed(change: ViewChange): void;
  /** The watch caught up (`ready`) or lost the store (`interrupted`). */
  readinessChanged(): void;
  /** Called after every event, once the view is updated. */
  delivered(): void;
  /** Wait before watching again after the watch failed. */
  readonly retryMs: number;
}

/**
 * Keeps a {@link ClusterView} fed from one watch of the whole bucket. If the
 * watch fails (it fell too far behind, or the store is gone for good), a new
 * one is started after `retryMs` and the view resynchronised: keys the new
 * watch does not deliver were deleted meanwhile.
 * @internal
 */
export class ViewFeed {
  /** The watch has delivered everything the store held (and is connected). */
  ready = false;
  /** The view was complete at least once: decisions may rest on it. */
  complete = false;
  private watch: KvWatch | undefined;
  private firstReady: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly view: ClusterView,
    private readonly kv: ClusterKv,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly events: ViewFeedEvents,
  ) {}

  /** Starts watching; resolves when the first complete view is in (or on stop). */
  async open(attempt = 0): Promise<void> {
    let watch: KvWatch;
    try {
      watch = await this.kv.watch('');
    } catch (err) {
      if (this.stopped) return;
      this.log.warn({ err, attempt }, 'cannot watch the cluster KV; retrying');
      await this.delay(Math.min(2_000, 100 * 2 ** attempt));
      if (this.stopped) return;
      return this.open(attempt + 1);
    }
    if (this.stopped) {
      await watch.stop();
      return;
    }
    this.watch = watch;
    if (this.complete) this.view.beginResync();
    const ready = new Promise<void>((resolve) => {
      this.firstReady = resolve;
    });
    void this.consume(watch);
    await ready;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.firstReady?.();
    const watch = this.watch;
    this.watch = undefined;
    await watch?.stop();
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimeout(resolve, ms));
  }

  private async consume(watch: KvWatch): Promise<void> {
    try {
      for await (const event of watch) {
        if (this.watch !== watch) return;
        this.apply(event);
        this.events.delivered();
      }
    } catch (err) {
      this.log.warn({ err }, 'the cluster KV watch failed; watching again');
    }
    if (this.watch !== watch || this.stopped) return;
    this.watch = undefined;
    this.ready = false;
    this.events.readinessChanged();
    await this.delay(this.events.retryMs);
    if (!this.stopped) void this.open();
  }

  private apply(event: KvWatchEvent): void {
    switch (event.kind) {
      case 'put':
        this.events.changed(
          this.view.put(
            event.key,
            event.value,
            event.revision,
            this.clock.now(),
          ),
        );
        break;
      case 'delete':
        this.events.changed(this.view.delete(event.key, event.revision));
        break;
      case 'ready':
        for (const change of this.view.endResync()) this.events.changed(change);
        this.ready = true;
        this.complete = true;
        this.events.readinessChanged();
        this.firstReady?.();
        this.firstReady = undefined;
        break;
      case 'interrupted':
        this.ready = false;
        this.events.readinessChanged();
        break;
    }
  }
}
