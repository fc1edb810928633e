/**
 * Commits that fail or stall for real, not mocked ones.
 *
 * Goal: when LMDB cannot commit (here: the data file may not grow), the
 * write fails with a non-retryable `STORE_FAILED`, so does every write
 * queued behind it, the store refuses everything until it is opened again,
 * the process does not crash, and what is on disk is exactly the writes
 * acknowledged before the failure.
 *
 * Method: a child process (`lmdb-failure-worker.ts`) runs under a file size
 * limit (`ulimit -f`): LMDB's write of the data file past it fails. The
 * worker acknowledges a few small writes per entity, then, several times
 * over (open, fail, close), issues large and small writes without waiting,
 * one batch per event-loop turn, so batches are queued in lmdb-js behind
 * the one that fails. The test then opens the store without the limit and
 * checks every journal against what the worker was told.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { lmdbStore } from '../../adapters/lmdb/index.js';
import { isShardchartError } from '../../src/errors.js';
import type { JournalEntry } from '../../src/persistence/types.js';
import {
  CYCLES,
  ENTITIES,
  FIRST_WRITES,
  keyOf,
  type WorkerReport,
} from './lmdb-failure-worker.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const workerPath = fileURLToPath(
  new URL('./lmdb-failure-worker.ts', import.meta.url),
);
/** `ulimit -f` blocks (512 or 1024 bytes by shell): 4 to 8 MiB. */
const FILE_BLOCKS_MAX = 8_192;

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

function runWorker(path: string): Promise<{
  code: number | null;
  stdout: string;
  stderr: string;
}> {
  const command = [
    `ulimit -f ${FILE_BLOCKS_MAX}`,
    `exec "${process.execPath}" --import tsx --conditions=shardchart-source "${workerPath}" "${path}"`,
  ].join(' && ');
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Starts a process that opens the environment at `path` and holds its write
 * lock (LMDB's lock is shared between processes) for `holdMs`; resolves
 * once the lock is held, with a promise of the process's exit.
 */
function holdWriteLock(
  path: string,
  holdMs: number,
): Promise<{ exited: Promise<number | null> }> {
  const script = [
    `import { open } from 'lmdb';`,
    `import { writeSync } from 'node:fs';`,
    `const env = open({ path: ${JSON.stringify(path)}, noSubdir: false, maxDbs: 8, overlappingSync: false });`,
    `env.transactionSync(() => {`,
    `  writeSync(1, 'locked\\n');`,
    `  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${holdMs});`,
    `});`,
    `await env.close();`,
  ].join('\n');
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', script],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    const exited = new Promise<number | null>((done) => {
      child.on('close', (code) => done(code));
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('locked')) resolve({ exited });
    });
    child.on('error', reject);
    void exited.then((code) =>
      reject(new Error(`lock holder exited (${code}) first: ${stderr}`)),
    );
  });
}

async function readAll(
  store: ReturnType<typeof lmdbStore>,
  i: number,
): Promise<JournalEntry[]> {
  const entries: JournalEntry[] = [];
  for await (const entry of store.journal.read(keyOf(i), 1)) {
    entries.push(entry);
  }
  return entries;
}

