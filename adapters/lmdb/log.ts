/**
 * The log of the lmdb adapter: how the memory state is rebuilt from it on
 * open, and how an entity's journal is read back by following its chain.
 *
 * Every entity write is one log record under the next log position; each
 * record points to the entity's previous one. The heads database says where
 * each entity's chain started as of the last checkpoint; records past the
 * checkpoint are replayed into memory on open, which bounds the work by
 * `checkpointRecords`.
 */
import { StoreError, isShardchartError } from '../../src/errors.js';
import type { EntityKey, JournalEntry } from '../../src/persistence/types.js';
import type { EntityCache } from './entity-cache.js';
import { FORMAT, META_KEY, readHead, type LmdbDatabases } from './commit.js';
import { decodeLogKey, encodeEntity, logKey, quote } from './keys.js';
import {
  decodeLogRecord,
  decodeMeta,
  corruptKey,
  peekLogRecord,
  type LogRecord,
} from './records.js';

/** Records walked back before the read keeps positions only. */
const DECODED_KEPT_MAX = 256;

/**
 * Replays the log past the checkpoint into `cache`: every entity written
 * there becomes dirty with its head, last seq and wake-up change. Checks
 * that each record continues its entity's chain and seqs: a break means a
 * damaged store, which is reported, never papered over.
 */
export function rebuild(
  dbs: LmdbDatabases,
  cache: EntityCache,
  prefixBytesMax: number,
): { nextPos: number; recordsSinceCheckpoint: number } {
  const checkpoint = readCheckpoint(dbs);
  let last = checkpoint;
  let replayed = 0;
  for (const { key, value } of dbs.log.getRange({
    start: logKey(checkpoint + 1),
  })) {
    const pos = decodeLogKey(key);
    if (pos === undefined) throw corruptKey('log', key);
    const clear = peekLogRecord(value);
    if (clear === undefined) {
      // Without its entity we cannot tell whose journal lost a write.
      throw new StoreError(
        'STORE_CORRUPT',
        `The log record at position ${pos} is damaged beyond telling which entity it belongs to, so the store cannot be opened safely. Restore the store from a backup.`,
        { details: { db: 'log', pos, reason: 'header' } },
      );
    }
    const state = cache.getOrCreate(clear.key);
    if (state.head === undefined || state.lastSeq === undefined) {
      const head = readHead(dbs, encodeEntity(clear.key, prefixBytesMax));
      state.head = head.head;
      state.lastSeq = head.lastSeq;
      state.damaged = head.damaged;
    }
    let record: LogRecord | undefined;
    if (state.damaged === undefined) {
      try {
        record = decodeLogRecord(value, pos);
      } catch (error) {
        if (!isShardchartError(error, 'STORE_CORRUPT')) throw error;
        // The damage stays with this entity: it neither reads nor writes
        // until repaired, and every other entity opens as usual.
        state.damaged = pos;
      }
    }
    if (record === undefined) {
      // A damaged entity: follow its chain without trusting its contents.
      state.head = pos;
      state.committedHead = pos;
      state.committedLastSeq = state.lastSeq;
      cache.markDirty(state);
      last = pos;
      replayed++;
      continue;
    }
    if (record.prev !== state.head) {
      throw broken(
        record.key,
        pos,
        `it points to record ${record.prev}, but the entity's previous record is ${state.head}`,
      );
    }
    if (record.entries.length > 0 && record.firstSeq !== state.lastSeq + 1) {
      throw broken(
        record.key,
        pos,
        `its entries start at seq ${record.firstSeq}, but the entity's journal ends at ${state.lastSeq}`,
      );
    }
    state.head = pos;
    state.lastSeq += record.entries.length;
    state.committedHead = state.head;
    state.committedLastSeq = state.lastSeq;
    if (record.wakeAt !== undefined) state.wake = record.wakeAt;
    cache.markDirty(state);
    last = pos;
    replayed++;
  }
  return { nextPos: last + 1, recordsSinceCheckpoint: replayed };
}

/** The log position the heads and wake-ups databases reflect. */
function readCheckpoint(dbs: LmdbDatabases): number {
  const bytes = dbs.meta.get(META_KEY);
  if (bytes === undefined) return 0;
  const meta = decodeMeta(bytes);
  if (meta.format !== FORMAT) {
    throw new StoreError(
      'STORE_CORRUPT',
      `The LMDB store uses layout version ${meta.format}, but this shardchart release reads version ${FORMAT}. Open it with the release that wrote it, or export and re-import its entities.`,
      { details: { db: 'meta', format: meta.format, expected: FORMAT } },
    );
  }
  return meta.checkpoint;
}

/**
 * An entity's journal entries with `fromSeq <= seq <= toSeq`, oldest first,
 * read by walking its chain back from `head` and then forward. Short walks
 * keep the decoded records; long ones keep positions and decode again on
 * the way forward, so memory stays bounded for any journal length.
 */
export function* walkJournal(
  dbs: () => LmdbDatabases,
  key: EntityKey,
  head: number,
  fromSeq: number,
  toSeq: number,
): Generator<JournalEntry> {
  const positions: number[] = [];
  let decoded: LogRecord[] | undefined = [];
  let pos = head;
  while (pos > 0) {
    const record = readRecord(dbs(), key, pos);
    if (record.entries.length > 0 && record.firstSeq <= toSeq) {
      positions.push(pos);
      if (decoded !== undefined) {
        if (decoded.length < DECODED_KEPT_MAX) decoded.push(record);
        else decoded = undefined;
      }
    }
    if (record.firstSeq <= fromSeq) break;
    pos = record.prev;
  }
  let expected: number | undefined;
  for (let i = positions.length - 1; i >= 0; i--) {
    const at = positions[i] as number;
    const record = decoded?.[i] ?? readRecord(dbs(), key, at);
    if (expected !== undefined && record.firstSeq !== expected) {
      throw broken(
        key,
        at,
        `its entries start at seq ${record.firstSeq}, but the record before ends at ${expected - 1}: entries are missing`,
      );
    }
    expected = record.firstSeq + record.entries.length;
    for (const entry of record.entries) {
      if (entry.seq >= fromSeq && entry.seq <= toSeq) yield entry;
    }
  }
}

function readRecord(
  dbs: LmdbDatabases,
  key: EntityKey,
  pos: number,
): LogRecord {
  const bytes = dbs.log.get(logKey(pos));
  if (bytes === undefined) {
    throw broken(key, pos, 'the record is missing');
  }
  return decodeLogRecord(bytes, pos, key);
}

function broken(key: EntityKey, pos: number, problem: string): StoreError {
  return new StoreError(
    'STORE_CORRUPT',
    `The log record of entity ${quote(key)} at log position ${pos} is corrupt: ${problem}. Restore the store from a backup.`,
    { details: { db: 'log', key, pos, reason: 'chain' } },
  );
}
