/**
 * This node's side of shard ownership: the shards it holds, claims by
 * compare-and-set on `shards.<n>`, graceful handoff (drain, then release by
 * compare-and-set), losing shards at once, and the fence the store consults
 * on every write. The protocol and its safety argument are in
 * coordinator.ts.
 * @internal
 */
import { ClusterError } from '../errors.js';
import type { EntityKey, FenceToken } from '../persistence/types.js';
import type { LostReason } from './coordinator-options.js';
import type { CoordinatorContext } from './context.js';
import { isKvConflict } from './kv.js';
import type { Membership } from './membership.js';
import { encodeShardRecord, PROTOCOL_VERSION, shardKey } from './records.js';
import { shardOf } from './shard.js';

/**
 * A shard this node holds: `owned` (serving), `draining` (in onRelease,
 * still writing) or `released` (drained; the release is being stored).
 */
interface Holding {
  readonly revision: number;
  state: 'owned' | 'draining' | 'released';
}

const RELEASED = {
  v: PROTOCOL_VERSION,
  owner: null,
  incarnation: null,
} as const;

/** @internal */
export class Ownership {
  readonly counters = { acquired: 0, handedOff: 0, lost: 0 };
  private readonly held = new Map<number, Holding>();
  /** Shards with a claim (or a give-back of a record naming us) in flight. */
  private readonly busy = new Set<number>();
  /** Shards draining or with a release in flight; bounded by handoffConcurrency. */
  private readonly releasing = new Set<number>();
  /** Claims to retry no sooner than `at`, unless the record moves past `revision`. */
  private readonly retry = new Map<number, { at: number; revision: number }>();
  /** Releases of drained shards to retry no sooner than this. */
  private readonly releaseRetryAt = new Map<number, number>();
  /** Shards not to claim before this (the host failed to take them). */
  private readonly claimHoldoff = new Map<number, number>();

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly membership: Membership,
  ) {}

  private get nodeId(): string {
    return this.ctx.cfg.nodeId;
  }

  /** True when nothing is held and no claim is in flight (a leave is done). */
  idle(): boolean {
    return this.held.size === 0 && this.busy.size === 0;
  }

  /** Whether any shard is held (the lease end then matters to the loop). */
  holding(): boolean {
    return this.held.size > 0;
  }

  /** The earliest retry or holdoff after `now`, else Infinity. */
  nextWake(now: number): number {
    let at = Infinity;
    for (const { at: t } of this.retry.values())
      if (t > now) at = Math.min(at, t);
    for (const t of this.releaseRetryAt.values())
      if (t > now) at = Math.min(at, t);
    for (const t of this.claimHoldoff.values())
      if (t > now) at = Math.min(at, t);
    return at;
  }

  /**
   * One pass over every shard: hand over held shards whose target is
   * another node (a leaving node hands over everything), retry stored
   * releases, claim shards this node is the target of when free or when
   * their owner incarnation is dead, and give back records naming this
   * incarnation that it does not hold.
   */
  reconcile(now: number, targets: readonly string[] | undefined): void {
    const active = this.ctx.phase() === 'active';
    const leaseOk = this.membership.leaseValid(now);
    const healthy = this.ctx.healthy();
    const incarnation = this.membership.incarnation;
    for (let shard = 0; shard < this.ctx.cfg.shardCount; shard++) {
      const target = targets?.[shard];
      const holding = this.held.get(shard);
      if (holding !== undefined) {
        if (this.releasing.has(shard) || !leaseOk) continue;
        if (holding.state === 'released') {
          if ((this.releaseRetryAt.get(shard) ?? 0) <= now) {
            this.storeRelease(shard, holding);
          }
        } else if (
          holding.state === 'owned' &&
          healthy &&
          target !== this.nodeId &&
          (target !== undefined || !active) &&
          this.releasing.size < this.ctx.cfg.handoffConcurrency
        ) {
          this.handOff(shard, holding);
        }
        continue;
      }
      if (!leaseOk || this.busy.has(shard)) continue;
      if ((this.claimHoldoff.get(shard) ?? 0) > now) continue;
      const current = this.ctx.view.shards.get(shard);
      const revision = current?.revision ?? 0;
      const retry = this.retry.get(shard);
      if (
        retry !== undefined &&
        retry.at > now &&
        retry.revision === revision
      ) {
        continue;
      }
      const record = current?.record;
      const namesMe =
        record?.owner === this.nodeId && record.incarnation === incarnation;
      if (!active || target !== this.nodeId) {
        // A record naming this incarnation that it does not hold (a claim
        // whose reply was lost, or held before the lease lapsed): give it
        // back so the target can take it.
        if (namesMe) this.claim(shard, revision, undefined, true);
        continue;
      }
      if (this.busy.size >= this.ctx.cfg.claimConcurrency) continue;
      if (current === undefined) {
        this.claim(shard, undefined, undefined, false);
      } else if (record === undefined) {
        this.ctx.reportOnce(`shard:${shard}:${revision}`, () =>
          this.ctx.log.error(
            { shard, reason: current.invalid },
            `the owner record of shard ${shard} cannot be read; it is left alone until an operator removes KV key ${shardKey(shard)}`,
          ),
        );
      } else if (record.owner === null || namesMe) {
        this.claim(shard, revision, undefined, false);
      } else {
        const owner = {
          nodeId: record.owner,
          incarnation: record.incarnation as string,
        };
        if (this.membership.deadByView(owner.nodeId, owner.incarnation)) {
          this.claim(shard, revision, owner, false);
        }
      }
    }
  }

  /**
   * Claims `shard` by compare-and-set (create when `expected` is undefined),
   * or with `giveBack` writes `owner: null` over a record naming us. When the
   * claim rests on a dead owner, that owner's record is re-read first.
   */
  private claim(
    shard: number,
    expected: number | undefined,
    deadOwner: { nodeId: string; incarnation: string } | undefined,
    giveBack: boolean,
  ): void {
    this.busy.add(shard);
    const incarnation = this.membership.incarnation;
    const key = shardKey(shard);
    const backOff = (): void => {
      this.retry.set(shard, {
        at: this.ctx.clock.now() + this.ctx.cfg.heartbeatIntervalMs,
        revision: expected ?? 0,
      });
    };
    const run = async (): Promise<void> => {
      if (
        deadOwner !== undefined &&
        !(await this.membership.confirmDead(
          deadOwner.nodeId,
          deadOwner.incarnation,
        ))
      ) {
        backOff(); // the owner is alive after all: our view lagged
        return;
      }
      if (
        !this.membership.leaseValid() ||
        incarnation !== this.membership.incarnation
      ) {
        return;
      }
      const value = encodeShardRecord(
        giveBack
          ? RELEASED
          : { v: PROTOCOL_VERSION, owner: this.nodeId, incarnation },
      );
      const revision =
        expected === undefined
          ? await this.ctx.kv.create(key, value)
          : await this.ctx.kv.update(key, value, expected);
      if (!giveBack) this.claimed(shard, revision, incarnation);
    };
    run()
      .catch((err: unknown) => {
        // A conflict means our view of the record is stale: wait for the
        // watch to bring the newer revision rather than retrying against
        // the same one. Other failures (store unreachable) back off too.
        backOff();
        if (!isKvConflict(err)) {
          this.ctx.log.debug({ err, shard }, 'claim failed; retrying');
        }
      })
      .finally(() => {
        this.busy.delete(shard);
        this.ctx.requestTick();
      });
  }

  private claimed(shard: number, revision: number, incarnation: string): void {
    if (
      this.ctx.phase() !== 'active' ||
      incarnation !== this.membership.incarnation ||
      !this.membership.leaseValid() ||
      this.held.has(shard) ||
      this.ctx.view.newestShardRevision(shard) > revision
    ) {
      // Too late to use (lease lapsed meanwhile, or the record moved on):
      // the record names us and a later pass gives it back or re-adopts it.
      return;
    }
    this.retry.delete(shard);
    const holding: Holding = { revision, state: 'owned' };
    this.held.set(shard, holding);
    this.counters.acquired++;
    this.ctx.log.debug({ shard, token: revision }, 'shard acquired');
    const abandon = (err: unknown): void => {
      this.ctx.log.error(
        { err, shard },
        'onAcquired failed; releasing the shard and not claiming it again for a lease TTL',
      );
      if (this.held.get(shard) !== holding || holding.state !== 'owned') return;
      holding.state = 'released';
      this.claimHoldoff.set(
        shard,
        this.ctx.clock.now() + this.ctx.cfg.leaseTtlMs,
      );
      this.ctx.requestTick();
    };
    try {
      const token: FenceToken = { shard, token: revision, node: this.nodeId };
      const result = this.ctx.options.onAcquired?.(shard, token);
      if (result instanceof Promise) result.catch(abandon);
    } catch (err) {
      abandon(err);
    }
  }

  /** Drains a shard (`onRelease`, bounded by handoffTimeoutMs), then releases it. */
  private handOff(shard: number, holding: Holding): void {
    holding.state = 'draining';
    this.releasing.add(shard);
    this.ctx.log.debug({ shard }, 'handing shard over');
    const failed = (err: unknown): void =>
      this.ctx.log.error(
        { err, shard },
        'onRelease failed; releasing the shard anyway',
      );
    const drain = new Promise<void>((resolve) => {
      const timer = this.ctx.clock.setTimeout(() => {
        this.ctx.log.warn(
          { shard, handoffTimeoutMs: this.ctx.cfg.handoffTimeoutMs },
          'onRelease did not finish in time; releasing the shard anyway',
        );
        resolve();
      }, this.ctx.cfg.handoffTimeoutMs);
      const done = (): void => {
        this.ctx.clock.clearTimeout(timer);
        resolve();
      };
      try {
        Promise.resolve(this.ctx.options.onRelease?.(shard)).then(
          done,
          (err: unknown) => {
            failed(err);
            done();
          },
        );
      } catch (err) {
        failed(err);
        done();
      }
    });
    void drain.then(() => {
      this.releasing.delete(shard);
      if (this.held.get(shard) !== holding) {
        this.ctx.requestTick(); // lost meanwhile; onLost was called
        return;
      }
      holding.state = 'released';
      this.counters.handedOff++;
      this.storeRelease(shard, holding);
    });
  }

  /** Writes `owner: null` for a drained shard; retried until it lands or the record moves on. */
  private storeRelease(shard: number, holding: Holding): void {
    if (!this.membership.leaseValid()) return;
    this.releasing.add(shard);
    this.ctx.kv
      .update(shardKey(shard), encodeShardRecord(RELEASED), holding.revision)
      .then(
        () => {
          if (this.held.get(shard) === holding) this.held.delete(shard);
          this.releaseRetryAt.delete(shard);
          this.ctx.log.debug({ shard }, 'shard released');
        },
        (err: unknown) => {
          if (!isKvConflict(err)) {
            const at =
              this.ctx.clock.now() + this.ctx.cfg.heartbeatIntervalMs / 2;
            this.releaseRetryAt.set(shard, at);
          } else if (this.held.get(shard) === holding) {
            this.held.delete(shard);
          }
        },
      )
      .finally(() => {
        this.releasing.delete(shard);
        this.ctx.requestTick();
      });
  }

  /**
   * The view shows a newer record for `shard`. A released shard was simply
   * released (or already claimed by its target); for any other holding
   * another node wrote the record, so this node stops serving it now.
   */
  shardChanged(shard: number): void {
    const holding = this.held.get(shard);
    if (holding === undefined) return;
    if (this.ctx.view.newestShardRevision(shard) <= holding.revision) return;
    this.held.delete(shard);
    if (holding.state !== 'released') this.callLost(shard, 'taken');
  }

  loseAll(reason: LostReason): void {
    for (const shard of [...this.held.keys()]) {
      const holding = this.held.get(shard) as Holding;
      this.held.delete(shard);
      if (holding.state !== 'released') this.callLost(shard, reason);
    }
  }

  private callLost(shard: number, reason: LostReason): void {
    this.counters.lost++;
    this.ctx.log.warn({ shard, reason }, 'shard lost');
    try {
      this.ctx.options.onLost?.(shard, reason);
    } catch (err) {
      this.ctx.log.error({ err, shard }, 'onLost threw');
    }
  }

  // --------------------------------------------------------------- fence

  owns(shard: number): boolean {
    const holding = this.held.get(shard);
    return (
      holding !== undefined &&
      holding.state !== 'released' &&
      this.membership.leaseValid()
    );
  }

  ownedShards(): number[] {
    if (!this.membership.leaseValid()) return [];
    return [...this.held.entries()]
      .filter(([, h]) => h.state !== 'released')
      .map(([shard]) => shard)
      .sort((a, b) => a - b);
  }

  releasingShards(): number[] {
    return [...this.held.entries()]
      .filter(([, h]) => h.state !== 'owned')
      .map(([shard]) => shard)
      .sort((a, b) => a - b);
  }

  tokenFor(key: EntityKey): FenceToken {
    const shard = shardOf(key.type, key.id, this.ctx.cfg.shardCount);
    const holding = this.held.get(shard);
    if (
      holding === undefined ||
      holding.state === 'released' ||
      !this.membership.leaseValid()
    ) {
      throw this.notOwner(shard, `${key.type}/${key.id}`);
    }
    return { shard, token: holding.revision, node: this.nodeId };
  }

  check(token: FenceToken): void {
    if (token.node !== this.nodeId) {
      throw new ClusterError(
        'FENCED',
        `The write carries a fencing token of node "${token.node}", not of this node "${this.nodeId}": tokens are not transferable.`,
        { retryable: true, details: { ...token } },
      );
    }
    const newest = this.ctx.view.newestShardRevision(token.shard);
    if (newest > token.token) {
      throw new ClusterError(
        'FENCED',
        `The write to shard ${token.shard} carries fencing token ${token.token}, older than the owner record ${newest} seen since: another node owns the shard now. The write was refused; the new owner serves it.`,
        { retryable: true, details: { ...token, newest } },
      );
    }
    const holding = this.held.get(token.shard);
    if (
      holding === undefined ||
      holding.revision !== token.token ||
      holding.state === 'released' ||
      !this.membership.leaseValid()
    ) {
      throw this.notOwner(token.shard, `shard ${token.shard}`);
    }
  }

  private notOwner(shard: number, what: string): ClusterError {
    const lease = this.membership.leaseValid()
      ? 'holds a valid lease'
      : 'has no valid lease (heartbeats not acknowledged in time)';
    const owner = this.ctx.ownerOf(shard);
    return new ClusterError(
      'NOT_OWNER',
      `Node "${this.nodeId}" does not own ${what} (shard ${shard}) now and ${lease}. Retry: the send is routed to the shard's current owner${owner === undefined ? ' once it has one' : ''}.`,
      { retryable: true, details: { shard, node: this.nodeId, owner } },
    );
  }
}