describe('lmdb failure', () => {
  it('commit - a failed commit fails the writes queued behind it and refuses the rest until reopened; the disk holds exactly what was acknowledged', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shardchart-lmdb-failure-'));
    dirs.push(dir);
    const path = join(dir, 'db');
    const run = await runWorker(path);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout.trim()) as WorkerReport;

    expect(report.cycles).toHaveLength(CYCLES);
    for (const cycle of report.cycles) {
      // In issue order: acknowledged writes, then only failures. A write
      // queued behind a failed one never commits.
      const firstFailure = cycle.outcomes.findIndex((o) => !o.ok);
      expect(firstFailure).toBeGreaterThanOrEqual(0);
      for (const failure of cycle.outcomes.slice(firstFailure)) {
        expect(failure).toMatchObject({
          ok: false,
          code: 'STORE_FAILED',
          retryable: false,
        });
      }
      // Write, snapshot save and dead letter after the failure: refused.
      expect(cycle.after).toHaveLength(3);
      for (const refused of cycle.after) {
        expect(refused).toMatchObject({
          ok: false,
          code: 'STORE_FAILED',
          retryable: false,
        });
      }
    }

    // Reopened without the limit: every acknowledged write, nothing else,
    // with no gap, and the store takes writes again.
    const store = lmdbStore({ path });
    try {
      await store.open();
      for (let i = 0; i < ENTITIES; i++) {
        const acked = report.acked[i] as number;
        expect(acked).toBeGreaterThanOrEqual(FIRST_WRITES);
        expect(await store.journal.lastSeq(keyOf(i))).toBe(acked);
        const entries = await readAll(store, i);
        expect(entries.map((e) => e.seq)).toEqual(
          Array.from({ length: acked }, (_, n) => n + 1),
        );
        expect(entries.slice(FIRST_WRITES).map((e) => e.event.type)).toEqual(
          Array.from({ length: acked - FIRST_WRITES }, () =>
            i < ENTITIES / 2 ? 'LARGE' : 'SMALL',
          ),
        );
      }
      await store.write({
        key: keyOf(0),
        expectedSeq: report.acked[0] as number,
        entries: [
          {
            seq: (report.acked[0] as number) + 1,
            at: 0,
            event: { type: 'OK' },
          },
        ],
      });
      expect(await store.journal.lastSeq(keyOf(0))).toBe(
        (report.acked[0] as number) + 1,
      );
    } finally {
      await store.close();
    }
  });

  it('commit - a commit that does not finish within commitTimeoutMs fails with a typed error instead of hanging; acknowledged writes survive', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shardchart-lmdb-stall-'));
    dirs.push(dir);
    const path = join(dir, 'db');
    const key = keyOf(0);
    const entry = (seq: number) => ({ seq, at: 0, event: { type: 'E', n: seq } });
    const store = lmdbStore({ path, commitTimeoutMs: 300 });
    await store.open();
    await store.write({ key, expectedSeq: 0, entries: [entry(1)] });

    // Another process holds the environment's write lock: our commit
    // cannot begin, as with a hung disk.
    const holder = await holdWriteLock(path, 2_000);
    const startedAt = Date.now();
    const stalled = await store
      .write({ key, expectedSeq: 1, entries: [entry(2)] })
      .then(() => undefined, (error: unknown) => error);
    expect(Date.now() - startedAt).toBeLessThan(1_900);
    expect(stalled).toMatchObject({ code: 'STORE_FAILED', retryable: false });
    expect(isShardchartError(stalled)).toBe(true);
    await expect(
      store.write({ key, expectedSeq: 1, entries: [entry(2)] }),
    ).rejects.toMatchObject({ code: 'STORE_FAILED', retryable: false });
    expect(await holder.exited).toBe(0);
    await store.close();

    // The stalled write was never acknowledged; it may have reached the
    // disk once the lock was released. Either way the journal is whole and
    // the store takes writes again after reopening.
    const reopened = lmdbStore({ path });
    try {
      await reopened.open();
      const lastSeq = await reopened.journal.lastSeq(key);
      expect([1, 2]).toContain(lastSeq);
      const entries = [];
      for await (const e of reopened.journal.read(key, 1)) entries.push(e);
      expect(entries.map((e) => e.seq)).toEqual(
        Array.from({ length: lastSeq }, (_, n) => n + 1),
      );
      await reopened.write({
        key,
        expectedSeq: lastSeq,
        entries: [entry(lastSeq + 1)],
      });
      expect(await reopened.journal.lastSeq(key)).toBe(lastSeq + 1);
    } finally {
      await reopened.close();
    }
  });
});
