/**
 * The store conformance suite: every adapter runs it through
 * `runStoreConformance(name, makeStore)`. It checks the contract in
 * `src/persistence/types.ts` through the public `Store` interface only:
 * seq checks, group-commit isolation, snapshot ordering, the timer index,
 * entity scans, dead letters, reopening and closing, and a fast-check
 * property that runs random concurrent writes against a simple model.
 *
 * Writes issued without waiting are expected to apply in call order (the
 * engine pipelines appends of one entity); reads are checked only after the
 * writes before them have settled.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';

import { isShardchartError } from '../../src/errors.js';
import type {
  DeadLetter,
  EntityKey,
  EntityWrite,
  JournalEntry,
  Store,
  StoredSnapshot,
} from '../../src/persistence/types.js';

/** What an adapter's test file hands the suite for each test. */
export interface StoreFixture {
  store: Store;
  /** Opens a new store on the same storage, after `store` was closed. */
  reopen?: () => Promise<Store>;
  /** Removes the storage; called after every store of the test is closed. */
  cleanup?: () => Promise<void>;
}

/** Knobs for slow (fsyncing) adapters. */
export interface ConformanceOptions {
  /** fast-check runs of the model property. Default 40. */
  propertyRuns?: number;
}

export function runStoreConformance(
  name: string,
  makeStore: () => Promise<StoreFixture>,
  options: ConformanceOptions = {},
): void {
  const open: Store[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  /** A fixture whose stores are opened now and closed after the test. */
  async function fixture(): Promise<
    StoreFixture & { reopen?: () => Promise<Store> }
  > {
    const made = await makeStore();
    open.push(made.store);
    if (made.cleanup) cleanups.push(made.cleanup);
    await made.store.open();
    const reopen = made.reopen;
    return {
      ...made,
      ...(reopen === undefined
        ? {}
        : {
            reopen: async () => {
              const again = await reopen();
              open.push(again);
              await again.open();
              return again;
            },
          }),
    };
  }

  async function fresh(): Promise<Store> {
    return (await fixture()).store;
  }

  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  describe(`${name} store conformance`, () => {
    it('journal - appended entries read back in seq order, by range', async () => {
      const store = await fresh();
      const key = entityKey('order', 'o-1');
      await store.journal.append(key, entries(1, 3), 0);
      await store.journal.append(key, entries(4, 5), 3);

      expect(await collect(store.journal.read(key, 1))).toEqual(entries(1, 5));
      expect(await collect(store.journal.read(key, 0))).toEqual(entries(1, 5));
      expect(await collect(store.journal.read(key, 2, 4))).toEqual(
        entries(2, 4),
      );
      expect(await collect(store.journal.read(key, 4, 100))).toEqual(
        entries(4, 5),
      );
      expect(await collect(store.journal.read(key, 5, 5))).toEqual(
        entries(5, 5),
      );
      expect(await collect(store.journal.read(key, 6))).toEqual([]);
      expect(await collect(store.journal.read(key, 4, 3))).toEqual([]);
      expect(await store.journal.lastSeq(key)).toBe(5);
    });

    it('journal - an unknown entity has lastSeq 0 and an empty journal', async () => {
      const store = await fresh();
      const key = entityKey('order', 'nobody');
      expect(await store.journal.lastSeq(key)).toBe(0);
      expect(await collect(store.journal.read(key, 1))).toEqual([]);
      expect(await store.snapshots.load(key)).toBeUndefined();
    });

    it('journal - entities with similar keys stay apart', async () => {
      const store = await fresh();
      const keys = [
        entityKey('a', 'b'),
        entityKey('a', 'b\u0000c'),
        entityKey('a\u0000b', ''),
        entityKey('ab', ''),
        entityKey('a', 'bb'),
        entityKey('a', 'ü'.repeat(80)),
      ];
      for (const [i, key] of keys.entries()) {
        await store.journal.append(key, entries(1, i + 1, `k${i}`), 0);
      }
      for (const [i, key] of keys.entries()) {
        expect(await collect(store.journal.read(key, 1))).toEqual(
          entries(1, i + 1, `k${i}`),
        );
        expect(await store.journal.lastSeq(key)).toBe(i + 1);
      }
    });

    it('journal - a long journal streams completely across read chunks', async () => {
      const store = await fresh();
      const key = entityKey('ledger', 'big');
      await store.journal.append(key, entries(1, 700), 0);
      const read = await collect(store.journal.read(key, 1));
      expect(read.map((entry) => entry.seq)).toEqual(range(1, 700));
      expect(await collect(store.journal.read(key, 250, 520))).toEqual(
        entries(250, 520),
      );
    });

    it('seq - a stale expectedSeq is rejected with STORE_CONFLICT', async () => {
      const store = await fresh();
      const key = entityKey('order', 'o-2');
      await store.journal.append(key, entries(1, 2), 0);
      const error = await rejectionOf(
        store.journal.append(key, entries(2, 2), 1),
      );
      expect(isShardchartError(error, 'STORE_CONFLICT')).toBe(true);
      expect(error).toMatchObject({
        retryable: false,
        details: { key, expectedSeq: 1, actualSeq: 2 },
      });
      expect(await collect(store.journal.read(key, 1))).toEqual(entries(1, 2));
    });

    it('seq - an expectedSeq past the end (a gap) is rejected with STORE_CONFLICT', async () => {
      const store = await fresh();
      const key = entityKey('order', 'o-3');
      await store.journal.append(key, entries(1, 1), 0);
      const error = await rejectionOf(
        store.journal.append(key, entries(4, 4), 3),
      );
      expect(isShardchartError(error, 'STORE_CONFLICT')).toBe(true);
      expect(error).toMatchObject({
        details: { key, expectedSeq: 3, actualSeq: 1 },
      });
      expect(await store.journal.lastSeq(key)).toBe(1);
    });

    it('seq - entries that do not follow expectedSeq are a programmer error', async () => {
      const store = await fresh();
      const key = entityKey('order', 'o-4');
      expect(() =>
        store.write({ key, expectedSeq: 0, entries: entries(2, 3) }),
      ).toThrow(/consecutive/);
      expect(() =>
        store.write({ key, expectedSeq: 0, entries: [entry(1), entry(3)] }),
      ).toThrow(/consecutive/);
      expect(await store.journal.lastSeq(key)).toBe(0);
    });

    it('seq - concurrent appends with the same expectedSeq: exactly one wins', async () => {
      const store = await fresh();
      const key = entityKey('order', 'race');
      const attempts = range(0, 7).map((n) =>
        store.journal.append(key, entries(1, 2, `w${n}`), 0),
      );
      const results = await Promise.allSettled(attempts);
      const won = results.flatMap((result, n) =>
        result.status === 'fulfilled' ? [n] : [],
      );
      expect(won).toHaveLength(1);
      for (const result of results) {
        if (result.status === 'rejected') {
          expect(isShardchartError(result.reason, 'STORE_CONFLICT')).toBe(true);
        }
      }
      expect(await collect(store.journal.read(key, 1))).toEqual(
        entries(1, 2, `w${won[0] as number}`),
      );
    });

    it('seq - writes issued without waiting apply in call order', async () => {
      const store = await fresh();
      const key = entityKey('order', 'pipelined');
      await Promise.all([
        store.journal.append(key, entries(1, 2), 0),
        store.journal.append(key, entries(3, 3), 2),
        store.journal.append(key, entries(4, 6), 3),
      ]);
      expect(await collect(store.journal.read(key, 1))).toEqual(entries(1, 6));
    });

    it('seq - appends issued in later ticks while earlier ones commit apply in order', async () => {
      const store = await fresh();
      const key = entityKey('order', 'across-ticks');
      const calls: Promise<unknown>[] = [];
      for (let seq = 1; seq <= 8; seq++) {
        calls.push(store.journal.append(key, entries(seq, seq), seq - 1));
        if (seq % 2 === 0) {
          calls.push(store.snapshots.save(key, snapshot(seq, `s${seq}`)));
        }
        await nextTick();
      }
      await Promise.all(calls);
      expect(await collect(store.journal.read(key, 1))).toEqual(entries(1, 8));
      expect(await store.snapshots.load(key)).toEqual(snapshot(8, 's8'));
      const stale = rejectionOf(store.journal.append(key, entries(8, 8), 7));
      await nextTick();
      const fine = store.journal.append(key, entries(9, 9), 8);
      expect(await stale).toMatchObject({ code: 'STORE_CONFLICT' });
      await fine;
      expect(await store.journal.lastSeq(key)).toBe(9);
    });

    it('group commit - concurrent writes to 500 entities all succeed and read back', async () => {
      const store = await fresh();
      const keys = range(0, 499).map((n) => entityKey('account', `a-${n}`));
      await Promise.all(
        keys.map((key, n) =>
          store.write({
            key,
            expectedSeq: 0,
            entries: entries(1, 1 + (n % 3), key.id),
            wakeAt: n % 2 === 0 ? 1_000 + n : undefined,
          }),
        ),
      );
      for (const [n, key] of keys.entries()) {
        expect(await store.journal.lastSeq(key)).toBe(1 + (n % 3));
        expect(await collect(store.journal.read(key, 1))).toEqual(
          entries(1, 1 + (n % 3), key.id),
        );
      }
      const wakeups = await collect(store.scanWakeups());
      expect(wakeups).toHaveLength(250);
      expect(await collect(store.scanEntities('account'))).toHaveLength(500);
    });

    it('group commit - one conflicting write in a batch does not fail the others', async () => {
      const store = await fresh();
      const keys = range(0, 9).map((n) => entityKey('account', `b-${n}`));
      await Promise.all(
        keys.map((key) => store.journal.append(key, entries(1, 1), 0)),
      );
      const stale = keys[4] as EntityKey;
      const results = await Promise.allSettled(
        keys.map((key) =>
          key === stale
            ? store.write({
                key,
                expectedSeq: 0,
                entries: entries(1, 1, 'late'),
                snapshot: snapshot(1, 'late'),
                wakeAt: 5,
              })
            : store.journal.append(key, entries(2, 3), 1),
        ),
      );
      for (const [n, result] of results.entries()) {
        if (keys[n] === stale) {
          expect(result.status).toBe('rejected');
          expect(
            isShardchartError(
              (result as PromiseRejectedResult).reason,
              'STORE_CONFLICT',
            ),
          ).toBe(true);
        } else {
          expect(result.status).toBe('fulfilled');
        }
      }
      for (const key of keys) {
        expect(await store.journal.lastSeq(key)).toBe(key === stale ? 1 : 3);
      }
      // The rejected write left no trace: no snapshot, no wake-up.
      expect(await store.snapshots.load(stale)).toBeUndefined();
      expect(await collect(store.scanWakeups())).toEqual([]);
    });

    it('snapshot - never moves backwards: save 10 then 5 loads 10', async () => {
      const store = await fresh();
      const key = entityKey('order', 's-1');
      await store.snapshots.save(key, snapshot(10, 'ten'));
      await store.snapshots.save(key, snapshot(5, 'five'));
      expect(await store.snapshots.load(key)).toEqual(snapshot(10, 'ten'));
    });

    it('snapshot - an equal seq overwrites', async () => {
      const store = await fresh();
      const key = entityKey('order', 's-2');
      await store.snapshots.save(key, snapshot(10, 'first'));
      await store.snapshots.save(key, snapshot(10, 'second'));
      expect(await store.snapshots.load(key)).toEqual(snapshot(10, 'second'));
    });

    it('snapshot - concurrent saves keep the highest seq', async () => {
      const store = await fresh();
      const key = entityKey('order', 's-3');
      await Promise.all(
        [3, 9, 1, 7].map((seq) =>
          store.snapshots.save(key, snapshot(seq, `s${seq}`)),
        ),
      );
      expect(await store.snapshots.load(key)).toEqual(snapshot(9, 's9'));
    });

    it('snapshot - an older snapshot in a write is ignored, the entries are kept', async () => {
      const store = await fresh();
      const key = entityKey('order', 's-4');
      await store.write({
        key,
        expectedSeq: 0,
        entries: entries(1, 4),
        snapshot: snapshot(4, 'four'),
      });
      await store.write({
        key,
        expectedSeq: 4,
        entries: entries(5, 5),
        snapshot: snapshot(2, 'two'),
      });
      expect(await store.snapshots.load(key)).toEqual(snapshot(4, 'four'));
      expect(await store.journal.lastSeq(key)).toBe(5);
    });

    it('write - entries, snapshot and wakeAt apply together', async () => {
      const store = await fresh();
      const key = entityKey('timer', 't-1');
      await store.write({
        key,
        expectedSeq: 0,
        entries: entries(1, 3),
        snapshot: snapshot(3, 'three'),
        wakeAt: 42_000,
      });
      expect(await collect(store.journal.read(key, 1))).toEqual(entries(1, 3));
      expect(await store.snapshots.load(key)).toEqual(snapshot(3, 'three'));
      expect(await collect(store.scanWakeups())).toEqual([
        { key, wakeAt: 42_000 },
      ]);

      // A conflicting write changes none of the three.
      await expect(
        store.write({
          key,
          expectedSeq: 1,
          entries: entries(2, 4, 'x'),
          snapshot: snapshot(4, 'x'),
          wakeAt: 1,
        }),
      ).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      expect(await collect(store.journal.read(key, 1))).toEqual(entries(1, 3));
      expect(await store.snapshots.load(key)).toEqual(snapshot(3, 'three'));
      expect(await collect(store.scanWakeups())).toEqual([
        { key, wakeAt: 42_000 },
      ]);
    });

    it('write - an empty write checks the seq and may carry only a snapshot', async () => {
      const store = await fresh();
      const key = entityKey('order', 'e-1');
      await store.journal.append(key, entries(1, 2), 0);
      await store.write({
        key,
        expectedSeq: 2,
        entries: [],
        snapshot: snapshot(2, 'two'),
      });
      expect(await store.snapshots.load(key)).toEqual(snapshot(2, 'two'));
      await expect(
        store.write({ key, expectedSeq: 1, entries: [] }),
      ).rejects.toMatchObject({
        code: 'STORE_CONFLICT',
      });
    });

    it('wakeups - null removes the entity from scanWakeups, undefined leaves it', async () => {
      const store = await fresh();
      const a = entityKey('timer', 'a');
      const b = entityKey('timer', 'b');
      await store.write({
        key: a,
        expectedSeq: 0,
        entries: entries(1, 1),
        wakeAt: 100,
      });
      await store.write({
        key: b,
        expectedSeq: 0,
        entries: entries(1, 1),
        wakeAt: 200,
      });
      await store.write({ key: a, expectedSeq: 1, entries: entries(2, 2) });
      expect(sortWakeups(await collect(store.scanWakeups()))).toEqual([
        { key: a, wakeAt: 100 },
        { key: b, wakeAt: 200 },
      ]);
      await store.write({
        key: a,
        expectedSeq: 2,
        entries: entries(3, 3),
        wakeAt: 150,
      });
      await store.write({ key: b, expectedSeq: 1, entries: [], wakeAt: null });
      expect(await collect(store.scanWakeups())).toEqual([
        { key: a, wakeAt: 150 },
      ]);
      await store.write({ key: a, expectedSeq: 3, entries: [], wakeAt: null });
      expect(await collect(store.scanWakeups())).toEqual([]);
    });

    it('scanEntities - lists entities with a journal or a snapshot once, by type', async () => {
      const store = await fresh();
      await store.journal.append(entityKey('order', 'o-1'), entries(1, 3), 0);
      await store.write({
        key: entityKey('order', 'o-2'),
        expectedSeq: 0,
        entries: entries(1, 1),
        snapshot: snapshot(1, 'one'),
      });
      await store.snapshots.save(
        entityKey('order', 'o-3'),
        snapshot(4, 'only'),
      );
      await store.journal.append(entityKey('cart', 'c-1'), entries(1, 1), 0);
      // A wake-up alone does not make an entity.
      await store.write({
        key: entityKey('order', 'o-4'),
        expectedSeq: 0,
        entries: [],
        wakeAt: 9,
      });

      expect(sortKeys(await collect(store.scanEntities('order')))).toEqual([
        entityKey('order', 'o-1'),
        entityKey('order', 'o-2'),
        entityKey('order', 'o-3'),
      ]);
      expect(sortKeys(await collect(store.scanEntities()))).toEqual([
        entityKey('cart', 'c-1'),
        entityKey('order', 'o-1'),
        entityKey('order', 'o-2'),
        entityKey('order', 'o-3'),
      ]);
      expect(await collect(store.scanEntities('nothing'))).toEqual([]);
    });

    it('dead letters - read back oldest first, by entity, up to a limit', async () => {
      const store = await fresh();
      const a = entityKey('order', 'a');
      const b = entityKey('order', 'b');
      const letters = [
        deadLetter(a, 1),
        deadLetter(b, 2),
        deadLetter(a, 3),
        deadLetter(a, 4),
      ];
      for (const letter of letters) await store.appendDeadLetter(letter);
      expect(await store.readDeadLetters()).toEqual(letters);
      expect(await store.readDeadLetters({ key: a })).toEqual([
        letters[0],
        letters[2],
        letters[3],
      ]);
      expect(await store.readDeadLetters({ key: b })).toEqual([letters[1]]);
      expect(await store.readDeadLetters({ limit: 2 })).toEqual(
        letters.slice(0, 2),
      );
      expect(await store.readDeadLetters({ key: a, limit: 1 })).toEqual([
        letters[0],
      ]);
      expect(
        await store.readDeadLetters({ key: entityKey('order', 'c') }),
      ).toEqual([]);
    });

    it('dead letters - the default limit is 1000', async () => {
      const store = await fresh();
      const key = entityKey('order', 'noisy');
      await Promise.all(
        range(1, 1005).map((n) => store.appendDeadLetter(deadLetter(key, n))),
      );
      const read = await store.readDeadLetters();
      expect(read).toHaveLength(1000);
      expect(read[0]).toEqual(deadLetter(key, 1));
      expect(read[999]).toEqual(deadLetter(key, 1000));
    });

    it('size - sizeBytes is a non-negative number', async () => {
      const store = await fresh();
      await store.journal.append(entityKey('order', 'o-1'), entries(1, 10), 0);
      const size = await store.sizeBytes();
      expect(Number.isFinite(size)).toBe(true);
      expect(size).toBeGreaterThan(0);
    });

    it('reopen - everything acknowledged is read back by a new store', async (context) => {
      const made = await fixture();
      if (made.reopen === undefined) {
        context.skip();
        return;
      }
      const store = made.store;
      const a = entityKey('order', 'a');
      const b = entityKey('order', 'b');
      await store.write({
        key: a,
        expectedSeq: 0,
        entries: entries(1, 3),
        snapshot: snapshot(2, 'two'),
        wakeAt: 77,
      });
      await store.journal.append(b, entries(1, 1), 0);
      await store.appendDeadLetter(deadLetter(a, 1));
      // Not awaited: close() must wait for it.
      const pending = store.journal.append(b, entries(2, 2), 1);
      await store.close();
      await pending;

      const again = await made.reopen();
      expect(await collect(again.journal.read(a, 1))).toEqual(entries(1, 3));
      expect(await collect(again.journal.read(b, 1))).toEqual(entries(1, 2));
      expect(await again.snapshots.load(a)).toEqual(snapshot(2, 'two'));
      expect(await collect(again.scanWakeups())).toEqual([
        { key: a, wakeAt: 77 },
      ]);
      expect(sortKeys(await collect(again.scanEntities()))).toEqual([a, b]);
      expect(await again.readDeadLetters()).toEqual([deadLetter(a, 1)]);
      expect(await again.journal.lastSeq(a)).toBe(3);
      // The seq check still holds with a cold cache.
      await expect(
        again.journal.append(a, entries(3, 3), 2),
      ).rejects.toMatchObject({
        code: 'STORE_CONFLICT',
      });
      await again.journal.append(a, entries(4, 4), 3);
      await again.appendDeadLetter(deadLetter(b, 2));
      expect(await again.readDeadLetters()).toEqual([
        deadLetter(a, 1),
        deadLetter(b, 2),
      ]);
    });

    it('close - open() after close() serves the same data again', async () => {
      const store = await fresh();
      const key = entityKey('order', 'again');
      await store.write({
        key,
        expectedSeq: 0,
        entries: entries(1, 2),
        snapshot: snapshot(2, 'two'),
        wakeAt: 5,
      });
      const pending = store.journal.append(key, entries(3, 3), 2);
      await store.close();
      await pending;
      await store.open();
      expect(await collect(store.journal.read(key, 1))).toEqual(entries(1, 3));
      expect(await store.snapshots.load(key)).toEqual(snapshot(2, 'two'));
      expect(await collect(store.scanWakeups())).toEqual([{ key, wakeAt: 5 }]);
      await expect(
        store.journal.append(key, entries(3, 3), 2),
      ).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await store.journal.append(key, entries(4, 4), 3);
      expect(await store.journal.lastSeq(key)).toBe(4);
    });

    it('close - every operation but open() rejects with STORE_CLOSED, close is idempotent', async () => {
      const store = await fresh();
      const key = entityKey('order', 'o-1');
      await store.journal.append(key, entries(1, 1), 0);
      await store.close();
      await store.close();
      const attempts: [string, () => Promise<unknown>][] = [
        [
          'write',
          () => store.write({ key, expectedSeq: 1, entries: entries(2, 2) }),
        ],
        ['append', () => store.journal.append(key, entries(2, 2), 1)],
        ['read', () => collect(store.journal.read(key, 1))],
        ['lastSeq', () => store.journal.lastSeq(key)],
        ['load', () => store.snapshots.load(key)],
        ['save', () => store.snapshots.save(key, snapshot(1, 'x'))],
        ['scanWakeups', () => collect(store.scanWakeups())],
        ['scanEntities', () => collect(store.scanEntities())],
        ['appendDeadLetter', () => store.appendDeadLetter(deadLetter(key, 1))],
        ['readDeadLetters', () => store.readDeadLetters()],
        ['sizeBytes', () => store.sizeBytes()],
      ];
      for (const [label, attempt] of attempts) {
        const error = await rejectionOf(attempt());
        expect(isShardchartError(error, 'STORE_CLOSED'), label).toBe(true);
      }
    });

    it('model - random concurrent writes and reads agree with a simple model', async () => {
      // Goal: any interleaving of writes (correct, stale and gapped seqs,
      // snapshots, wake-ups) leaves the store in the state a sequential
      // model predicts, with the same outcome for every write. Method: each
      // generated step runs a group of operations concurrently, then compares
      // every entity's journal, snapshot and wake-up with the model.
      await fc.assert(
        fc.asyncProperty(
          fc.array(groupArbitrary, { minLength: 1, maxLength: 8 }),
          async (groups) => {
            const store = await fresh();
            const model = new StoreModel();
            let tag = 0;
            try {
              for (const group of groups) {
                const expected: boolean[] = [];
                // Settled as they are issued, so a rejection waiting for the rest
                // of its group is never reported as unhandled.
                const calls: Promise<PromiseSettledResult<void>>[] = [];
                for (const op of group) {
                  const key = MODEL_KEYS[op.entity] as EntityKey;
                  tag++;
                  // Issuing some operations a tick later lets them meet earlier
                  // ones still committing.
                  if (op.later) await nextTick();
                  if (op.kind === 'save') {
                    const snap = snapshot(op.seq, `t${tag}`);
                    model.save(key, snap);
                    expected.push(true);
                    calls.push(settle(store.snapshots.save(key, snap)));
                    continue;
                  }
                  const last = model.lastSeq(key);
                  const expectedSeq =
                    op.seqMode === 'correct'
                      ? last
                      : op.seqMode === 'stale'
                        ? Math.max(0, last - 1)
                        : last + 1;
                  const write: EntityWrite = {
                    key,
                    expectedSeq,
                    entries: entries(
                      expectedSeq + 1,
                      expectedSeq + op.count,
                      `t${tag}`,
                    ),
                    ...(op.snapshotBack === undefined
                      ? {}
                      : {
                          snapshot: snapshot(
                            Math.max(
                              0,
                              expectedSeq + op.count - op.snapshotBack,
                            ),
                            `t${tag}`,
                          ),
                        }),
                    ...(op.wakeAt === 'keep' ? {} : { wakeAt: op.wakeAt }),
                  };
                  expected.push(model.write(write));
                  calls.push(settle(store.write(write)));
                }
                const results = await Promise.all(calls);
                for (const [i, result] of results.entries()) {
                  if (expected[i]) {
                    expect(result.status).toBe('fulfilled');
                  } else {
                    expect(result.status).toBe('rejected');
                    expect(
                      isShardchartError(
                        (result as PromiseRejectedResult).reason,
                        'STORE_CONFLICT',
                      ),
                    ).toBe(true);
                  }
                }
                await model.check(store);
              }
            } finally {
              await store.close();
            }
          },
        ),
        { numRuns: options.propertyRuns ?? 40 },
      );
    });
  });
}

// ---------------------------------------------------------------- model

const MODEL_KEYS = [
  entityKey('m', 'x'),
  entityKey('m', 'y'),
  entityKey('n', 'x'),
];

type ModelOp =
  | {
      kind: 'write';
      entity: number;
      seqMode: 'correct' | 'stale' | 'gap';
      count: number;
      snapshotBack: number | undefined;
      wakeAt: number | null | 'keep';
      later: boolean;
    }
  | { kind: 'save'; entity: number; seq: number; later: boolean };

const opArbitrary: fc.Arbitrary<ModelOp> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      entity: fc.nat({ max: MODEL_KEYS.length - 1 }),
      seqMode: fc.constantFrom<'correct' | 'stale' | 'gap'>(
        'correct',
        'correct',
        'correct',
        'stale',
        'gap',
      ),
      count: fc.nat({ max: 3 }),
      snapshotBack: fc.option(fc.nat({ max: 3 }), { nil: undefined }),
      wakeAt: fc.oneof(
        fc.constant('keep' as const),
        fc.constant(null),
        fc.integer({ min: 0, max: 1_000_000 }),
      ),
      later: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('save' as const),
      entity: fc.nat({ max: MODEL_KEYS.length - 1 }),
      seq: fc.nat({ max: 12 }),
      later: fc.boolean(),
    }),
  },
);

