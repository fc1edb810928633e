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
 * their number of tokens, and a scan of the whole index reads both. The
 * sharded layout is recorded in the bucket under the one-token key
 * `layout` (`shards/<count>`).
 *
 * A sharded store that opens without its record (a new bucket, one written
 * unsharded, or with another shard count) moves every entry that is not
 * under its key in its layout, then writes the record. Each move keeps the
 * newer of the two keys by stream sequence (the bucket is one stream, so
 * that is the order of the writes), then purges the old key if it has not
 * changed since. Nodes that start together do the same moves; the
 * sequence checks make the second one a no-op.
 *
 * An unsharded store (one process, or a tool opening a cluster's store)
 * moves nothing: it drops the record, reads both layouts and writes its
 * own. The next sharded open then finds no record and moves what the
 * unsharded store wrote, which its per-shard scans could not see. An entry
 * left in the other layout wakes its entity once for nothing, as any stale
 * entry does.
 */
import type { EntityKey } from '../../src/persistence/types.js';
import type { EntityState } from './entity-cache.js';
import { decodeEntityTokens, encodeEntity } from './keys.js';
import { kvStream, kvSubject } from './options.js';
import { corruptSubject } from './records.js';
import { scanStream, streamSubjects } from './scan.js';
import {
  EMPTY,
  KV_PURGE,
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
  return wakeKeyOf(session, state.key, state.entity.tokens);
}

/** {@link wakeKey} from the key and its subject tokens (`keys.ts`). */
function wakeKeyOf(session: Session, key: EntityKey, tokens: string): string {
  return session.shards === undefined
    ? tokens
    : `${session.shards.of(key)}.${tokens}`;
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
 * The live entries of the timer index, each with its subject, stream
 * sequence and record bytes: all of them, or in the sharded layout, when
 * `partitions` are few enough, only theirs (read shard by shard).
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
 * Brings the timer index to this session's layout (see the header). Called
 * once per open.
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
  const subject = kvSubject(bucket, LAYOUT_KEY);
  if (want === undefined) {
    // Unsharded: entries stay where they are (scans read both layouts);
    // dropping the record makes the next sharded open look for the entries
    // this store writes unsharded.
    const dropped = await publish(session, subject, EMPTY, {
      extra: KV_PURGE,
    });
    if (!dropped.ok) throw ackError(dropped, bucket);
    return;
  }
  const prefix = `$KV.${bucket}.`;
  // The keys come from the stream's subject list and each entry by a direct
  // read, not from a scan's consumer: nodes that start together write the
  // layout record while the others look, and a consumer set up while a key
  // is replaced can wait for a message that never comes (nats-server 2.9).
  const candidates: { from: string; to: string }[] = [];
  for await (const found of streamSubjects(
    session,
    kvStream(bucket),
    `${prefix}>`,
  )) {
    const key = entityOfKey(found.slice(prefix.length));
    if (key === undefined) continue;
    if (key === null) {
      // Not an entity: left where it is; scans report it as corrupt.
      session.log.warn(
        { bucket, subject: found },
        'nats store: a timer-index key that names no entity; not moved',
      );
      continue;
    }
    const target = wakeKeyOf(session, key, encodeEntity(key).tokens);
    if (found !== `${prefix}${target}`)
      candidates.push({ from: found.slice(prefix.length), to: target });
  }
  let moved = 0;
  for (const { from, to } of candidates) {
    const source = await kvGet(session, bucket, from);
    if (source === undefined || source.deleted) continue;
    // The newer of the two keys wins, by stream sequence: the bucket is one
    // stream, so that is the order the writes happened in.
    const existing = await kvGet(session, bucket, to);
    if (existing === undefined || existing.revision < source.revision) {
      const written = await publish(
        session,
        kvSubject(bucket, to),
        source.data,
        { expected: existing?.revision ?? 0 },
      );
      if (!written.ok && !written.wrongLastSequence)
        throw ackError(written, bucket);
    }
    // Purged only if unchanged since it was read.
    const purged = await publish(session, kvSubject(bucket, from), EMPTY, {
      expected: source.revision,
      extra: KV_PURGE,
    });
    if (!purged.ok && !purged.wrongLastSequence) throw ackError(purged, bucket);
    moved++;
  }
  const marked = await publish(
    session,
    subject,
    new TextEncoder().encode(want),
  );
  if (!marked.ok) throw ackError(marked, bucket);
  if (moved > 0)
    session.log.info(
      { bucket, from: have ?? 'unsharded', to: want, moved },
      'nats store: moved the timer index to this store\u2019s layout',
    );
}
