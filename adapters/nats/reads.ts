/**
 * Reads of the nats adapter: an entity's journal, its snapshot, the timer
 * index, entity listings and dead letters.
 *
 * A journal read asks for the entity's last message first (one direct get
 * by subject), which fixes where the read ends: messages appended while it
 * runs are not part of it. Recovery usually needs no more than that message,
 * or the few after the snapshot's read hint. Longer walks take up to
 * `DIRECT_READS_MAX` messages by direct get (one round trip each, no server
 * state), then an ordered consumer filtered on the entity's subject, which
 * streams the rest in batches.
 */
import { ConfigError } from '../../src/errors.js';
import type {
  DeadLetter,
  EntityKey,
  JournalEntry,
  StoredSnapshot,
} from '../../src/persistence/types.js';
import { EntityCache, type EntityState } from './entity-cache.js';
import { decodeEntityTokens, describe, encodeToken } from './keys.js';
import { kvStream, kvSubject } from './options.js';
import { scanWakeIndex } from './wake-index.js';
import {
  corruptSubject,
  decodeDeadLetter,
  decodeJournalMessage,
  decodeWakeRecord,
  journalGap,
  type JournalMessage,
} from './records.js';
import { scanStream, streamSubjects } from './scan.js';
import { directGet, isKvDelete, type Session } from './session.js';
import { readSnapshotHead } from './writes.js';

/** Messages read one by one before a journal read switches to a consumer. */
const DIRECT_READS_MAX = 16;
const DEAD_LETTER_LIMIT = 1_000;

interface Located {
  readonly streamSeq: number;
  readonly message: JournalMessage;
}

export async function* readJournal(
  session: Session,
  state: EntityState,
  fromSeq: number,
  toSeq: number | undefined,
): AsyncGenerator<JournalEntry> {
  const last = await lastMessage(session, state);
  if (last === undefined) return;
  const from = Math.max(fromSeq, 1);
  const to = Math.min(toSeq ?? Number.MAX_SAFE_INTEGER, last.message.lastSeq);
  if (from > to) return;
  const where = location(session, state);
  let next: number | undefined;
  if (last.message.firstSeq > from) {
    const hint = state.readHint;
    const start =
      hint !== undefined && hint.seq < from ? Math.max(hint.from, 1) : 1;
    for await (const found of walk(session, state, start, last.streamSeq - 1)) {
      const { message } = found;
      if (message.lastSeq < from) continue;
      const expected = next ?? from;
      if (
        next === undefined ? message.firstSeq > from : message.firstSeq !== next
      ) {
        throw journalGap(
          { ...where, streamSeq: found.streamSeq },
          expected,
          message.firstSeq,
        );
      }
      yield* slice(message, from, to);
      if (message.lastSeq >= to) return;
      next = message.lastSeq + 1;
    }
  }
  const { message } = last;
  if (
    next === undefined ? message.firstSeq > from : message.firstSeq !== next
  ) {
    throw journalGap(
      { ...where, streamSeq: last.streamSeq },
      next ?? from,
      message.firstSeq,
    );
  }
  yield* slice(message, from, to);
}

/** Seq of the last journal entry, as the server has it. */
export async function lastSeq(
  session: Session,
  state: EntityState,
): Promise<number> {
  return (await lastMessage(session, state))?.message.lastSeq ?? 0;
}

/**
 * The entity's last journal message. What it tells is cached for the next
 * write when no operation of the entity is running (else that operation's
 * outcome is the newer truth).
 */
async function lastMessage(
  session: Session,
  state: EntityState,
): Promise<Located | undefined> {
  const where = location(session, state);
  const last = await directGet(session, where.stream, where.subject);
  if (last === undefined) {
    if (EntityCache.idle(state)) {
      state.lastSeq = 0;
      state.lastStreamSeq = 0;
      state.lastFirstSeq = 0;
    }
    return undefined;
  }
  const message = decodeJournalMessage(last.data, {
    ...where,
    streamSeq: last.seq,
  });
  if (EntityCache.idle(state)) {
    state.lastSeq = message.lastSeq;
    state.lastStreamSeq = last.seq;
    state.lastFirstSeq = message.firstSeq;
  }
  return { streamSeq: last.seq, message };
}

/** The entity's journal messages with stream sequence in [start, end]. */
async function* walk(
  session: Session,
  state: EntityState,
  start: number,
  end: number,
): AsyncGenerator<Located> {
  const where = location(session, state);
  let seq = start;
  for (let n = 0; n < DIRECT_READS_MAX && seq <= end; n++) {
    const found = await directGet(session, where.stream, where.subject, seq);
    if (found === undefined || found.seq > end) return;
    yield {
      streamSeq: found.seq,
      message: decodeJournalMessage(found.data, {
        ...where,
        streamSeq: found.seq,
      }),
    };
    seq = found.seq + 1;
  }
  if (seq > end) return;
  for await (const msg of scanStream(session, where.stream, {
    filter: where.subject,
    startSeq: seq,
    endSeq: end,
  })) {
    yield {
      streamSeq: msg.seq,
      message: decodeJournalMessage(msg.data, { ...where, streamSeq: msg.seq }),
    };
  }
}

