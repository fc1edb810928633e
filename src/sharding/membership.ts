/**
 * This node's side of membership: its record `nodes.<id>` (registration,
 * heartbeats by compare-and-set), its self-fencing lease, and the judgement
 * of other nodes (expiring a silent node by compare-and-set delete;
 * confirming an owner incarnation dead with a fresh read). The protocol and
 * its safety argument are in coordinator.ts.
 * @internal
 */
import { isKvConflict } from './kv.js';
import type { CoordinatorContext } from './context.js';
import {
  decodeNodeRecord,
  encodeNodeRecord,
  nodeKey,
  PROTOCOL_VERSION,
  type NodeRecord,
} from './records.js';

const DEAD_INCARNATIONS_MAX = 10_000;
const LOAD_ENTRIES_MAX = 32;

/** What membership tells the coordinator. @internal */
export interface MembershipEvents {
  /** The record is stored: this node is a member now. */
  joined(): void;
  /** Another node deleted our record: our lease is over. */
  expelled(): void;
  /** Another process wrote our node id with its own incarnation. */
  superseded(): void;
  /** Heartbeats started or stopped succeeding. */
  healthChanged(): void;
}

/** @internal */
export class Membership {
  /** Current incarnation; a new one after each expulsion (they never come back). */
  incarnation: string;
  /** False while registrations or heartbeats fail to reach the store. */
  heartbeatOk = true;
  nodesExpired = 0;
  private registrations = 0;
  private myRevision: number | undefined;
  private beat = 0;
  private leaseUntil = -Infinity;
  private lastHeartbeatAt = -Infinity;
  private heartbeatInFlight: Promise<void> | undefined;
  private registerInFlight = false;
  private readonly tombstoning = new Set<string>();
  private readonly deadIncarnations = new Set<string>();
  private readonly confirming = new Map<string, Promise<boolean>>();

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly events: MembershipEvents,
    private readonly processIncarnation: string,
    private readonly startedAt: number,
  ) {
    this.incarnation = processIncarnation;
  }

  private get nodeId(): string {
    return this.ctx.cfg.nodeId;
  }

  private member(): boolean {
    const phase = this.ctx.phase();
    return phase === 'active' || phase === 'leaving';
  }

  // ---------------------------------------------------------------- lease

  leaseValid(now = this.ctx.clock.now()): boolean {
    return this.member() && now < this.leaseUntil;
  }

  /** Local time the lease ends (-Infinity when there is none). */
  get leaseEnd(): number {
    return this.leaseUntil;
  }

  /** Ends the lease now; nothing sent after this counts as a sign of life. */
  endLease(): void {
    this.leaseUntil = -Infinity;
  }

  /** After an expulsion: a fresh incarnation, no record, no lease. */
  renew(): void {
    this.endLease();
    this.myRevision = undefined;
    this.incarnation = `${this.processIncarnation}.${++this.registrations}`;
  }

  /** When the next heartbeat is due (Infinity while one is in flight). */
  nextHeartbeat(): number {
    if (!this.member() || this.heartbeatInFlight !== undefined) return Infinity;
    return this.lastHeartbeatAt + this.ctx.cfg.heartbeatIntervalMs;
  }

  /** Publishes a heartbeat at the next tick (after a status change). */
  beatSoon(): void {
    this.lastHeartbeatAt = -Infinity;
  }

  // --------------------------------------------------- record and beats

  private record(status: NodeRecord['status']): Uint8Array {
    const load = this.ctx.options.load?.();
    return encodeNodeRecord({
      v: PROTOCOL_VERSION,
      nodeId: this.nodeId,
      incarnation: this.incarnation,
      startedAt: this.startedAt,
      types: this.ctx.cfg.types,
      leaseTtlMs: this.ctx.cfg.leaseTtlMs,
      weight: this.ctx.cfg.weight,
      status,
      beat: ++this.beat,
      ...(load === undefined
        ? {}
        : {
            load: Object.fromEntries(
              Object.entries(load).slice(0, LOAD_ENTRIES_MAX),
            ),
          }),
    });
  }

  /**
   * Registers (phase `joining`): creates our record, or replaces a previous
   * process's record with this node id once its lease has certainly run
   * out. The lease starts at the send time of the stored write.
   */
  register(now: number): void {
    if (this.registerInFlight) return;
    const mine = this.ctx.view.nodes.get(this.nodeId);
    if (mine !== undefined && mine.record?.incarnation === this.incarnation) {
      // Our own create whose reply was lost: the record is ours.
      this.myRevision = mine.revision;
      this.beatSoon();
      this.events.joined();
      return;
    }
    let expected: number | undefined;
    if (mine !== undefined) {
      if (mine.record === undefined) {
        this.ctx.reportOnce(`own:${mine.revision}`, () =>
          this.ctx.log.error(
            { reason: mine.invalid },
            `the record under this node id cannot be read; remove KV key ${nodeKey(this.nodeId)} to let this node join`,
          ),
        );
        return;
      }
      const deadline = this.ctx.deadline(mine);
      if (deadline === undefined || now < deadline) {
        this.ctx.reportOnce(`wait:${mine.record.incarnation}`, () =>
          this.ctx.log.info(
            { previous: mine.record?.incarnation },
            'waiting for the lease of a previous process with this node id to expire',
          ),
        );
        return;
      }
      expected = mine.revision;
    }
    this.registerInFlight = true;
    const value = this.record('active');
    const sentAt = this.ctx.clock.now();
    const key = nodeKey(this.nodeId);
    const write =
      expected === undefined
        ? this.ctx.kv.create(key, value)
        : this.ctx.kv.update(key, value, expected);
    write
      .then(
        (revision) => {
          if (this.ctx.phase() !== 'joining') {
            // Stopped while registering: take the record back so nobody
            // counts a member that will never heartbeat.
            void this.ctx.kv
              .delete(key, { expectedRevision: revision })
              .catch(() => undefined);
            return;
          }
          this.myRevision = revision;
          this.leaseUntil =
            sentAt + this.ctx.cfg.leaseTtlMs - this.ctx.cfg.safetyMarginMs;
          this.lastHeartbeatAt = sentAt;
          this.setHeartbeatOk(true);
          this.events.joined();
        },
        (err: unknown) => {
          if (isKvConflict(err)) return;
          this.setHeartbeatOk(false);
          this.ctx.log.debug({ err }, 'registration failed; retrying');
        },
      )
      .finally(() => {
        this.registerInFlight = false;
        this.ctx.requestTick();
      });
  }

  /** Rewrites our record by compare-and-set; an acknowledged beat extends the lease from its send time. */
  heartbeat(now: number): void {
    const expected = this.myRevision;
    if (expected === undefined || this.heartbeatInFlight !== undefined) return;
    this.lastHeartbeatAt = now;
    const incarnation = this.incarnation;
    const value = this.record(
      this.ctx.phase() === 'leaving' ? 'leaving' : 'active',
    );
    this.heartbeatInFlight = this.ctx.kv
      .update(nodeKey(this.nodeId), value, expected)
      .then(
        (revision) => {
          if (incarnation !== this.incarnation) return;
          // Kept even after a stop, so a graceful stop deletes the latest.
          this.myRevision = revision;
          if (!this.member()) return;
          this.leaseUntil = Math.max(
            this.leaseUntil,
            now + this.ctx.cfg.leaseTtlMs - this.ctx.cfg.safetyMarginMs,
          );
          this.setHeartbeatOk(true);
        },
        async (err: unknown) => {
          if (!isKvConflict(err)) {
            this.setHeartbeatOk(false);
            this.ctx.log.debug({ err }, 'heartbeat failed');
            return;
          }
          await this.resolveConflict(incarnation);
        },
      )
      .finally(() => {
        this.heartbeatInFlight = undefined;
        this.ctx.requestTick();
      });
  }

  private setHeartbeatOk(ok: boolean): void {
    if (this.heartbeatOk === ok) return;
    this.heartbeatOk = ok;
    this.events.healthChanged();
  }

  /** The heartbeat's compare-and-set lost: find out why from the record itself. */
  private async resolveConflict(incarnation: string): Promise<void> {
    let entry;
    try {
      entry = await this.ctx.kv.get(nodeKey(this.nodeId));
    } catch {
      this.setHeartbeatOk(false);
      return;
    }
    if (incarnation !== this.incarnation || !this.member()) return;
    if (entry === undefined) return this.events.expelled();
    const decoded = decodeNodeRecord(entry.value, nodeKey(this.nodeId));
    if (decoded.ok && decoded.record.incarnation === this.incarnation) {
      // Our own heartbeat whose reply was lost. Its send time is unknown,
      // so the lease is not extended; the next heartbeat goes out now.
      this.myRevision = entry.revision;
      this.beatSoon();
      return;
    }
    this.events.superseded();
  }

  /**
   * Our own record changed in the view. Only writes newer than our latest
   * heartbeat count: the watch may still be delivering older history (the
   * deletion of a predecessor's record, say). A key found gone after a
   * resync carries no revision and is left to the next heartbeat, whose
   * compare-and-set is the authority.
   */
  ownRecordChanged(revision: number | undefined): void {
    if (!this.member()) return;
    if (revision === undefined || revision <= (this.myRevision ?? 0)) return;
    const mine = this.ctx.view.nodes.get(this.nodeId);
    if (mine === undefined) this.events.expelled();
    else if (mine.record?.incarnation !== this.incarnation) {
      this.events.superseded();
    }
  }

  /** Waits for a heartbeat in flight, then deletes our record by compare-and-set. */
  async deleteRecord(): Promise<void> {
    const incarnation = this.incarnation;
    await this.heartbeatInFlight;
    const revision = this.myRevision;
    if (revision === undefined || incarnation !== this.incarnation) return;
    await this.ctx.kv
      .delete(nodeKey(this.nodeId), { expectedRevision: revision })
      .catch((err: unknown) => {
        this.ctx.log.debug(
          { err },
          'could not delete the membership record; it expires after the lease TTL',
        );
      });
  }

  // ----------------------------------------------------------- others

  /**
   * Deletes the record of every node not seen to change within its lease
   * TTL, by compare-and-set on the revision last seen: if it heartbeated
   * meanwhile, the delete fails and it lives on.
   */
  expireNodes(now: number): void {
    if (!this.ctx.healthy()) return;
    for (const node of this.ctx.view.nodes.values()) {
      if (node.nodeId === this.nodeId || this.tombstoning.has(node.nodeId)) {
        continue;
      }
      const deadline = this.ctx.deadline(node);
      if (deadline === undefined || now < deadline) continue;
      const { nodeId, revision } = node;
      const incarnation = node.record?.incarnation as string;
      this.tombstoning.add(nodeId);
      this.ctx.kv
        .delete(nodeKey(nodeId), { expectedRevision: revision })
        .then(
          () => {
            this.nodesExpired++;
            this.markDead(nodeId, incarnation);
            this.ctx.log.warn(
              { expired: nodeId, incarnation },
              'expired a node not seen within its lease TTL',
            );
          },
          (err: unknown) => {
            if (isKvConflict(err)) return;
            this.ctx.log.debug({ err, nodeId }, 'could not expire a node');
          },
        )
        .finally(() => {
          this.tombstoning.delete(nodeId);
          this.ctx.requestTick();
        });
    }
  }

  private markDead(nodeId: string, incarnation: string): void {
    this.deadIncarnations.add(`${nodeId}/${incarnation}`);
    if (this.deadIncarnations.size > DEAD_INCARNATIONS_MAX) {
      const oldest = this.deadIncarnations.values().next().value as string;
      this.deadIncarnations.delete(oldest);
    }
  }

  /** Whether the view says owner `nodeId/incarnation` is gone (to be confirmed). */
  deadByView(nodeId: string, incarnation: string): boolean {
    if (this.deadIncarnations.has(`${nodeId}/${incarnation}`)) return true;
    const node = this.ctx.view.nodes.get(nodeId);
    if (node === undefined) return true;
    if (node.record === undefined) return false;
    return node.record.incarnation !== incarnation;
  }

  /**
   * Whether owner incarnation `nodeId/incarnation` is dead, from a fresh
   * read of its record (the view may lag or skip revisions). Absent or
   * naming another incarnation means dead for good: incarnations never come
   * back, since a record disappears only after its lease ran out (expiry),
   * after its node stopped writing (graceful leave), or by replacement
   * after expiry (restart with the same node id).
   */
  confirmDead(nodeId: string, incarnation: string): Promise<boolean> {
    const key = `${nodeId}/${incarnation}`;
    if (this.deadIncarnations.has(key)) return Promise.resolve(true);
    let pending = this.confirming.get(key);
    if (pending === undefined) {
      pending = this.ctx.kv
        .get(nodeKey(nodeId))
        .then((entry) => {
          if (entry === undefined) return true;
          const decoded = decodeNodeRecord(entry.value, nodeKey(nodeId));
          return decoded.ok && decoded.record.incarnation !== incarnation;
        })
        .then((dead) => {
          if (dead) this.markDead(nodeId, incarnation);
          return dead;
        })
        .finally(() => this.confirming.delete(key));
      this.confirming.set(key, pending);
    }
    return pending;
  }
}
