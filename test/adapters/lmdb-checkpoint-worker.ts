/**
 * Child process of `lmdb-checkpoint.test.ts`: opens an lmdb store (which
 * replays the log past the last checkpoint), reports what it found, then
 * writes to its entities until it is killed, printing every acknowledged
 * write synchronously (so a SIGKILL never loses the line of an answered
 * write).
 *
 *   node --import tsx --conditions=shardchart-source lmdb-checkpoint-worker.ts \
 *     <store dir> <entities written> <checkpointRecords> <scan: 0|1> [writesMax]
 *
 * With `writesMax`, the worker stops writing after that many writes, says
 * IDLE and waits to be killed.
 *
 * Output, one line each:
 *   OPENED <json: OpenedReport>   after open, before any write
 *   A <entity> <seq>              a write acknowledged
 *   FAIL <entity> <seq> <code>    a write refused (the test fails)
 *   IDLE                          `writesMax` writes done
 *
 * Every write is a pure function of (entity, seq), so the test can tell
 * what each entity's journal and timer index entry must be.
 */
import { writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { lmdbStore } from '../../adapters/lmdb/index.js';
import type { EntityKey, JournalEntry } from '../../src/persistence/types.js';

/** Entities the store may hold; the worker writes the first `n` of them. */
export const ENTITIES_MAX = 300;

export const keyOf = (i: number): EntityKey => ({ type: 'acct', id: `a-${i}` });

export function entryOf(i: number, seq: number): JournalEntry {
  return { seq, at: seq, event: { type: 'POST', i, seq } };
}

/**
 * The timer index change of write `seq`: removed every 4th write, left
 * unchanged every 4th (+1), else a deadline of its own.
 */
export function wakeAtOf(i: number, seq: number): number | null | undefined {
  if (seq % 4 === 0) return null;
  if (seq % 4 === 1) return undefined;
  return 2_000_000_000_000 + i * 1_000_000 + seq;
}

/** What the timer index must hold for an entity whose journal ends at `lastSeq`. */
export function expectedWake(i: number, lastSeq: number): number | undefined {
  for (let seq = lastSeq; seq >= 1; seq--) {
    const wake = wakeAtOf(i, seq);
    if (wake !== undefined) return wake === null ? undefined : wake;
  }
  return undefined;
}

export interface OpenedReport {
  /** Last seq per entity, as the reopened store reports it. */
  readonly lastSeq: number[];
  /** Entities whose last journal entry is not the one written at that seq. */
  readonly wrongLastEntry: number[];
  /** The timer index (`scan` only; scanning writes a checkpoint first). */
  readonly wakeups?: Record<number, number>;
}

export type WorkerLine =
  | { kind: 'opened'; report: OpenedReport }
  | { kind: 'ack'; entity: number; seq: number }
  | { kind: 'idle' }
  | { kind: 'fail'; entity: number; seq: number; code: string };

export function parseLine(line: string): WorkerLine | undefined {
  const [tag, a, b, c] = line.split(' ');
  if (tag === 'OPENED')
    return {
      kind: 'opened',
      report: JSON.parse(line.slice('OPENED '.length)) as OpenedReport,
    };
  if (tag === 'IDLE') return { kind: 'idle' };
  if (tag === 'A') return { kind: 'ack', entity: Number(a), seq: Number(b) };
  if (tag === 'FAIL')
    return { kind: 'fail', entity: Number(a), seq: Number(b), code: String(c) };
  return undefined;
}

/**
 * Writes `text` to stdout synchronously. stdout is a non-blocking pipe that
 * a burst of acknowledgements can fill: wait for the reader then.
 */
function print(text: string): void {
  let bytes = Buffer.from(text);
  while (bytes.length > 0) {
    try {
      bytes = bytes.subarray(writeSync(1, bytes));
    } catch (error) {
      if ((error as { code?: string }).code !== 'EAGAIN') throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

/**
 * Acknowledgements of one turn, printed together once the writes of a
 * commit have all been answered (they resolve in the same turn), before
 * anything else runs: one write() per commit instead of one per entity.
 */
let acks: string[] = [];
function ack(i: number, seq: number): void {
  if (acks.length === 0)
    queueMicrotask(() => {
      const lines = acks.join('');
      acks = [];
      print(lines);
    });
  acks.push(`A ${i} ${seq}\n`);
}

async function main(
  path: string,
  entities: number,
  checkpointRecords: number,
  scan: boolean,
  writesMax: number,
): Promise<void> {
  const store = lmdbStore({ path, checkpointRecords });
  await store.open();
  const lastSeq: number[] = [];
  const wrongLastEntry: number[] = [];
  for (let i = 0; i < ENTITIES_MAX; i++) {
    const seq = await store.journal.lastSeq(keyOf(i));
    lastSeq.push(seq);
    if (seq === 0) continue;
    const entries: JournalEntry[] = [];
    for await (const entry of store.journal.read(keyOf(i), seq))
      entries.push(entry);
    if (JSON.stringify(entries) !== JSON.stringify([entryOf(i, seq)]))
      wrongLastEntry.push(i);
  }
  let wakeups: Record<number, number> | undefined;
  if (scan) {
    wakeups = {};
    for await (const { key, wakeAt } of store.scanWakeups())
      wakeups[Number(key.id.slice(2))] = wakeAt;
  }
  const report: OpenedReport = { lastSeq, wrongLastEntry, wakeups };
  print(`OPENED ${JSON.stringify(report)}\n`);

  // One write in flight per entity, all entities at once: each commit
  // holds about one record per entity.
  let issued = 0;
  await Promise.all(
    Array.from({ length: entities }, async (_, i) => {
      for (let seq = (lastSeq[i] as number) + 1; ; seq++) {
        if (writesMax > 0 && issued >= writesMax) return;
        issued++;
        try {
          await store.write({
            key: keyOf(i),
            expectedSeq: seq - 1,
            entries: [entryOf(i, seq)],
            wakeAt: wakeAtOf(i, seq),
          });
        } catch (error) {
          print(
            `FAIL ${i} ${seq} ${(error as { code?: string }).code ?? String(error)}\n`,
          );
          process.exit(1);
        }
        ack(i, seq);
      }
    }),
  );
}

const isMain =
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const [path, entities, checkpointRecords, scan, writesMax] =
    process.argv.slice(2);
  await main(
    path as string,
    Number(entities),
    Number(checkpointRecords),
    scan === '1',
    Number(writesMax ?? 0),
  );
  print('IDLE\n');
  setInterval(() => undefined, 60_000);
}