function* slice(
  message: JournalMessage,
  from: number,
  to: number,
): Generator<JournalEntry> {
  const start = Math.max(from - message.firstSeq, 0);
  const end = Math.min(to, message.lastSeq) - message.firstSeq;
  for (let i = start; i <= end; i++) yield message.entries[i] as JournalEntry;
}

function location(session: Session, state: EntityState) {
  return {
    kind: 'journal',
    stream: session.names.journalStream,
    subject: session.names.journalSubject(state.entity.tokens),
    key: state.key,
  };
}

/** `SnapshotStore.load`. */
export async function loadSnapshot(
  session: Session,
  state: EntityState,
): Promise<StoredSnapshot | undefined> {
  if (EntityCache.idle(state)) return readSnapshotHead(session, state);
  // A write of the entity is running: read without touching its state.
  const scratch = { ...state, queue: [], running: false };
  return readSnapshotHead(session, scratch);
}

/** `Store.scanWakeups`; the layout of the index is in `wake-index.ts`. */
export async function* scanWakeups(
  session: Session,
  partitions: ReadonlySet<number> | undefined,
): AsyncGenerator<{ key: EntityKey; wakeAt: number }> {
  const stream = kvStream(session.names.wakeupBucket);
  for await (const entry of scanWakeIndex(session, partitions)) {
    const where = {
      kind: 'wakeups',
      stream,
      subject: entry.subject,
      streamSeq: entry.seq,
      key: entry.key,
    };
    yield { key: entry.key, wakeAt: decodeWakeRecord(entry.data, where) };
  }
}

/**
 * Entities with a journal (from the journal stream's subject list), then
 * those with only a snapshot. The journal entities seen are kept in a set
 * to leave them out of the second part, so a scan holds one string per
 * entity with a journal.
 */
export async function* scanEntities(
  session: Session,
  type: string | undefined,
): AsyncGenerator<EntityKey> {
  const { names } = session;
  const typeToken = type === undefined ? undefined : encodeToken(type);
  const journalPrefix = `${names.prefix}.journal.`;
  const seen = new Set<string>();
  for await (const subject of streamSubjects(
    session,
    names.journalStream,
    typeToken === undefined
      ? names.journalSubjects
      : names.journalTypeFilter(typeToken),
  )) {
    const tokens = subject.slice(journalPrefix.length);
    const key = decodeEntityTokens(tokens);
    if (key === undefined) {
      throw corruptSubject({
        kind: 'journal',
        stream: names.journalStream,
        subject,
      });
    }
    seen.add(tokens);
    yield key;
  }
  const bucket = names.snapshotBucket;
  const stream = kvStream(bucket);
  const kvPrefix = `$KV.${bucket}.`;
  for await (const msg of scanStream(session, stream, {
    filter:
      typeToken === undefined
        ? `${kvPrefix}>`
        : kvSubject(bucket, `${typeToken}.*`),
    lastPerSubject: true,
    headersOnly: true,
  })) {
    if (isKvDelete(msg.headers)) continue;
    const tokens = msg.subject.slice(kvPrefix.length);
    if (seen.has(tokens)) continue;
    const key = decodeEntityTokens(tokens);
    if (key === undefined) {
      throw corruptSubject({ kind: 'snapshots', stream, subject: msg.subject });
    }
    yield key;
  }
}

export async function readDeadLetters(
  session: Session,
  filter: { key?: EntityKey; limit?: number } | undefined,
  tokens: string | undefined,
): Promise<DeadLetter[]> {
  const limit = filter?.limit ?? DEAD_LETTER_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new ConfigError(
      `readDeadLetters limit must be a positive integer, got ${describe(limit)}.`,
      { details: { limit } },
    );
  }
  const { names } = session;
  const letters: DeadLetter[] = [];
  for await (const msg of scanStream(session, names.deadLetterStream, {
    filter:
      tokens === undefined
        ? names.deadLetterSubjects
        : names.deadLetterSubject(tokens),
    startSeq: 1,
    batchMax: limit,
  })) {
    letters.push(
      decodeDeadLetter(msg.data, {
        kind: 'dead-letters',
        stream: names.deadLetterStream,
        subject: msg.subject,
        key: filter?.key,
        streamSeq: msg.seq,
      }),
    );
    if (letters.length >= limit) break;
  }
  return letters;
}
