/**
 * Writes of the nats adapter: an `EntityWrite` as JetStream operations, in
 * an order that keeps each part's guarantee when the process dies between
 * two of them.
 *
 * 1. Seq check, against what the store knows about the entity (a cold
 *    entity is read first, unless it is being created).
 * 2. A new timer deadline goes to the timer index BEFORE the journal: if
 *    the process dies after the journal message, the index already wakes
 *    the entity. The opposite order could lose a timer. The price: when
 *    the journal publish then fails, the index may hold a deadline of a
 *    write that did not happen, which wakes the entity once for nothing.
 * 3. The journal message(s), each published with
 *    `Nats-Expected-Last-Subject-Sequence` set to the stream sequence of
 *    the entity's last message: the server appends it only if nobody else
 *    wrote the entity meanwhile, which is the seq check made atomic.
 * 4. After the journal: the snapshot (a cache of the journal, never ahead
 *    of it) and the removal of a timer-index entry (a stale entry only
 *    causes a spurious wake-up). Once the journal message is acknowledged
 *    the write's events are durable, so a failure here is logged and the
 *    write still resolves; a write without entries fails instead.
 *
 * Fencing, when `joinCluster` installed a fence: `tokenFor(key)` runs when
 * the write starts (a node without a valid lease gets `NOT_OWNER` and
 * writes nothing), the token travels in the `Shardchart-Fence` header of
 * every message, and `check(token)` runs right before each publish leaves,
 * so a node whose lease lapsed or moved on (`FENCED`) stops mid-write. The
 * fence cannot cover the moment between `check` and the server applying
 * the message: a node paused exactly there (GC, SIGSTOP) may still land a
 * journal message after another node took the shard over. The expected
 * sequence covers that case: if the new owner wrote the entity, the stale
 * message is refused (`STORE_CONFLICT`); if it did not, the stale message
 * lands in seq order before the new owner's first write, which then reads
 * the entity again (its own expected sequence fails), so the journal stays
 * one consistent sequence either way. KV puts carry the same expected
 * sequence check for snapshots; a stale timer-index put is the one thing
 * the paused node can still leave behind, and costs a spurious wake-up.
 */
import { isShardchartError } from '../../src/errors.js';
import { StoreError } from '../../src/errors.js';
import type {
  EntityWrite,
  FenceToken,
  JournalEntry,
  StoredSnapshot,
} from '../../src/persistence/types.js';
import { invalidate, type EntityState } from './entity-cache.js';
import { quote } from './keys.js';
import { kvSubject } from './options.js';
import {
  decodeJournalMessage,
  decodeSnapshotRecord,
  encodeJournalMessage,
  encodeSnapshotRecord,
  encodeWakeRecord,
} from './records.js';
import {
  EMPTY,
  KV_PURGE,
  ackError,
  conflict,
  directGet,
  kvGet,
  publish,
  type Session,
} from './session.js';
import { wakeKey } from './wake-index.js';

/** Snapshot puts retried after losing a compare-and-set, at most. */
const SNAPSHOT_ATTEMPTS_MAX = 5;
/** Room left in a message for headers (expected sequence, fence). */
const HEADER_BYTES_RESERVED = 512;

/** Runs one `EntityWrite`; the caller runs it in the entity's queue. */
export async function runWrite(
  session: Session,
  state: EntityState,
  write: EntityWrite,
): Promise<void> {
  const fence = session.fence?.tokenFor(write.key);
  const { entries, wakeAt } = write;
  try {
    await checkSeq(session, state, write.expectedSeq, entries.length > 0);
    if (typeof wakeAt === 'number' && wakeAt !== state.wakeAt) {
      await putWake(session, state, wakeAt, fence);
    }
    if (entries.length > 0) await appendEntries(session, state, entries, fence);
  } catch (error) {
    if (!isShardchartError(error, 'STORE_CONFLICT')) invalidate(state);
    throw error;
  }
  const after: Promise<void>[] = [];
  if (write.snapshot !== undefined) {
    after.push(saveSnapshot(session, state, write.snapshot, fence));
  }
  if (wakeAt === null && state.wakeAt !== null) {
    after.push(removeWake(session, state, fence));
  }
  if (after.length === 0) return;
  const results = await Promise.allSettled(after);
  const failed = results.find(
    (result): result is PromiseRejectedResult => result.status === 'rejected',
  );
  if (failed === undefined) return;
  state.snapshotSeq = undefined;
  state.wakeAt = undefined;
  if (entries.length === 0) throw failed.reason;
  session.log.warn(
    {
      type: write.key.type,
      id: write.key.id,
      seq: write.expectedSeq + entries.length,
      err: failed.reason as unknown,
    },
    'nats store: the journal entries are durable, but the snapshot or timer-index update after them failed; recovery replays a longer journal tail, and a stale timer entry wakes the entity once for nothing',
  );
}

