/**
 * Reads of the lmdb adapter. Streams (journal, wake-ups, entities) read in
 * chunks, each from one short read transaction, so a slow consumer never
 * pins an old LMDB snapshot, and each chunk checks that the store is still
 * open. Every value is decoded and shape-checked before it is handed out.
 */
import { ConfigError } from '../../src/errors.js';
import type {
  DeadLetter,
  EntityKey,
  JournalEntry,
} from '../../src/persistence/types.js';
import type { LmdbDatabases } from './commit.js';
import {
  assert,
  deadLetterKey,
  decodeDeadLetterKey,
  decodeEntity,
  decodeJournalSeq,
  describe,
  encodeTypePrefix,
  prefixEnd,
  type EncodedEntity,
} from './keys.js';
import { walkJournal } from './log.js';
import { defaults } from './options.js';
import {
  corruptKey,
  decodeDeadLetter,
  decodeHead,
  decodeWakeAt,
} from './records.js';

/** What reads need from the store. */
export interface ReadContext {
  /** The open databases; throws `STORE_CLOSED` once the store is closed. */
  session(): LmdbDatabases;
  /** Encodes an entity key (and checks its size). */
  entity(key: EntityKey): EncodedEntity;
  /** Head and last seq of the entity as committed (see entity-cache.ts). */
  committedHead(key: EntityKey): { head: number; lastSeq: number };
  /** Writes a checkpoint, so the heads and wake-ups databases are current. */
  checkpoint(): Promise<void>;
}

const SEQ_MAX_SUFFIX = Buffer.alloc(8, 0xff);

/** Journal entries with `fromSeq <= seq <= toSeq`, in seq order. */
export async function* readJournal(
  context: ReadContext,
  key: EntityKey,
  fromSeq: number,
  toSeq: number | undefined,
): AsyncGenerator<JournalEntry> {
  assert(
    Number.isSafeInteger(fromSeq) &&
      (toSeq === undefined || Number.isSafeInteger(toSeq)),
    () =>
      `journal.read needs integer seqs, got fromSeq ${describe(fromSeq)}, toSeq ${describe(toSeq)}`,
  );
  context.session();
  const { head, lastSeq } = context.committedHead(key);
  const to = Math.min(toSeq ?? lastSeq, lastSeq);
  if (head === 0 || to < Math.max(1, fromSeq)) return;
  // Records are immutable once written, so the walk may span read
  // transactions; each chunk checks that the store is still open.
  let count = 0;
  for (const entry of walkJournal(
    () => context.session(),
    key,
    head,
    Math.max(1, fromSeq),
    to,
  )) {
    yield entry;
    if (++count % defaults.readChunkMax === 0) context.session();
  }
}

/** Every entity in the timer index with its deadline, in key order. */
export async function* scanWakeups(
  context: ReadContext,
): AsyncGenerator<{ key: EntityKey; wakeAt: number }> {
  // The latest deadlines may still be in memory only: write them first.
  await context.checkpoint();
  let start: Buffer | undefined;
  for (;;) {
    const dbs = context.session();
    const chunk: { key: EntityKey; wakeAt: number }[] = [];
    let last: Buffer | undefined;
    for (const item of dbs.wakeups.getRange({
      ...(start === undefined ? {} : { start }),
      limit: defaults.readChunkMax,
    })) {
      const parsed = decodeEntity(item.key);
      if (parsed === undefined) throw corruptKey('wakeups', item.key);
      chunk.push({
        key: parsed.key,
        wakeAt: decodeWakeAt(item.value, parsed.key),
      });
      last = Buffer.from(item.key);
    }
    yield* chunk;
    if (chunk.length < defaults.readChunkMax || last === undefined) return;
    // The smallest key after `last`.
    start = Buffer.concat([last, Buffer.from([0])]);
  }
}

/**
 * Merges the entities of the heads database with those of the snapshots
 * database (an entity may have a snapshot and no journal). Both are ordered
 * by entity prefix, so each entity comes out once. A checkpoint first makes
 * the heads database current.
 */
