/**
 * The owner side of `subscribe` on clustered refs: the entities of owned
 * shards that other nodes watch, each publishing its new states on its
 * shard's `state.<n>` subject (see state-feed.ts for the watching side).
 *
 * A watch is one listener on the local core per entity, whatever the number
 * of watchers: every watcher of a shard listens on the same subject, so one
 * publish per state reaches them all. Each watcher's registration lapses
 * `ttlMs` after its last renewal; the entity's listener goes with the last
 * one. A node drops the watches of a shard it releases or loses and all of
 * them when it leaves: the watchers find the new owner at their next
 * renewal, or at once when it announces the shard (a `moved` message).
 */
import { ClusterError } from '../../errors.js';
import type { SystemCore } from '../../system/actor-system.js';
import type { Clock } from '../../system/clock.js';
import type { EntityState } from '../../system/types.js';
import { checkEntityId } from '../../system/validate.js';
import { encodeMessage, type WatchQuery } from '../protocol.js';

interface EntityWatch {
  readonly k: string;
  readonly type: string;
  readonly id: string;
  readonly shard: number;
  /** Watcher -> when its registration lapses (clock ms). */
  readonly watchers: Map<string, number>;
  /** Removes the listener from the core. */
  readonly off: () => void;
  /** Seq of the last state published (-1: none yet). */
  lastSeq: number;
  timer: unknown;
  timerAt: number;
}

export class WatchRegistry {
  private readonly watches = new Map<string, EntityWatch>();
  private registrations = 0;

  /**
   * @param watchesMax Watcher registrations this node keeps at most, over
   * all its entities (`cluster.watchesMax`). A registration costs a map
   * entry and, per entity, a core listener and a timer; the bound keeps a
   * runaway client from growing that without end. Past it a new watch is
   * refused with the retryable WATCHES_FULL: its subscriber keeps retrying
   * and gets states once registrations lapse.
   */
  constructor(
    private readonly clock: Clock,
    private readonly watchesMax: number,
    private readonly bytesMax: number,
    /** Publishes bytes on shard n's state subject (must not throw). */
    private readonly publish: (shard: number, bytes: Uint8Array) => void,
  ) {}

  /** Watched entities. */
  get size(): number {
    return this.watches.size;
  }

  /**
   * Registers or renews `query.watcher`'s watch of the entity and answers
   * with its current state when the watcher may lack it (see WatchQuery).
   * Registers before it reads, so no state falls between the read and the
   * first publish. The caller has checked that this node owns the shard.
   */
  async watch(
    core: SystemCore,
    query: WatchQuery,
    shard: number,
  ): Promise<{ state?: EntityState; value?: unknown }> {
    core.checkRunning();
    core.typeOf(query.type);
    checkEntityId(query.type, query.id);
    const k = core.keyString(query.type, query.id);
    let watch = this.watches.get(k);
    const now = this.clock.now();
    const known = (watch?.watchers.get(query.watcher) ?? -Infinity) > now;
    if (!watch?.watchers.has(query.watcher)) {
      if (this.registrations >= this.watchesMax) {
        throw new ClusterError(
          'WATCHES_FULL',
          `This node keeps ${this.watchesMax} entity watches already (cluster.watchesMax); the subscription to ${query.type}/${query.id} retries until some lapse. Unsubscribe what you no longer watch, or raise watchesMax on the owners.`,
          {
            retryable: true,
            details: {
              type: query.type,
              id: query.id,
              limit: this.watchesMax,
            },
          },
        );
      }
      this.registrations++;
    }
    if (watch === undefined) {
      const entry: EntityWatch = {
        k,
        type: query.type,
        id: query.id,
        shard,
        watchers: new Map(),
        off: core.subscribe(k, {
          next: (state) => this.published(entry, state),
        }),
        lastSeq: -1,
        timer: undefined,
        timerAt: Infinity,
      };
      this.watches.set(k, (watch = entry));
    }
    watch.watchers.set(query.watcher, now + query.ttlMs);
    this.arm(watch);
    if (known && watch.lastSeq <= query.seq) return { value: 'renewed' };
    try {
      const state = (
        await core.queryLocal({
          op: 'snapshot',
          type: query.type,
          id: query.id,
        })
      ).state;
      return { state, value: 'watching' };
    } catch (error) {
      // The watcher gives up on a lasting error and retries a passing one
      // (which registers it again): keep no registration for it here.
      if (!known) this.unregister(watch, query.watcher);
      throw error;
    }
  }

  private published(watch: EntityWatch, state: EntityState): void {
    watch.lastSeq = state.seq;
    let bytes = encodeMessage({
      k: 'state',
      type: watch.type,
      id: watch.id,
      seq: state.seq,
      state,
    });
    if (bytes.length > this.bytesMax) {
      bytes = encodeMessage({
        k: 'state',
        type: watch.type,
        id: watch.id,
        seq: state.seq,
      });
    }
    this.publish(watch.shard, bytes);
  }

  /**
   * Arms the watch's timer at its earliest lapse. A renewal only moves a
   * lapse later, so the timer armed for an earlier one stays and re-arms
   * when it fires: no timer churn per renewal.
   */
  private arm(watch: EntityWatch): void {
    let next = Infinity;
    for (const at of watch.watchers.values()) next = Math.min(next, at);
    if (next === Infinity || next >= watch.timerAt) return;
    if (watch.timer !== undefined) this.clock.clearTimeout(watch.timer);
    watch.timerAt = next;
    watch.timer = this.clock.setTimeout(
      () => {
        watch.timer = undefined;
        watch.timerAt = Infinity;
        const now = this.clock.now();
        for (const [watcher, at] of watch.watchers)
          if (at <= now) this.unregister(watch, watcher);
        if (this.watches.get(watch.k) === watch) this.arm(watch);
      },
      Math.max(0, next - this.clock.now()),
    );
  }

  private unregister(watch: EntityWatch, watcher: string): void {
    if (!watch.watchers.delete(watcher)) return;
    this.registrations--;
    if (watch.watchers.size === 0) this.remove(watch);
  }

  private remove(watch: EntityWatch): void {
    if (this.watches.get(watch.k) !== watch) return;
    this.watches.delete(watch.k);
    this.registrations -= watch.watchers.size;
    watch.watchers.clear();
    watch.off();
    if (watch.timer !== undefined) this.clock.clearTimeout(watch.timer);
    watch.timer = undefined;
    watch.timerAt = Infinity;
  }

  /** Drops the watches of shard n (released or lost: its new owner takes over). */
  dropShard(shard: number): void {
    for (const watch of [...this.watches.values()])
      if (watch.shard === shard) this.remove(watch);
  }

  /** Drops every watch (the node leaves). */
  dropAll(): void {
    for (const watch of [...this.watches.values()]) this.remove(watch);
  }
}
