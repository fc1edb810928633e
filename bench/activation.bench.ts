/**
 * Activation: how long the first read of a passivated entity takes, i.e.
 * load the latest snapshot, replay the journal tail with XState's pure
 * `transition`, start the actor. Measured one entity at a time, with a
 * 100-event tail and with none, on the memory store and on LMDB.
 *
 * Getting a 100-event tail takes a detour: passivation writes a snapshot, so
 * a passivated entity has no tail. A writer system with `snapshotEvery: 101`
 * sends 201 events per entity (snapshot at seq 101, tail 102..201) and is
 * then left idle, not stopped, because stopping would snapshot too. A reader
 * system on the same store measures the activations; the writer never
 * writes again, so there is still a single writer. The no-tail case is the
 * reader passivating each entity and reading it again.
 *
 * Baseline: plain XState restoring the same persisted snapshot
 * (`createActor(machine, { snapshot })`, after a JSON round trip standing in
 * for the store read) and sending it the same 100 events.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createActorSystem, type Store } from 'shardchart';
import { lmdbStore } from 'shardchart/adapters/lmdb';
import { memoryStore } from 'shardchart/adapters/memory';
import { createActor } from 'xstate';
import type { BenchContext, Section } from './run.js';
import {
  benchCycle,
  benchMachine,
  entityType,
  quantile,
  Samples,
} from './throughput.bench.js';

const snapshotEvery = 101;
const tail = 100;
const eventsPerEntity = snapshotEvery + tail;

interface Timing {
  subject: string;
  tail: string;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
}

function timing(subject: string, tailLabel: string, samples: Samples): Timing {
  const sorted = samples.sorted();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    subject,
    tail: tailLabel,
    meanMs: sum / sorted.length,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
  };
}

/** The same store for a second system: opening and closing stay with the first. */
function shared(store: Store): Store {
  return {
    kind: store.kind,
    durable: store.durable,
    journal: store.journal,
    snapshots: store.snapshots,
    open: async () => {},
    write: (w) => store.write(w),
    scanWakeups: () => store.scanWakeups(),
    scanEntities: (type) => store.scanEntities(type),
    appendDeadLetter: (letter) => store.appendDeadLetter(letter),
    readDeadLetters: (options) => store.readDeadLetters(options),
    close: async () => {},
    sizeBytes: () => store.sizeBytes(),
  };
}

function plainXState(count: number): Timing[] {
  const seed = createActor(benchMachine).start();
  for (let n = 0; n < snapshotEvery; n++)
    seed.send(benchCycle[n % benchCycle.length]!);
  const json = JSON.stringify(seed.getPersistedSnapshot());
  seed.stop();
  const withTail = new Samples();
  const noTail = new Samples();
  for (let i = 0; i < count; i++) {
    let t0 = performance.now();
    const actor = createActor(benchMachine, {
      snapshot: JSON.parse(json),
    }).start();
    for (let n = snapshotEvery; n < eventsPerEntity; n++) {
      actor.send(benchCycle[n % benchCycle.length]!);
    }
    actor.getSnapshot();
    withTail.push(performance.now() - t0);
    actor.stop();
    t0 = performance.now();
    const restored = createActor(benchMachine, {
      snapshot: JSON.parse(json),
    }).start();
    restored.getSnapshot();
    noTail.push(performance.now() - t0);
    restored.stop();
  }
  const subject = 'plain XState: restore snapshot (+ send tail)';
  return [timing(subject, `${tail}`, withTail), timing(subject, '0', noTail)];
}

async function shardchart(
  ctx: BenchContext,
  label: string,
  store: Store,
  notes: string[],
): Promise<Timing[]> {
  const entities = { [entityType]: benchMachine };
  const ids = Array.from({ length: ctx.activations }, (_, i) => `a-${i}`);
  const writer = await createActorSystem({
    name: 'bench-writer',
    logger: ctx.logger,
    entities,
    store,
    snapshotEvery,
    passivateAfterMs: 0,
  });
  for (let n = 0; n < eventsPerEntity; n++) {
    const event = benchCycle[n % benchCycle.length]!;
    const results = await writer.sendMany(
      ids.map((id) => ({ type: entityType, id, event, eventId: `${id}:${n}` })),
    );
    const failed = results.find((r) => !r.ok);
    if (failed && !failed.ok) throw failed.error;
  }
  const probe = { type: entityType, id: ids[0]! };
  const snapshotSeq = (await store.snapshots.load(probe))?.seq ?? 0;
  const lastSeq = await store.journal.lastSeq(probe);
  notes.push(
    `${label}: the writer left snapshot seq ${snapshotSeq}, journal to seq ${lastSeq}: a ${lastSeq - snapshotSeq}-event tail`,
  );

  const reader = await createActorSystem({
    name: 'bench-reader',
    logger: ctx.logger,
    entities,
    store: shared(store),
    snapshotEvery,
    passivateAfterMs: 0,
  });
  const withTail = new Samples();
  const noTail = new Samples();
  ctx.gc();
  for (const id of ids) {
    const t0 = performance.now();
    await reader.entity(entityType, id).snapshot();
    withTail.push(performance.now() - t0);
  }
  for (const id of ids) await reader.entity(entityType, id).passivate();
  const passivatedSeq = (await store.snapshots.load(probe))?.seq ?? 0;
  notes.push(
    `${label}: after passivate(), snapshot seq ${passivatedSeq} of ${lastSeq}: a ${lastSeq - passivatedSeq}-event tail`,
  );
  ctx.gc();
  for (const id of ids) {
    const t0 = performance.now();
    await reader.entity(entityType, id).snapshot();
    noTail.push(performance.now() - t0);
  }
  await reader.stop();
  await writer.stop();
  const subject = `shardchart, ${label}: snapshot() of a passivated entity`;
  return [timing(subject, `${tail}`, withTail), timing(subject, '0', noTail)];
}

export async function activation(ctx: BenchContext): Promise<Section> {
  const notes: string[] = [];
  const plain = plainXState(ctx.activations);
  const memory = await shardchart(ctx, 'memory store', memoryStore(), notes);
  const dir = await mkdtemp(join(tmpdir(), 'shardchart-bench-'));
  let lmdb: Timing[];
  try {
    // Activation reads; fsync on the writer's 201 rounds would only make
    // the setup slow.
    lmdb = await shardchart(
      ctx,
      'LMDB',
      lmdbStore({ path: join(dir, 'db'), sync: false }),
      notes,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const baseline = (t: Timing): Timing =>
    t.tail === '0' ? plain[1]! : plain[0]!;
  return {
    title: `activation: ${ctx.activations.toLocaleString('en-US')} entities, one at a time, snapshot + ${tail}-event journal tail and snapshot only`,
    header: ['subject', 'tail', 'mean', 'p50', 'p99', 'p50 vs plain'],
    rows: [...plain, ...memory, ...lmdb].map((t) => [
      t.subject,
      t.tail,
      `${t.meanMs.toFixed(3)} ms`,
      `${t.p50Ms.toFixed(3)} ms`,
      `${t.p99Ms.toFixed(3)} ms`,
      `${(t.p50Ms / baseline(t).p50Ms).toFixed(1)}x`,
    ]),
    bars: [],
    notes,
  };
}
