/**
 * The layout of the timer index (KV `<prefix>_wakeups`), one entry per
 * entity with a pending timer, and how a store moves from one layout to
 * the other.
 *
 * - Unsharded, for a store used by one process: key `<type>.<id>`.
 * - By shard, for the store of a cluster node (`ClusterBinding.shards`):
 *   key `<shard>.<type>.<id>`. A node that acquires shards scans
 *   `<shard>.*.*` for each of them instead of the whole index, so what it
 *   reads grows with the shards it takes, not with the cluster's timers.
 *
 * Entity tokens never hold a dot (`keys.ts`), so the two layouts differ by
 * their number of tokens and a scan of everything reads both. The layout in
 * use is recorded in the bucket under the one-token key `layout`
 * (`shards/<count>`), written only by the sharded layout: a store without
 * that entry is unsharded, as every store written before it existed.
 *
 * On open, a store whose recorded layout is not its own rewrites every
 * entry into its layout, then records it: for each entry, it writes the
 * entry under the new key unless that key holds a live value (moved by an
 * earlier move cut short, or written since in the new layout: as new or
 * newer), and purges the old key. A purge marker under the new key is from
 * an earlier stay in that layout, older than the entry, and is written
 * over; the write expects the key's last sequence, so a write in between
 * wins. Two nodes doing it at once do the same thing twice. A store
 * that keeps its layout (the usual case) pays one read of `layout` on open.
 * A write in the old layout racing the move (one process still unsharded
 * while another opens sharded, which a cluster does not do) can leave an
 * entry behind: it wakes its entity once for nothing, as any stale entry.
 */
import type { EntityKey } from '../../src/persistence/types.js';
import type { EntityState } from './entity-cache.js';
import { decodeEntityTokens, encodeEntity } from './keys.js';
import { kvStream, kvSubject } from './options.js';
import { corruptSubject } from './records.js';
import { scanStream, streamSubjects } from './scan.js';
import {
  EMPTY,
  isKvDelete,
  kvGet,
  publish,
  ackError,
  type Session,
} from './session.js';

/** The bucket key that records the layout. */
export const LAYOUT_KEY = 'layout';

/**
 * A scan reads the index whole, not shard by shard, once it asks for more
 * than this fraction of the shards: each shard's scan is a consumer that
 * nats-server 2.9 sets up by walking all the bucket's keys. Measured with
 * 256 shards on the bench VM: 100,000 entries, one shard 150 ms, 16 shards
 * 788 ms, 32 shards 1,571 ms, the whole index 1,283 ms; 20,000 entries,
 * one shard 33 ms, the whole index 297 ms. The break-even is near a tenth
 * of the shards at both sizes.
 */
const PER_SHARD_SCAN_MAX_FRACTION = 1 / 16;

/** The layout this session writes: `shards/<count>`, or undefined (unsharded). */
function layoutName(session: Session): string | undefined {
  return session.shards === undefined
    ? undefined
    : `shards/${session.shards.count}`;
}

/** The timer-index key of an entity in this session's layout. */
export function wakeKey(session: Session, state: EntityState): string {
  return session.shards === undefined
    ? state.entity.tokens
    : `${session.shards.of(state.key)}.${state.entity.tokens}`;
}

/**
 * The entity of a timer-index key in either layout; undefined for the
 * layout record, and `null` for a key that names no entity.
 */
function entityOfKey(tail: string): EntityKey | undefined | null {
  if (tail === LAYOUT_KEY) return undefined;
  const first = tail.indexOf('.');
  const tokens =
    first > 0 &&
    tail.indexOf('.', first + 1) > 0 &&
    /^\d+$/.test(tail.slice(0, first))
      ? tail.slice(first + 1)
      : tail;
  return decodeEntityTokens(tokens) ?? null;
}

/**
 * The entries of the timer index, as `{ key, subject, msg }`: all of them,
 * or, in the sharded layout, those of `partitions` (when few enough) plus
 * possibly others.
 */
