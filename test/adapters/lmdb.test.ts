import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { lmdbStore } from '../../adapters/lmdb/index.js';
import { isShardchartError } from '../../src/errors.js';
import { runStoreConformance } from './conformance.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'shardchart-lmdb-'));
}

// fsync on, as in production; the property runs are fewer because every
// group of writes pays for a real fsync.
runStoreConformance(
  'lmdb',
  () => {
    const path = tempDir();
    return Promise.resolve({
      store: lmdbStore({ path }),
      reopen: () => Promise.resolve(lmdbStore({ path })),
      cleanup: () =>
        Promise.resolve(rmSync(path, { recursive: true, force: true })),
    });
  },
  { propertyRuns: 15 },
);

// The same contract with a checkpoint every 3 log records and a cache of 2
// entities, so checkpoints land between and inside concurrent writes and
// heads are read back from the database all the time. Sync is off: this run
// is about the memory/database hand-over, not the fsync.
runStoreConformance(
  'lmdb (checkpoint every 3 records, cache of 2)',
  () => {
    const path = tempDir();
    const options = { path, sync: false, checkpointRecords: 3, cachedEntitiesMax: 2 };
    return Promise.resolve({
      store: lmdbStore(options),
      reopen: () => Promise.resolve(lmdbStore(options)),
      cleanup: () =>
        Promise.resolve(rmSync(path, { recursive: true, force: true })),
    });
  },
  { propertyRuns: 15 },
);

describe('lmdb store', () => {
  it('replay - writes after the last checkpoint are rebuilt from the log on open', async () => {
    const path = tempDir();
    // The first store is never closed, as after a crash: its heads and
    // wake-ups past the last checkpoint exist only in the log.
    const crashed = lmdbStore({ path, checkpointRecords: 4 });
    try {
      const keys = Array.from({ length: 5 }, (_, i) => ({ type: 'order', id: `o-${i}` }));
      const seqs = new Map<string, number>();
      for (let round = 0; round < 3; round++) {
        await Promise.all(
          keys.map(async (key, i) => {
            const expectedSeq = seqs.get(key.id) ?? 0;
            await crashed.write({
              key,
              expectedSeq,
              entries: [{ seq: expectedSeq + 1, at: round, event: { type: 'E', round, i } }],
              wakeAt: i === 0 ? null : 1_000 * (round + 1) + i,
            });
            seqs.set(key.id, expectedSeq + 1);
          }),
        );
      }
      const reopened = lmdbStore({ path, checkpointRecords: 4 });
      try {
        for (const key of keys) {
          expect(await reopened.journal.lastSeq(key)).toBe(3);
          const entries = [];
          for await (const entry of reopened.journal.read(key, 1)) entries.push(entry);
          expect(entries.map((e) => [e.seq, e.event.round])).toEqual([[1, 0], [2, 1], [3, 2]]);
        }
        const wakeups = [];
        for await (const w of reopened.scanWakeups()) wakeups.push([w.key.id, w.wakeAt]);
        expect(wakeups.sort()).toEqual([['o-1', 3_001], ['o-2', 3_002], ['o-3', 3_003], ['o-4', 3_004]]);
        // The rebuilt heads are where the next writes link to.
        await reopened.write({ key: keys[1]!, expectedSeq: 3, entries: [{ seq: 4, at: 9, event: { type: 'E' } }] });
        const stale = await reopened
          .write({ key: keys[1]!, expectedSeq: 3, entries: [{ seq: 4, at: 9, event: { type: 'E' } }] })
          .catch((error: unknown) => error);
        expect(isShardchartError(stale, 'STORE_CONFLICT')).toBe(true);
      } finally {
        await reopened.close();
      }
    } finally {
      rmSync(path, { recursive: true, force: true });
    }
  });

  it('options - durable follows sync, bad options are a ConfigError', async () => {
    const path = tempDir();
    try {
      expect(lmdbStore({ path }).durable).toBe(true);
      const unsynced = lmdbStore({ path, sync: false });
      expect(unsynced.durable).toBe(false);
      expect(unsynced.kind).toBe('lmdb');
      for (const bad of [
        { path: '' },
        { path, sync: 'yes' },
        { path, mapSizeBytes: 12 },
        { path, commitOpsMax: 0 },
        { path, commitTimeoutMs: 1.5 },
      ]) {
        let thrown: unknown;
        try {
          lmdbStore(bad as never);
        } catch (error) {
          thrown = error;
        }
        expect(
          isShardchartError(thrown, 'CONFIG_INVALID'),
          JSON.stringify(bad),
        ).toBe(true);
      }
    } finally {
      rmSync(path, { recursive: true, force: true });
    }
  });

  it('sync off - writes and reads back, also after reopen', async () => {
    const root = tempDir();
    // A dotted name is still a directory, not a data file name.
    const path = join(root, 'orders.db');
    try {
      const store = lmdbStore({ path, sync: false });
      await store.open();
      const key = { type: 'order', id: 'o-1' };
      await Promise.all(
        Array.from({ length: 50 }, (_, n) =>
          store.write({
            key: { type: 'order', id: `o-${n}` },
            expectedSeq: 0,
            entries: [{ seq: 1, at: n, event: { type: 'PLACE', n } }],
          }),
        ),
      );
      expect(await store.sizeBytes()).toBeGreaterThan(0);
      await store.close();
      const again = lmdbStore({ path, sync: false });
      expect(await again.journal.lastSeq(key)).toBe(1);
      await again.close();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('keys - an entity key longer than LMDB keys allow is rejected', async () => {
    const path = tempDir();
    const store = lmdbStore({ path });
    try {
      await expect(
        store.journal.append(
          { type: 'order', id: 'x'.repeat(5_000) },
          [{ seq: 1, at: 0, event: { type: 'PLACE' } }],
          0,
        ),
      ).rejects.toMatchObject({ code: 'ENTITY_ID_INVALID' });
    } finally {
      await store.close();
      rmSync(path, { recursive: true, force: true });
    }
  });

  it('limits - writes beyond pendingOpsMax are refused with a retryable STORE_FAILED', async () => {
    const path = tempDir();
    const store = lmdbStore({ path, sync: false, pendingOpsMax: 10 });
    try {
      await store.open();
      const results = await Promise.allSettled(
        Array.from({ length: 40 }, (_, n) =>
          store.journal.append(
            { type: 'order', id: `p-${n}` },
            [{ seq: 1, at: 0, event: { type: 'PLACE' } }],
            0,
          ),
        ),
      );
      const refused = results.filter(
        (result): result is PromiseRejectedResult =>
          result.status === 'rejected',
      );
      expect(refused.length).toBeGreaterThan(0);
      for (const result of refused) {
        expect(result.reason).toMatchObject({
          code: 'STORE_FAILED',
          retryable: true,
        });
      }
    } finally {
      await store.close();
      rmSync(path, { recursive: true, force: true });
    }
  });
});
