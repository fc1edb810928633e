/**
 * Adaptive checkpoints of the lmdb adapter (commit.ts `maybeCheckpoint`).
 *
 * Goal: a checkpoint comes after max(checkpointRecords, 4 x dirty entities)
 * log records, or once 1,000 dirty entities were let go of by the engine:
 * - with many entities written, checkpoints come less often than every
 *   `checkpointRecords`, so the head writes a checkpoint costs stay a
 *   fraction of the records it covers;
 * - with few entities, they come every `checkpointRecords`;
 * - entities the engine forgets trigger one before `checkpointRecords`;
 * - and a SIGKILL anywhere between checkpoints loses no acknowledged write:
 *   reopening replays the log tail into the same journals, heads and
 *   wake-ups, also after several crashes in a row with no checkpoint
 *   between them.
 *
 * Method: checkpoints are observed from outside the adapter, in the `meta`
 * record where each one stores the log position it covers, through a
 * second handle on the environment; the records between two positions are
 * read from the log, so each interval's record and entity counts are exact.
 * The crash part runs the writer in a child process
 * (`lmdb-checkpoint-worker.ts`) that prints every acknowledged write and is
 * killed with SIGKILL at seeded moments; the next worker opens the store
 * (replaying the tail) and reports what it found before writing on.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { META_KEY } from '../../adapters/lmdb/commit.js';
import { lmdbStore } from '../../adapters/lmdb/index.js';
import { decodeLogKey, logKey } from '../../adapters/lmdb/keys.js';
import { openDatabases, validate } from '../../adapters/lmdb/options.js';
import { decodeMeta, peekLogRecord } from '../../adapters/lmdb/records.js';
import type { JournalEntry } from '../../src/persistence/types.js';
import { createSeededRandom } from '../../src/system/random.js';
import {
  ENTITIES_MAX,
  entryOf,
  expectedWake,
  keyOf,
  parseLine,
  type OpenedReport,
} from './lmdb-checkpoint-worker.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const workerPath = fileURLToPath(
  new URL('./lmdb-checkpoint-worker.ts', import.meta.url),
);

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempPath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'shardchart-lmdb-checkpoint-'));
  dirs.push(dir);
  return join(dir, 'db');
}

/** Read-only looks at the environment: the checkpoint position and the log. */
function inspect(path: string, sync: boolean) {
  const dbs = openDatabases(validate({ path, sync }));
  return {
    /** Log position the last checkpoint covers (0 before the first). */
    checkpoint(): number {
      const bytes = dbs.meta.get(META_KEY);
      return bytes === undefined ? 0 : decodeMeta(bytes).checkpoint;
    },
    /** Position of the newest log record (0 for none). */
    logEnd(): number {
      for (const key of dbs.log.getKeys({ reverse: true, limit: 1 }))
        return decodeLogKey(key) ?? 0;
      return 0;
    },
    /** Entities with a log record in positions `from < pos <= to`. */
    entitiesIn(from: number, to: number): number {
      const seen = new Set<string>();
      for (const { value } of dbs.log.getRange({
        start: logKey(from + 1),
        end: logKey(to + 1),
      })) {
        const key = peekLogRecord(value)!.key;
        seen.add(`${key.type}\u0000${key.id}`);
      }
      return seen.size;
    },
    close: () => dbs.env.close(),
  };
}

interface Interval {
  records: number;
  entities: number;
}

/**
 * Writes `rounds` rounds of one write to each of `entities` entities (the
 * round's writes concurrent, so they share commits) and returns the
 * checkpoint intervals seen, each with its records and distinct entities.
 */
async function writeRounds(
  entities: number,
  rounds: number,
  checkpointRecords: number,
): Promise<Interval[]> {
  const path = await tempPath();
  const store = lmdbStore({ path, sync: false, checkpointRecords });
  await store.open();
  const view = inspect(path, false);
  const positions = [0];
  try {
    for (let seq = 1; seq <= rounds; seq++) {
      await Promise.all(
        Array.from({ length: entities }, (_, i) =>
          store.write({
            key: keyOf(i),
            expectedSeq: seq - 1,
            entries: [entryOf(i, seq)],
          }),
        ),
      );
      const at = view.checkpoint();
      if (at !== positions.at(-1)) positions.push(at);
    }
    const intervals: Interval[] = [];
    for (let i = 1; i < positions.length; i++) {
      const from = positions[i - 1]!;
      const to = positions[i]!;
      intervals.push({
        records: to - from,
        entities: view.entitiesIn(from, to),
      });
    }
    return intervals;
  } finally {
    await view.close();
    await store.close();
  }
}