const groupArbitrary = fc.array(opArbitrary, { minLength: 1, maxLength: 6 });

/** The contract, sequentially, in the simplest possible form. */
class StoreModel {
  private readonly journals = new Map<string, JournalEntry[]>();
  private readonly snapshots = new Map<string, StoredSnapshot>();
  private readonly wakeups = new Map<string, number>();

  lastSeq(key: EntityKey): number {
    return this.journals.get(id(key))?.length ?? 0;
  }

  write(write: EntityWrite): boolean {
    if (this.lastSeq(write.key) !== write.expectedSeq) return false;
    const journal = this.journals.get(id(write.key)) ?? [];
    journal.push(...write.entries);
    this.journals.set(id(write.key), journal);
    if (write.snapshot) this.save(write.key, write.snapshot);
    if (write.wakeAt === null) this.wakeups.delete(id(write.key));
    else if (write.wakeAt !== undefined)
      this.wakeups.set(id(write.key), write.wakeAt);
    return true;
  }

  save(key: EntityKey, snap: StoredSnapshot): void {
    const current = this.snapshots.get(id(key));
    if (current === undefined || snap.seq >= current.seq)
      this.snapshots.set(id(key), snap);
  }

  async check(store: Store): Promise<void> {
    for (const key of MODEL_KEYS) {
      const journal = this.journals.get(id(key)) ?? [];
      expect(await store.journal.lastSeq(key)).toBe(journal.length);
      expect(await collect(store.journal.read(key, 1))).toEqual(journal);
      if (journal.length > 2) {
        expect(
          await collect(store.journal.read(key, 2, journal.length - 1)),
        ).toEqual(journal.slice(1, -1));
      }
      expect(await store.snapshots.load(key)).toEqual(
        this.snapshots.get(id(key)),
      );
    }
    const wakeups = [...this.wakeups.entries()].map(([name, wakeAt]) => ({
      key: MODEL_KEYS.find((key) => id(key) === name) as EntityKey,
      wakeAt,
    }));
    expect(sortWakeups(await collect(store.scanWakeups()))).toEqual(
      sortWakeups(wakeups),
    );
    const known = MODEL_KEYS.filter(
      (key) => this.lastSeq(key) > 0 || this.snapshots.has(id(key)),
    );
    expect(sortKeys(await collect(store.scanEntities()))).toEqual(
      sortKeys(known),
    );
  }
}