/** `SnapshotStore.save`: never moves the snapshot backwards. */
export async function runSave(
  session: Session,
  state: EntityState,
  snapshot: StoredSnapshot,
): Promise<void> {
  const fence = session.fence?.tokenFor(state.key);
  try {
    await saveSnapshot(session, state, snapshot, fence);
  } catch (error) {
    state.snapshotSeq = undefined;
    throw error;
  }
}

/** Reads the entity's last journal message into `state`. */
async function readHead(session: Session, state: EntityState): Promise<void> {
  const { names } = session;
  const subject = names.journalSubject(state.entity.tokens);
  const last = await directGet(session, names.journalStream, subject);
  if (last === undefined) {
    state.lastSeq = 0;
    state.lastStreamSeq = 0;
    state.lastFirstSeq = 0;
    return;
  }
  const message = decodeJournalMessage(last.data, {
    kind: 'journal',
    stream: names.journalStream,
    subject,
    key: state.key,
    streamSeq: last.seq,
  });
  state.lastSeq = message.lastSeq;
  state.lastStreamSeq = last.seq;
  state.lastFirstSeq = message.firstSeq;
}

async function checkSeq(
  session: Session,
  state: EntityState,
  expectedSeq: number,
  hasEntries: boolean,
): Promise<void> {
  let fresh = false;
  if (state.lastSeq === undefined) {
    if (expectedSeq === 0 && hasEntries) {
      // A new entity needs no read: the journal publish expects an empty
      // subject, and the server refuses it if the entity exists after all.
      state.lastSeq = 0;
      state.lastStreamSeq = 0;
      state.lastFirstSeq = 0;
      return;
    }
    await readHead(session, state);
    fresh = true;
  }
  if (state.lastSeq !== expectedSeq && !fresh) {
    // What we know may be stale (another node wrote the entity): ask.
    await readHead(session, state);
  }
  if (state.lastSeq !== expectedSeq) {
    throw conflict(state.key, expectedSeq, state.lastSeq as number);
  }
}

async function appendEntries(
  session: Session,
  state: EntityState,
  entries: readonly JournalEntry[],
  fence: FenceToken | undefined,
): Promise<void> {
  const subject = session.names.journalSubject(state.entity.tokens);
  for (const chunk of chunks(session, state, entries)) {
    const expectedSeq = (chunk[0] as JournalEntry).seq - 1;
    if (fence !== undefined) session.fence?.check(fence);
    const ack = await publish(
      session,
      subject,
      encodeJournalMessage(state.key, chunk),
      { expected: state.lastStreamSeq, fence },
    );
    if (!ack.ok) {
      if (!ack.wrongLastSequence) throw ack.error;
      await readHead(session, state);
      throw conflict(state.key, expectedSeq, state.lastSeq as number);
    }
    state.lastSeq = (chunk[chunk.length - 1] as JournalEntry).seq;
    state.lastStreamSeq = ack.seq;
    state.lastFirstSeq = (chunk[0] as JournalEntry).seq;
  }
}

/**
 * The entries in messages that fit the server's payload limit: one message
 * in all but extreme cases. A write split over several messages is atomic
 * per message: a failure between two leaves the first ones durable, a
 * consistent prefix of the journal the caller finds when it reads again.
 */
function chunks(
  session: Session,
  state: EntityState,
  entries: readonly JournalEntry[],
): (readonly JournalEntry[])[] {
  const bytesMax = session.payloadBytesMax - HEADER_BYTES_RESERVED;
  const out: (readonly JournalEntry[])[] = [];
  const split = (part: readonly JournalEntry[]): void => {
    if (encodeJournalMessage(state.key, part).length <= bytesMax) {
      out.push(part);
      return;
    }
    if (part.length === 1) {
      throw new StoreError(
        'STORE_FAILED',
        `The journal entry of entity ${quote(state.key)} at seq ${(part[0] as JournalEntry).seq} does not fit in one NATS message (max_payload ${session.payloadBytesMax} bytes). Raise max_payload on the NATS servers or lower eventBytesMax.`,
        {
          retryable: false,
          details: { key: state.key, payloadBytesMax: session.payloadBytesMax },
        },
      );
    }
    const half = Math.ceil(part.length / 2);
    split(part.slice(0, half));
    split(part.slice(half));
  };
  split(entries);
  return out;
}