describe('lmdb checkpoints', () => {
  it('cadence - with many entities written, a checkpoint waits for 4 records per dirty entity: less often than checkpointRecords, head writes under a third of the records', async () => {
    const entities = 400;
    const checkpointRecords = 100;
    const intervals = await writeRounds(entities, 40, checkpointRecords);
    // 16,000 records: about 10 checkpoints of about 1,600 records.
    expect(intervals.length).toBeGreaterThanOrEqual(6);
    for (const { records, entities: written } of intervals) {
      expect(records).toBeGreaterThan(checkpointRecords);
      expect(records).toBeGreaterThanOrEqual(3 * entities);
      // One head write per dirty entity, for at least ~4 records each (the
      // checkpoint is staged a batch after it is due, which can add a few
      // entities with their first record).
      expect(written / records).toBeLessThan(1 / 3);
    }
    console.log(
      `[lmdb checkpoints] ${entities} entities, checkpointRecords ${checkpointRecords}: ${intervals.length} checkpoints, records per checkpoint ${intervals.map((i) => i.records).join(',')}`,
    );
  });

  it('cadence - with few entities written, a checkpoint comes every checkpointRecords records', async () => {
    const entities = 5;
    const checkpointRecords = 50;
    const intervals = await writeRounds(entities, 100, checkpointRecords);
    // 500 records: about 10 checkpoints.
    expect(intervals.length).toBeGreaterThanOrEqual(8);
    for (const { records, entities: written } of intervals) {
      expect(records).toBeGreaterThanOrEqual(checkpointRecords);
      // Due at 50 records; staged with the next batch at the latest.
      expect(records).toBeLessThanOrEqual(checkpointRecords + 2 * entities);
      expect(written).toBe(entities);
    }
  });

  it('cadence - 1,000 dirty entities the engine let go of trigger a checkpoint long before checkpointRecords', async () => {
    const path = await tempPath();
    const store = lmdbStore({ path, sync: false });
    await store.open();
    const view = inspect(path, false);
    try {
      const positions = [0];
      for (let chunk = 0; chunk < 12; chunk++) {
        await Promise.all(
          Array.from({ length: 100 }, async (_, j) => {
            const i = chunk * 100 + j;
            await store.write({
              key: keyOf(i),
              expectedSeq: 0,
              entries: [entryOf(i, 1)],
            });
            store.forget?.(keyOf(i));
          }),
        );
        const at = view.checkpoint();
        if (at !== positions.at(-1)) positions.push(at);
      }
      // The default checkpointRecords (10,000) and 4 x 1,000 dirty entities
      // are far off: only the forgotten entities can have triggered it.
      expect(positions.length).toBe(2);
      expect(positions[1]).toBeGreaterThanOrEqual(1_000);
      expect(positions[1]).toBeLessThanOrEqual(1_100);
      // Every entity reads back, the checkpointed and the later ones.
      for (const i of [0, 999, 1_000, 1_199]) {
        expect(await store.journal.lastSeq(keyOf(i))).toBe(1);
      }
    } finally {
      await view.close();
      await store.close();
    }
  });

  it('crash - SIGKILL at seeded moments between checkpoints loses no acknowledged write; reopening replays the log tail into the same journals and timer index', async () => {
    const path = await tempPath();
    const checkpointRecords = 200;
    // Per run: entities written (many: checkpoints wait for 4 records per
    // entity; few: every checkpointRecords, though the entities replayed
    // from the run before stay dirty until one), whether the worker scans
    // the timer index on open (which writes a checkpoint first), and
    // whether it stops after a few writes and is killed idle instead of at
    // a seeded moment.
    const runs: { entities: number; scan: boolean; writesMax?: number }[] = [
      { entities: ENTITIES_MAX, scan: false },
      { entities: 8, scan: false },
      { entities: ENTITIES_MAX, scan: true },
      // A checkpoint on open, then 16 records: none falls due.
      { entities: 8, scan: true, writesMax: 16 },
      // 16 more on top of the 16 replayed: none falls due either, so the
      // next open replays the records of two runs.
      { entities: 8, scan: false, writesMax: 16 },
      { entities: ENTITIES_MAX, scan: false },
      { entities: ENTITIES_MAX, scan: false },
      { entities: 8, scan: true },
      { entities: ENTITIES_MAX, scan: false },
    ];
    const random = createSeededRandom(20_261_123);
    /** Highest seq acknowledged (or found durable on reopen) per entity. */
    const acked = new Array<number>(ENTITIES_MAX).fill(0);
    const kills: {
      afterMs: number;
      acks: number;
      tail: number;
      checkpointMoved: boolean;
    }[] = [];
    let checkpointBefore = 0;
    for (const [n, run] of runs.entries()) {
      // Kill moments spread from right after the first acknowledgement to
      // well past a few checkpoints.
      const killAfterMs = Math.floor(random() * 800);
      const result = await runWorker(path, run, checkpointRecords, killAfterMs);
      const { opened } = result;
      // Nothing acknowledged is lost; at most the one write per entity
      // that was in flight at the kill is there unacknowledged.
      const lost = opened.lastSeq.flatMap((seq, i) =>
        seq < acked[i]! ? [`${i}: ${seq} < ${acked[i]}`] : [],
      );
      expect(lost, `run ${n}: acknowledged writes lost`).toEqual([]);
      const phantom = opened.lastSeq.flatMap((seq, i) =>
        seq > acked[i]! + 1 ? [`${i}: ${seq} > ${acked[i]! + 1}`] : [],
      );
      expect(phantom, `run ${n}: writes never issued`).toEqual([]);
      expect(opened.wrongLastEntry, `run ${n}: wrong last entries`).toEqual([]);
      if (opened.wakeups !== undefined) expectWakeups(opened.wakeups, opened);
      for (let i = 0; i < ENTITIES_MAX; i++)
        acked[i] = Math.max(opened.lastSeq[i]!, result.acked[i] ?? 0);
      const view = inspect(path, true);
      const checkpoint = view.checkpoint();
      const tail = view.logEnd() - checkpoint;
      await view.close();
      kills.push({
        afterMs: killAfterMs,
        acks: result.ackCount,
        tail,
        checkpointMoved: checkpoint !== checkpointBefore,
      });
      checkpointBefore = checkpoint;
    }

    // Most kills landed between checkpoints (a tail to replay). The tail
    // stays within max(checkpointRecords, 4 x entities) plus at most three
    // batches of one record per entity: the batch whose commit found the
    // checkpoint due, one more in flight, and writes queued ahead of it.
    expect(kills.filter((k) => k.tail > 0).length).toBeGreaterThanOrEqual(
      Math.ceil(runs.length / 2),
    );
    for (const k of kills)
      expect(k.tail).toBeLessThanOrEqual(4 * ENTITIES_MAX + 3 * ENTITIES_MAX);
    // Run 4 wrote no checkpoint: run 5 opened on the records of runs 3
    // and 4, and wrote on.
    expect(kills[4]).toMatchObject({ checkpointMoved: false, tail: 32 });

    // The last state, read in this process: every journal complete and
    // exactly as written, every acknowledged write there, the timer index
    // as the last write of each entity left it.
    const store = lmdbStore({ path, checkpointRecords });
    await store.open();
    try {
      const lastSeq: number[] = [];
      for (let i = 0; i < ENTITIES_MAX; i++) {
        const entries: JournalEntry[] = [];
        for await (const entry of store.journal.read(keyOf(i), 1))
          entries.push(entry);
        expect(entries.length).toBeGreaterThanOrEqual(acked[i]!);
        expect(entries).toEqual(
          Array.from({ length: entries.length }, (_, k) => entryOf(i, k + 1)),
        );
        lastSeq.push(entries.length);
      }
      const wakeups: Record<number, number> = {};
      for await (const { key, wakeAt } of store.scanWakeups())
        wakeups[Number(key.id.slice(2))] = wakeAt;
      expectWakeups(wakeups, { lastSeq, wrongLastEntry: [] });
    } finally {
      await store.close();
    }
    console.log(
      `[lmdb checkpoints] ${kills.length} SIGKILLs: ${kills.map((k) => `${k.acks} acks, tail ${k.tail}${k.checkpointMoved ? '' : ' (no checkpoint since the last kill)'}`).join('; ')}`,
    );
  }, 120_000);
});

