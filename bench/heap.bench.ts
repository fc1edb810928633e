/**
 * Heap per entity: `process.memoryUsage().heapUsed` after a full collection,
 * before and after bringing 10,000 entities to life, divided by 10,000.
 *
 * - plain XState: 10,000 started actors, each sent one event.
 * - live idle entity: 10,000 Shardchart entities, each sent one event
 *   (so each is activated, journaled and holds a dedupe entry), then idle.
 * - passivated entity: the same entities after `passivate()`; the bar is
 *   that nothing stays behind.
 *
 * Shardchart runs on LMDB here, because the memory store keeps every journal
 * on the JS heap and would be counted as entity memory; LMDB keeps data
 * outside it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createActorSystem, type EntityRef } from 'shardchart';
import { lmdbStore } from 'shardchart/adapters/lmdb';
import { createActor, type AnyActorRef } from 'xstate';
import type { BenchContext, Section } from './run.js';
import { benchCycle, benchMachine, entityType } from './throughput.bench.js';

/** Per-entity residue below this is measurement noise, i.e. "no heap". */
const noiseBytes = 16;

async function settledHeap(ctx: BenchContext): Promise<number> {
  // Let pending promise callbacks and timers run before collecting.
  await sleep(50);
  ctx.gc();
  await sleep(10);
  ctx.gc();
  return process.memoryUsage().heapUsed;
}

async function runConcurrently(
  count: number,
  concurrency: number,
  fn: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Brings `prefix-0` .. `prefix-(n-1)` to life with one event each. */
async function activateAll(
  system: { entity(type: string, id: string): EntityRef },
  prefix: string,
  n: number,
  sendersMax: number,
): Promise<void> {
  await runConcurrently(n, sendersMax, (i) =>
    system
      .entity(entityType, `${prefix}-${i}`)
      .send(benchCycle[0], { eventId: `${prefix}-${i}:0` }),
  );
}

/**
 * Heap per entity of a system on LMDB: live and idle after one event each,
 * then after passivating them all.
 */
async function measureEntities(
  ctx: BenchContext,
  storeOptions: { cachedEntitiesMax?: number },
): Promise<{ livePer: number; passivatedPer: number }> {
  const n = ctx.entities;
  const dir = await mkdtemp(join(tmpdir(), 'shardchart-bench-'));
  try {
    const system = await createActorSystem({
      name: 'bench-heap',
      logger: ctx.logger,
      entities: { [entityType]: benchMachine },
      store: lmdbStore({ path: join(dir, 'db'), ...storeOptions }),
      passivateAfterMs: 0,
    });
    // A first round (activate, then passivate) brings the one-off costs to
    // their high-water mark: compiled code, lmdb-js buffers, table sizes.
    // Measured alone, they would add ~30 B to every entity of 10,000 and
    // look like a per-entity residue; they do not grow with the count.
    await activateAll(system, 'warm', n, ctx.sendersMax);
    await runConcurrently(n, ctx.sendersMax, (i) =>
      system.entity(entityType, `warm-${i}`).passivate(),
    );
    const before = await settledHeap(ctx);
    await activateAll(system, 'h', n, ctx.sendersMax);
    const live = await settledHeap(ctx);
    await runConcurrently(n, ctx.sendersMax, (i) =>
      system.entity(entityType, `h-${i}`).passivate(),
    );
    const passivated = await settledHeap(ctx);
    await system.stop();
    return {
      livePer: (live - before) / n,
      passivatedPer: (passivated - before) / n,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function heap(ctx: BenchContext): Promise<Section> {
  const n = ctx.entities;
  const first = benchCycle[0];

  // The same warm-up as for Shardchart below: one round created and
  // dropped before the baseline.
  const createPlain = (): AnyActorRef[] =>
    Array.from({ length: n }, () => {
      const actor = createActor(benchMachine).start();
      actor.send(first);
      return actor;
    });
  for (const actor of createPlain()) actor.stop();
  const plainBefore = await settledHeap(ctx);
  const actors = createPlain();
  const plainAfter = await settledHeap(ctx);
  const plainPer = (plainAfter - plainBefore) / n;
  for (const actor of actors) actor.stop();

  const defaults = await measureEntities(ctx, {});
  // The LMDB store remembers each entity's seqs (a bounded cache, 1,000,000
  // entries by default); with it shrunk to one entry, what is left after
  // passivation is the engine's own residue.
  const engineOnly = await measureEntities(ctx, { cachedEntitiesMax: 1 });
  const livePer = defaults.livePer;
  const passivatedPer = defaults.passivatedPer;

  const bytes = (v: number): string =>
    `${Math.round(v).toLocaleString('en-US')} B`;
  const ratio = livePer / plainPer;
  return {
    title: `heap: ${n.toLocaleString('en-US')} entities, heapUsed after full GC${ctx.hasGc ? '' : ' (NO --expose-gc: figures are unreliable)'}`,
    header: ['subject', 'heap per entity', 'vs plain actor'],
    rows: [
      ['plain XState actor (started, one event)', bytes(plainPer), '1.00x'],
      [
        'shardchart live idle entity (LMDB)',
        bytes(livePer),
        `${ratio.toFixed(2)}x`,
      ],
      [
        'shardchart passivated entity (LMDB defaults)',
        bytes(passivatedPer),
        `${(passivatedPer / plainPer).toFixed(2)}x`,
      ],
      [
        'shardchart passivated entity (LMDB seq cache of 1)',
        bytes(engineOnly.passivatedPer),
        `${(engineOnly.passivatedPer / plainPer).toFixed(2)}x`,
      ],
    ],
    bars: [
      {
        name: 'live idle entity heap vs plain actor',
        measured: `${ratio.toFixed(2)}x`,
        target: '≤ 2x',
        met: ratio <= 2,
      },
      {
        name: 'passivated entity heap (LMDB defaults)',
        measured: bytes(passivatedPer),
        target: `≈ 0 (≤ ${noiseBytes} B noise)`,
        met: passivatedPer <= noiseBytes,
      },
    ],
  };
}