// ---------------------------------------------------------------- helpers

function entityKey(type: string, entityId: string): EntityKey {
  return { type, id: entityId };
}

function id(key: EntityKey): string {
  return JSON.stringify([key.type, key.id]);
}

/** A journal entry with a recognisable payload of about 100 bytes. */
function entry(seq: number, tag = 'e'): JournalEntry {
  return {
    seq,
    at: 1_700_000_000_000 + seq,
    event: { type: 'CHANGED', tag, amount: seq * 3, note: 'x'.repeat(40) },
    ...(seq % 2 === 0 ? { eventId: `${tag}-${seq}` } : {}),
  };
}

function entries(fromSeq: number, toSeq: number, tag?: string): JournalEntry[] {
  return range(fromSeq, toSeq).map((seq) => entry(seq, tag));
}

function snapshot(seq: number, tag: string): StoredSnapshot {
  return {
    v: 1,
    seq,
    at: 1_700_000_000_000 + seq,
    state: { value: 'open', context: { tag, seq } },
    timers: [],
    eventIds: [`${tag}-${seq}`],
  };
}

function deadLetter(key: EntityKey, n: number): DeadLetter {
  return {
    key,
    event: { type: 'PAY', n },
    eventId: `pay-${n}`,
    code: 'EVENT_FAILED',
    message: `failure ${n}`,
    at: 1_700_000_000_000 + n,
    seq: n,
  };
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let n = from; n <= to; n++) out.push(n);
  return out;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

function settle<T>(promise: Promise<T>): Promise<PromiseSettledResult<T>> {
  return promise.then(
    (value) => ({ status: 'fulfilled', value }),
    (reason: unknown) => ({ status: 'rejected', reason }),
  );
}

/** Resolves after the current macrotask: I/O callbacks may run meanwhile. */
function nextTick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject, it resolved');
}

function sortKeys(keys: EntityKey[]): EntityKey[] {
  return [...keys].sort((a, b) => id(a).localeCompare(id(b)));
}

function sortWakeups<T extends { key: EntityKey }>(items: T[]): T[] {
  return [...items].sort((a, b) => id(a.key).localeCompare(id(b.key)));
}