function expectWakeups(
  wakeups: Record<number, number>,
  report: OpenedReport,
): void {
  const expected: Record<number, number> = {};
  for (const [i, seq] of report.lastSeq.entries()) {
    const wake = expectedWake(i, seq);
    if (wake !== undefined) expected[i] = wake;
  }
  expect(wakeups).toEqual(expected);
}

interface WorkerResult {
  opened: OpenedReport;
  /** Highest seq acknowledged per entity by this worker. */
  acked: number[];
  ackCount: number;
}

/**
 * Runs one worker and SIGKILLs it `killAfterMs` after its first
 * acknowledgement, or once it is idle after `writesMax` writes; resolves
 * once it is dead.
 */
function runWorker(
  path: string,
  run: { entities: number; scan: boolean; writesMax?: number },
  checkpointRecords: number,
  killAfterMs: number,
): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--conditions=shardchart-source',
        workerPath,
        path,
        String(run.entities),
        String(checkpointRecords),
        run.scan ? '1' : '0',
        String(run.writesMax ?? 0),
      ],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let opened: OpenedReport | undefined;
    const acked: number[] = [];
    let ackCount = 0;
    let failure: string | undefined;
    let stderr = '';
    let buffered = '';
    let killTimer: NodeJS.Timeout | undefined;
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const text of lines) {
        const line = parseLine(text);
        if (line === undefined) continue;
        if (line.kind === 'opened') opened = line.report;
        else if (line.kind === 'idle') child.kill('SIGKILL');
        else if (line.kind === 'fail')
          failure ??= `write ${line.entity}/${line.seq} failed: ${line.code}`;
        else {
          ackCount++;
          acked[line.entity] = Math.max(acked[line.entity] ?? 0, line.seq);
          if (run.writesMax === undefined)
            killTimer ??= setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        }
      }
    });
    // Only a hung worker trips this, never a slow one.
    const watchdog = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      clearTimeout(killTimer);
      if (failure !== undefined) return reject(new Error(failure));
      if (opened === undefined || signal !== 'SIGKILL' || ackCount === 0)
        return reject(
          new Error(
            `worker ended (${code}, ${signal}) after ${ackCount} acks, opened: ${opened !== undefined}\n${stderr}`,
          ),
        );
      resolve({ opened, acked, ackCount });
    });
  });
}
