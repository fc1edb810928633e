/**
 * Corrupt records in an LMDB store. Goal: a damaged value is reported as
 * `STORE_CORRUPT` naming the entity, never loaded and never a crash, and the
 * other entities stay readable. Method: write through `lmdbStore`, close it,
 * damage one stored value in place through lmdb-js directly (flipped bits,
 * a cut-short value, or a valid frame of the wrong shape), then reopen.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { open } from 'lmdb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { lmdbStore } from '../../adapters/lmdb/index.js';
import {
  deadLetterKey,
  encodeEntity,
  logKey,
} from '../../adapters/lmdb/keys.js';
import { encodeLogRecord } from '../../adapters/lmdb/records.js';
import { isShardchartError } from '../../src/errors.js';
import type {
  EntityKey,
  Store,
  StoredSnapshot,
} from '../../src/persistence/types.js';

const A: EntityKey = { type: 'order', id: 'a' };
const B: EntityKey = { type: 'order', id: 'b' };

let path: string;
let store: Store | undefined;

beforeEach(async () => {
  path = mkdtempSync(join(tmpdir(), 'shardchart-lmdb-corrupt-'));
  const writer = lmdbStore({ path });
  for (const key of [A, B]) {
    await writer.write({
      key,
      expectedSeq: 0,
      entries: [1, 2, 3].map((seq) => ({
        seq,
        at: seq,
        event: { type: 'CHANGED', who: key.id, seq },
      })),
      snapshot: snapshotAt(3, key.id),
      wakeAt: 1_000,
    });
    await writer.appendDeadLetter({
      key,
      event: { type: 'PAY' },
      code: 'EVENT_FAILED',
      message: 'boom',
      at: 1,
      seq: 3,
    });
  }
  await writer.close();
});

afterEach(async () => {
  await store?.close();
  store = undefined;
  rmSync(path, { recursive: true, force: true });
});

describe('lmdb corruption', () => {
  // Each entity write is one log record: A's is at position 1, B's at 2.
  it('journal - a flipped bit fails the read of that entity only', async () => {
    await damage('log', logKey(1), flipBit);
    store = lmdbStore({ path });

    const error = await rejectionOf(collect(store.journal.read(A, 1)));
    expectCorrupt(error, A, 'checksum');
    expect((error as Error).message).toContain("'order/a'");
    expect((error as Error).message).toMatch(/backup/);
    // The seq index and other entities still read.
    expect(await store.journal.lastSeq(A)).toBe(3);
    expect(await collect(store.journal.read(B, 1))).toHaveLength(3);
    expect(await store.snapshots.load(B)).toEqual(snapshotAt(3, 'b'));
  });

  it('journal - a value cut short is reported as corrupt', async () => {
    await damage('log', logKey(1), (bytes) => bytes.subarray(0, 3));
    store = lmdbStore({ path });
    expectCorrupt(
      await rejectionOf(collect(store.journal.read(A, 1))),
      A,
      'truncated',
    );
    expect(await collect(store.journal.read(B, 1))).toHaveLength(3);
  });

  it('journal - a valid frame holding another seq is reported as corrupt', async () => {
    await damage('log', logKey(1), () =>
      encodeLogRecord(prefixOf(A), A, 1, [{ seq: 9, at: 0, event: { type: 'CHANGED' } }], undefined).fill(0, 0, 8),
    );
    store = lmdbStore({ path });
    expectCorrupt(
      await rejectionOf(collect(store.journal.read(A, 1))),
      A,
      'shape',
    );
  });

  it('journal - a record of another entity in the chain is reported as corrupt', async () => {
    await damage('log', logKey(1), () => {
      const bytes = encodeLogRecord(prefixOf(B), B, 1, [1, 2, 3].map((seq) => ({ seq, at: seq, event: { type: 'CHANGED' } })), undefined);
      return bytes.fill(0, 0, 8);
    });
    store = lmdbStore({ path });
    expectCorrupt(
      await rejectionOf(collect(store.journal.read(A, 1))),
      A,
      'chain',
    );
  });

  it('replay - a damaged record past the checkpoint fails its entity only, also after reopen', async () => {
    // The writer is never closed, as after a crash: its records are past
    // the last checkpoint and must be replayed by the next open.
    const crashedPath = mkdtempSync(join(tmpdir(), 'shardchart-lmdb-crashed-'));
    try {
      const crashed = lmdbStore({ path: crashedPath });
      for (let seq = 1; seq <= 3; seq++) {
        await crashed.write({ key: A, expectedSeq: seq - 1, entries: [{ seq, at: seq, event: { type: 'CHANGED' } }] });
      }
      await crashed.write({ key: B, expectedSeq: 0, entries: [{ seq: 1, at: 1, event: { type: 'CHANGED' } }] });
      await damage('log', logKey(2), flipBit, crashedPath);

      for (let open = 0; open < 2; open++) {
        store = lmdbStore({ path: crashedPath });
        expectCorrupt(await rejectionOf(collect(store.journal.read(A, 1))), A, 'damaged');
        expectCorrupt(await rejectionOf(store.journal.lastSeq(A)), A, 'damaged');
        expectCorrupt(
          await rejectionOf(store.write({ key: A, expectedSeq: 3, entries: [{ seq: 4, at: 4, event: { type: 'CHANGED' } }] })),
          A,
          'damaged',
        );
        // Every other entity opens, reads and writes as usual.
        const seqB = await store.journal.lastSeq(B);
        expect(seqB).toBe(1 + open);
        await store.write({ key: B, expectedSeq: seqB, entries: [{ seq: seqB + 1, at: 2, event: { type: 'CHANGED' } }] });
        expect(await collect(store.journal.read(B, 1))).toHaveLength(seqB + 1);
        // The second round opens after a checkpoint kept the damage mark.
        await store.close();
        store = undefined;
      }
    } finally {
      rmSync(crashedPath, { recursive: true, force: true });
    }
  });

  it('snapshot - a truncated snapshot fails load, a newer one replaces it', async () => {
    await damage('snapshots', prefixOf(A), (bytes) =>
      bytes.subarray(0, bytes.length - 4),
    );
    store = lmdbStore({ path });
    expectCorrupt(await rejectionOf(store.snapshots.load(A)), A, 'checksum');
    expect(await store.snapshots.load(B)).toEqual(snapshotAt(3, 'b'));
    // Recovery path: a fresh snapshot may overwrite the damaged one.
    await store.snapshots.save(A, snapshotAt(1, 'rebuilt'));
    expect(await store.snapshots.load(A)).toEqual(snapshotAt(1, 'rebuilt'));
  });

  it('wakeups and dead letters - damaged values are reported, not loaded', async () => {
    await damage('wakeups', prefixOf(B), flipBit);
    await damage('dead-letters', deadLetterKey(1), flipBit);
    store = lmdbStore({ path });
    expectCorrupt(
      await rejectionOf(collect(store.scanWakeups())),
      B,
      'checksum',
    );
    const letters = await rejectionOf(store.readDeadLetters());
    expect(isShardchartError(letters, 'STORE_CORRUPT')).toBe(true);
    expect(await store.readDeadLetters({ key: B })).toHaveLength(1);
  });
});

function prefixOf(key: EntityKey): Buffer {
  return encodeEntity(key, 1_000).prefix;
}

/** Rewrites one stored value through lmdb-js, bypassing the store. */
async function damage(
  dbName: string,
  key: Uint8Array,
  change: (bytes: Uint8Array) => Uint8Array,
  at: string = path,
): Promise<void> {
  const env = open<Uint8Array, Uint8Array>({
    path: at,
    encoding: 'binary',
    keyEncoding: 'binary',
  });
  try {
    const db = env.openDB<Uint8Array, Uint8Array>(dbName, {
      encoding: 'binary',
      keyEncoding: 'binary',
    });
    const bytes = db.get(key);
    if (bytes === undefined)
      throw new Error(
        `no value at ${dbName} ${Buffer.from(key).toString('hex')}`,
      );
    db.putSync(key, change(Uint8Array.from(bytes)));
  } finally {
    await env.close();
  }
}

function flipBit(bytes: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(bytes);
  const at = copy.length - 2;
  copy[at] = (copy[at] as number) ^ 0x10;
  return copy;
}

function snapshotAt(seq: number, tag: string): StoredSnapshot {
  return { v: 1, seq, at: seq, state: { tag }, timers: [], eventIds: [] };
}

function expectCorrupt(error: unknown, key: EntityKey, reason: string): void {
  expect(isShardchartError(error, 'STORE_CORRUPT'), String(error)).toBe(true);
  expect(error).toMatchObject({ details: { key, reason } });
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject, it resolved');
}