async function putWake(
  session: Session,
  state: EntityState,
  wakeAt: number,
  fence: FenceToken | undefined,
): Promise<void> {
  const bucket = session.names.wakeupBucket;
  if (fence !== undefined) session.fence?.check(fence);
  const ack = await publish(
    session,
    kvSubject(bucket, wakeKey(session, state)),
    encodeWakeRecord(state.key, wakeAt),
    { fence },
  );
  if (!ack.ok) throw ackError(ack, bucket);
  state.wakeAt = wakeAt;
}

async function removeWake(
  session: Session,
  state: EntityState,
  fence: FenceToken | undefined,
): Promise<void> {
  const bucket = session.names.wakeupBucket;
  const key = wakeKey(session, state);
  if (state.wakeAt === undefined) {
    // The engine clears the deadline of every entity it passivates without
    // timers. Looking first spares most of them a purge marker, which
    // would stay in the bucket (and in every scan of it) for good.
    const entry = await kvGet(session, bucket, key);
    if (entry === undefined || entry.deleted) {
      state.wakeAt = null;
      return;
    }
  }
  if (fence !== undefined) session.fence?.check(fence);
  // A purge marker replaces the entry (and any history) in one message.
  const ack = await publish(session, kvSubject(bucket, key), EMPTY, {
    fence,
    extra: KV_PURGE,
  });
  if (!ack.ok) throw ackError(ack, bucket);
  state.wakeAt = null;
}

/**
 * Puts `snapshot` unless the stored one is newer: a compare-and-set on the
 * KV revision, retried when another writer got in between.
 */
async function saveSnapshot(
  session: Session,
  state: EntityState,
  snapshot: StoredSnapshot,
  fence: FenceToken | undefined,
): Promise<void> {
  const bucket = session.names.snapshotBucket;
  const subject = kvSubject(bucket, state.entity.tokens);
  const from = readFrom(state, snapshot.seq);
  const value = encodeSnapshotRecord(state.key, snapshot, from);
  for (let attempt = 0; attempt < SNAPSHOT_ATTEMPTS_MAX; attempt++) {
    if (state.snapshotSeq === undefined) await readSnapshotHead(session, state);
    if (snapshot.seq < (state.snapshotSeq as number)) return;
    if (fence !== undefined) session.fence?.check(fence);
    const ack = await publish(session, subject, value, {
      expected: state.snapshotRevision,
      fence,
    });
    if (ack.ok) {
      state.snapshotSeq = snapshot.seq;
      state.snapshotRevision = ack.seq;
      state.readHint = { seq: snapshot.seq, from };
      return;
    }
    if (!ack.wrongLastSequence) throw ack.error;
    state.snapshotSeq = undefined;
  }
  throw new StoreError(
    'STORE_FAILED',
    `The snapshot of entity ${quote(state.key)} changed under this store ${SNAPSHOT_ATTEMPTS_MAX} times in a row: another node keeps writing it. Retry; if it persists, two nodes think they own the entity.`,
    {
      retryable: true,
      details: { key: state.key, reason: 'snapshot-contended' },
    },
  );
}

/** Reads the seq and revision of the stored snapshot into `state`. */
export async function readSnapshotHead(
  session: Session,
  state: EntityState,
): Promise<StoredSnapshot | undefined> {
  const bucket = session.names.snapshotBucket;
  const entry = await kvGet(session, bucket, state.entity.tokens);
  if (entry === undefined || entry.deleted) {
    state.snapshotSeq = -1;
    state.snapshotRevision = entry?.revision ?? 0;
    return undefined;
  }
  const record = decodeSnapshotRecord(entry.data, {
    kind: 'snapshots',
    stream: `KV_${bucket}`,
    subject: kvSubject(bucket, state.entity.tokens),
    key: state.key,
    streamSeq: entry.revision,
  });
  state.snapshotSeq = record.snapshot.seq;
  state.snapshotRevision = entry.revision;
  state.readHint = { seq: record.snapshot.seq, from: record.from };
  return record.snapshot;
}

/**
 * Stream sequence from which the entries after `seq` can be read, as far
 * as the entity's last message tells: past it when `seq` is its last
 * entry, at it when `seq` falls inside it, unknown (0) otherwise.
 */
function readFrom(state: EntityState, seq: number): number {
  if (state.lastSeq === undefined || state.lastStreamSeq === 0) return 0;
  if (seq >= state.lastSeq) return state.lastStreamSeq + 1;
  if (seq >= state.lastFirstSeq - 1) return state.lastStreamSeq;
  return 0;
}