export async function* scanWakeIndex(
  session: Session,
  partitions: ReadonlySet<number> | undefined,
): AsyncGenerator<{
  key: EntityKey;
  data: Uint8Array;
  subject: string;
  seq: number;
}> {
  const bucket = session.names.wakeupBucket;
  const prefix = `$KV.${bucket}.`;
  const perShard =
    session.shards !== undefined &&
    partitions !== undefined &&
    partitions.size <= session.shards.count * PER_SHARD_SCAN_MAX_FRACTION;
  const filters = perShard
    ? [...partitions].sort((a, b) => a - b).map((p) => `${prefix}${p}.*.*`)
    : [`${prefix}>`];
  for (const filter of filters) {
    for await (const msg of scanStream(session, kvStream(bucket), {
      filter,
      lastPerSubject: true,
    })) {
      if (isKvDelete(msg.headers)) continue;
      const key = entityOfKey(msg.subject.slice(prefix.length));
      if (key === undefined) continue;
      if (key === null)
        throw corruptSubject({
          kind: 'wakeups',
          stream: kvStream(bucket),
          subject: msg.subject,
          streamSeq: msg.seq,
        });
      yield { key, data: msg.data, subject: msg.subject, seq: msg.seq };
    }
  }
}

/**
 * Moves the timer index into this session's layout when the bucket records
 * another one (see the header). Called once per open.
 */
export async function alignWakeLayout(session: Session): Promise<void> {
  const bucket = session.names.wakeupBucket;
  const want = layoutName(session);
  const recorded = await kvGet(session, bucket, LAYOUT_KEY);
  const have =
    recorded === undefined || recorded.deleted
      ? undefined
      : new TextDecoder().decode(recorded.data);
  if (have === want) return;
  const prefix = `$KV.${bucket}.`;
  // The keys come from the stream's subject list and each entry by a direct
  // read, not from a scan's consumer: nodes that start together write the
  // layout record while the others look, and a consumer set up while a key
  // is replaced can wait for a message that never comes (nats-server 2.9).
  const moves: { from: string; to: string; data: Uint8Array }[] = [];
  for await (const subject of streamSubjects(
    session,
    kvStream(bucket),
    `${prefix}>`,
  )) {
    const key = entityOfKey(subject.slice(prefix.length));
    if (key === undefined) continue;
    if (key === null)
      throw corruptSubject({
        kind: 'wakeups',
        stream: kvStream(bucket),
        subject,
        streamSeq: 0,
      });
    const tokens = encodeEntity(key).tokens;
    const target =
      session.shards === undefined
        ? tokens
        : `${session.shards.of(key)}.${tokens}`;
    if (subject === `${prefix}${target}`) continue;
    const entry = await kvGet(session, bucket, subject.slice(prefix.length));
    if (entry === undefined || entry.deleted) continue;
    moves.push({ from: subject, to: target, data: entry.data });
  }
  for (const move of moves) {
    // The new key may hold a purge marker from an earlier stay in its
    // layout: older than the entry being moved, so it is written over. A
    // live value there was moved before (a move cut short) or written
    // since, and stays.
    const existing = await kvGet(session, bucket, move.to);
    if (existing === undefined || existing.deleted) {
      const created = await publish(
        session,
        kvSubject(bucket, move.to),
        move.data,
        { expected: existing?.revision ?? 0 },
      );
      if (!created.ok && !created.wrongLastSequence)
        throw ackError(created, bucket);
    }
    const purged = await publish(session, move.from, EMPTY, {
      extra: { 'KV-Operation': 'PURGE', 'Nats-Rollup': 'sub' },
    });
    if (!purged.ok) throw ackError(purged, bucket);
  }
  const subject = kvSubject(bucket, LAYOUT_KEY);
  const marked =
    want === undefined
      ? await publish(session, subject, EMPTY, {
          extra: { 'KV-Operation': 'PURGE', 'Nats-Rollup': 'sub' },
        })
      : await publish(session, subject, new TextEncoder().encode(want));
  if (!marked.ok) throw ackError(marked, bucket);
  if (moves.length > 0)
    session.log.info(
      {
        bucket,
        from: have ?? 'unsharded',
        to: want ?? 'unsharded',
        moved: moves.length,
      },
      'nats store: moved the timer index to this store\u2019s layout',
    );
}