export async function* scanEntities(
  context: ReadContext,
  type: string | undefined,
): AsyncGenerator<EntityKey> {
  await context.checkpoint();
  const lower = type === undefined ? undefined : encodeTypePrefix(type);
  const upper = lower === undefined ? undefined : prefixEnd(lower);
  // Past every key of the entity. An entity prefix starts with a 16-bit
  // length below LMDB's key limit, so it is never all 0xff and has an end.
  const after = (prefix: Buffer): Buffer => prefixEnd(prefix) as Buffer;
  // An entity is listed when it has a journal entry or a snapshot. A head
  // with no entries (only wake-up changes were written) does not count.
  const firstFrom = (
    db: LmdbDatabases['heads'],
    dbName: string,
    from: Buffer | undefined,
  ): { key: EntityKey; prefix: Buffer } | undefined => {
    let start = from;
    for (;;) {
      let found: { key: EntityKey; prefix: Buffer; empty: boolean } | undefined;
      for (const item of db.getRange({
        ...(start === undefined ? {} : { start }),
        ...(upper === undefined ? {} : { end: upper }),
        limit: 1,
      })) {
        const parsed = decodeEntity(item.key);
        if (parsed === undefined) throw corruptKey(dbName, item.key);
        found = {
          key: parsed.key,
          prefix: Buffer.from(item.key.subarray(0, parsed.prefixBytes)),
          empty:
            dbName === 'heads' &&
            decodeHead(item.value, parsed.key).lastSeq === 0,
        };
      }
      if (found === undefined) return undefined;
      if (!found.empty) return { key: found.key, prefix: found.prefix };
      start = after(found.prefix);
    }
  };
  let dbs = context.session();
  let journalNext = firstFrom(dbs.heads, 'heads', lower);
  let snapshotNext = firstFrom(dbs.snapshots, 'snapshots', lower);
  while (journalNext !== undefined || snapshotNext !== undefined) {
    const order =
      journalNext === undefined
        ? 1
        : snapshotNext === undefined
          ? -1
          : Buffer.compare(journalNext.prefix, snapshotNext.prefix);
    const current = (order <= 0 ? journalNext : snapshotNext) as {
      key: EntityKey;
      prefix: Buffer;
    };
    yield current.key;
    dbs = context.session();
    if (order <= 0 && journalNext !== undefined) {
      journalNext = firstFrom(dbs.heads, 'heads', after(journalNext.prefix));
    }
    if (order >= 0 && snapshotNext !== undefined) {
      snapshotNext = firstFrom(
        dbs.snapshots,
        'snapshots',
        after(snapshotNext.prefix),
      );
    }
  }
}

/** Dead letters, oldest first, of one entity or all. */
export function readDeadLetters(
  context: ReadContext,
  filter: { key?: EntityKey; limit?: number } | undefined,
): DeadLetter[] {
  const limit = filter?.limit ?? defaults.deadLetterLimit;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new ConfigError(
      `readDeadLetters limit must be a positive integer, got ${describe(limit)}.`,
      { details: { limit } },
    );
  }
  const dbs = context.session();
  const letters: DeadLetter[] = [];
  if (filter?.key === undefined) {
    for (const { key, value } of dbs.deadLetters.getRange({ limit })) {
      letters.push(decodeDeadLetter(value, deadLetterNumber(key)));
    }
    return letters;
  }
  const prefix = context.entity(filter.key).prefix;
  for (const key of dbs.deadLetterIndex.getKeys({
    start: prefix,
    end: Buffer.concat([prefix, SEQ_MAX_SUFFIX]),
    limit,
  })) {
    const n = decodeJournalSeq(key, prefix.length);
    if (n === undefined) throw corruptKey('dead-letter-index', key);
    const bytes = dbs.deadLetters.get(deadLetterKey(n));
    if (bytes !== undefined) letters.push(decodeDeadLetter(bytes, n));
  }
  return letters;
}

/** Number of the newest dead letter, 0 for none. */
export function lastDeadLetter(dbs: LmdbDatabases): number {
  for (const key of dbs.deadLetters.getKeys({ reverse: true, limit: 1 })) {
    return deadLetterNumber(key);
  }
  return 0;
}

function deadLetterNumber(key: Uint8Array): number {
  const n = decodeDeadLetterKey(key);
  if (n === undefined) throw corruptKey('dead-letters', key);
  return n;
}
