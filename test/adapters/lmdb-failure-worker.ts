/**
 * Child process of `lmdb-failure.test.ts`, run under a file size limit
 * (`ulimit -f`) so that LMDB's data file cannot grow past it and a commit
 * fails with a real I/O error.
 *
 * Usage: `lmdb-failure-worker.ts <store dir>`. Prints one JSON line: the
 * writes acknowledged per entity and, for each failure cycle (open, write
 * until a commit fails, try more, close), the outcome of every write in the
 * order they were issued and of the operations tried after the failure.
 */
import { pathToFileURL } from 'node:url';

import { lmdbStore } from '../../adapters/lmdb/index.js';
import type { EntityKey, Store } from '../../src/persistence/types.js';

export const ENTITIES = 8;
/** Small writes per entity before the store is pushed to its limit. */
export const FIRST_WRITES = 3;
/** Rounds per cycle at most; far more than the file limit allows. */
const ROUNDS_MAX = 200;
/**
 * Cycles of open, fail, close. Whether a batch is still queued behind the
 * failed one, rather than in its transaction, depends on lmdb-js's write
 * thread, so the failure is repeated to meet that case.
 */
export const CYCLES = 12;
const LARGE_EVENT_CHARS = 128 * 1024;

export interface Outcome {
  /** Entity index. */
  readonly entity: number;
  readonly seq: number;
  readonly ok: boolean;
  readonly code?: string;
  readonly retryable?: boolean;
}

export interface Cycle {
  /** Writes, in issue order. */
  readonly outcomes: Outcome[];
  /** Write, snapshot save and dead letter tried after the failure. */
  readonly after: Outcome[];
}

export interface WorkerReport {
  /** Seq of the last acknowledged write per entity. */
  readonly acked: number[];
  readonly cycles: Cycle[];
}

export const keyOf = (i: number): EntityKey => ({
  type: 'order',
  id: `o-${i}`,
});

function outcome(entity: number, seq: number, error?: unknown): Outcome {
  if (error === undefined) return { entity, seq, ok: true };
  const { code, retryable } = error as { code?: string; retryable?: boolean };
  return { entity, seq, ok: false, code, retryable };
}

const turn = (): Promise<void> =>
  new Promise((resolve) => setImmediate(resolve));

async function main(path: string): Promise<void> {
  const store = lmdbStore({ path });
  await store.open();
  const acked = new Array<number>(ENTITIES).fill(0);
  await Promise.all(
    Array.from({ length: ENTITIES }, async (_, i) => {
      for (let seq = 1; seq <= FIRST_WRITES; seq++) {
        await store.write({
          key: keyOf(i),
          expectedSeq: seq - 1,
          entries: [{ seq, at: 0, event: { type: 'SMALL', n: seq } }],
        });
        acked[i] = seq;
      }
    }),
  );
  const cycles: Cycle[] = [];
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    await store.open();
    cycles.push(await failOnce(store, acked));
    await store.close();
  }
  const report: WorkerReport = { acked, cycles };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

/**
 * Rounds of two event-loop turns: large writes to the first half of the
 * entities, then small ones to the other half, none awaited, until one
 * fails. Each turn's writes become one batch. A small batch queued in
 * lmdb-js behind a failed large one would fit on disk and commit, were it
 * not chained to the batch before it.
 */
async function failOnce(store: Store, acked: number[]): Promise<Cycle> {
  const outcomes: Outcome[] = [];
  const settled: Promise<void>[] = [];
  const next = acked.map((seq) => seq + 1);
  let failed = false;
  const big = 'x'.repeat(LARGE_EVENT_CHARS);
  const write = (i: number, event: { type: string; big?: string }): void => {
    const seq = next[i]!++;
    const index = outcomes.length;
    outcomes.push(outcome(i, seq, 'pending'));
    settled.push(
      store
        .write({
          key: keyOf(i),
          expectedSeq: seq - 1,
          entries: [{ seq, at: 0, event }],
        })
        .then(
          () => {
            outcomes[index] = outcome(i, seq);
            acked[i] = Math.max(acked[i]!, seq);
          },
          (error: unknown) => {
            outcomes[index] = outcome(i, seq, error);
            failed = true;
          },
        ),
    );
  };
  for (let round = 0; round < ROUNDS_MAX && !failed; round++) {
    for (let i = 0; i < ENTITIES / 2; i++) write(i, { type: 'LARGE', big });
    await turn();
    for (let i = ENTITIES / 2; i < ENTITIES; i++) write(i, { type: 'SMALL' });
    await turn();
  }
  await Promise.all(settled);

  const after: Outcome[] = [];
  const tries: [number, () => Promise<void>][] = [
    [
      acked[0]! + 1,
      () =>
        store.write({
          key: keyOf(0),
          expectedSeq: acked[0]!,
          entries: [{ seq: acked[0]! + 1, at: 0, event: { type: 'AFTER' } }],
        }),
    ],
    [
      acked[1]!,
      () =>
        store.snapshots.save(keyOf(1), {
          v: 1,
          seq: acked[1]!,
          at: 0,
          state: { value: 'x' },
          timers: [],
          eventIds: [],
        }),
    ],
    [
      acked[2]!,
      () =>
        store.appendDeadLetter({
          key: keyOf(2),
          event: { type: 'LOST' },
          code: 'EVENT_FAILED',
          message: 'written after the store failed',
          at: 0,
          seq: acked[2]!,
        }),
    ],
  ];
  for (const [entity, [seq, attempt]] of tries.entries()) {
    try {
      await attempt();
      after.push(outcome(entity, seq));
    } catch (error) {
      after.push(outcome(entity, seq, error));
    }
  }
  return { outcomes, after };
}

const isMain =
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) await main(process.argv[2] as string);
