/**
 * Throughput: events per second over 10,000 entities with 64 concurrent
 * senders, and the latency of one send, for plain XState actors (the
 * baseline), Shardchart on the memory store, and Shardchart on LMDB with
 * every send durable.
 *
 * Each sender is an async loop that picks a random entity and sends it the
 * next event of its cycle. The plain-XState senders `await` a resolved value
 * after each synchronous `actor.send`, so all three run the same loop shape
 * and the baseline is not flattered by never yielding; they do nothing else,
 * so the baseline is the cost of XState itself. Shardchart sends carry an
 * event id, as production sends do, so dedupe bookkeeping is included.
 */
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createActorSystem, type EntityRef, type Store } from 'shardchart';
import { lmdbStore } from 'shardchart/adapters/lmdb';
import { memoryStore } from 'shardchart/adapters/memory';
import { assign, createActor, setup, type AnyActorRef } from 'xstate';
import type { BenchContext, Section } from './run.js';
import { createSeededRandom as createRandom } from '../src/system/random.js';

/**
 * The machine every scenario runs, on both sides: guards, `assign` and
 * parallel regions, and no timers, so nothing but sends moves it.
 */
export const benchMachine = setup({
  types: {
    context: {} as { items: number; totalCents: number },
    events: {} as
      | { type: 'ADD'; priceCents: number }
      | { type: 'CHECKOUT' }
      | { type: 'PAY' }
      | { type: 'SHIP' }
      | { type: 'RESET' },
  },
  guards: { hasItems: ({ context }) => context.items > 0 },
}).createMachine({
  id: 'bench',
  context: { items: 0, totalCents: 0 },
  initial: 'open',
  states: {
    open: {
      on: {
        ADD: {
          actions: assign({
            items: ({ context }) => context.items + 1,
            totalCents: ({ context, event }) =>
              context.totalCents + event.priceCents,
          }),
        },
        CHECKOUT: { guard: 'hasItems', target: 'working' },
      },
    },
    working: {
      type: 'parallel',
      on: {
        RESET: {
          target: 'open',
          actions: assign({ items: 0, totalCents: 0 }),
        },
      },
      states: {
        payment: {
          initial: 'due',
          states: { due: { on: { PAY: 'paid' } }, paid: {} },
        },
        shipping: {
          initial: 'packing',
          states: { packing: { on: { SHIP: 'shipped' } }, shipped: {} },
        },
      },
    },
  },
});

/** A cycle every entity runs through; every event in it changes the state. */
export const benchCycle = [
  { type: 'ADD', priceCents: 450 },
  { type: 'ADD', priceCents: 1_250 },
  { type: 'CHECKOUT' },
  { type: 'PAY' },
  { type: 'SHIP' },
  { type: 'RESET' },
] as const;

export const entityType = 'bench';


export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Latencies in ms, kept in a growable typed array (millions of samples). */
export class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;
  push(value: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = value;
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
}

interface Run {
  subject: string;
  eventsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * Runs `sendersMax` async senders for `seconds`, each picking a random
 * entity and sending it the next event of the cycle.
 */
async function drive(
  steps: Uint32Array,
  sendersMax: number,
  seconds: number,
  send: (
    index: number,
    event: (typeof benchCycle)[number],
    n: number,
  ) => unknown,
): Promise<{ events: number; seconds: number; latencies: Samples }> {
  const entities = steps.length;
  const latencies = new Samples();
  const random = createRandom(42);
  let events = 0;
  const startedAt = performance.now();
  const deadline = startedAt + seconds * 1_000;
  const sender = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const i = Math.floor(random() * entities);
      // Taken before the send, so two senders picking the same entity keep
      // its cycle in order: the mailbox applies events in arrival order.
      const n = steps[i]!++;
      const t0 = performance.now();
      const pending = send(i, benchCycle[n % benchCycle.length]!, n);
      if (pending instanceof Promise) {
        await pending;
        latencies.push(performance.now() - t0);
      } else {
        // A synchronous send is timed alone, then yields once like an
        // async one, so every subject runs the same interleaved loop.
        latencies.push(performance.now() - t0);
        await Promise.resolve();
      }
      events++;
    }
  };
  await Promise.all(Array.from({ length: sendersMax }, sender));
  return {
    events,
    seconds: (performance.now() - startedAt) / 1_000,
    latencies,
  };
}

/** Sends every entity its next event once, `sendersMax` at a time. */
export async function touchAll(
  steps: Uint32Array,
  sendersMax: number,
  send: (
    index: number,
    event: (typeof benchCycle)[number],
    n: number,
  ) => unknown,
): Promise<void> {
  let next = 0;
  const sender = async (): Promise<void> => {
    while (next < steps.length) {
      const i = next++;
      const n = steps[i]!++;
      await send(i, benchCycle[n % benchCycle.length]!, n);
    }
  };
  await Promise.all(Array.from({ length: sendersMax }, sender));
}

function summarize(
  subject: string,
  result: Awaited<ReturnType<typeof drive>>,
): Run {
  const sorted = result.latencies.sorted();
  return {
    subject,
    eventsPerSecond: result.events / result.seconds,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
  };
}

async function plainXState(ctx: BenchContext): Promise<Run> {
  const actors: AnyActorRef[] = [];
  for (let i = 0; i < ctx.entities; i++) {
    actors.push(createActor(benchMachine).start());
  }
  const send = (i: number, event: (typeof benchCycle)[number]): unknown => {
    actors[i]!.send(event);
    return undefined;
  };
  const steps = new Uint32Array(ctx.entities);
  await touchAll(steps, ctx.sendersMax, send);
  await drive(steps, ctx.sendersMax, ctx.warmupSeconds, send);
  ctx.gc();
  const run = summarize(
    'plain XState (createActor + send)',
    await drive(steps, ctx.sendersMax, ctx.seconds, send),
  );
  for (const actor of actors) actor.stop();
  return run;
}

async function shardchart(
  ctx: BenchContext,
  subject: string,
  store: Store,
): Promise<Run> {
  const system = await createActorSystem({
    name: 'bench',
    logger: ctx.logger,
    entities: { [entityType]: benchMachine },
    store,
  });
  const refs: EntityRef<typeof benchMachine>[] = [];
  for (let i = 0; i < ctx.entities; i++) {
    refs.push(system.entity(entityType, `e-${i}`));
  }
  const send = (
    i: number,
    event: (typeof benchCycle)[number],
    n: number,
  ): Promise<unknown> => refs[i]!.send(event, { eventId: `${i}:${n}` });
  // Every entity is activated before the warm-up, so the timed run
  // measures steady state rather than first activations.
  const steps = new Uint32Array(ctx.entities);
  await touchAll(steps, ctx.sendersMax, send);
  await drive(steps, ctx.sendersMax, ctx.warmupSeconds, send);
  ctx.gc();
  const run = summarize(
    subject,
    await drive(steps, ctx.sendersMax, ctx.seconds, send),
  );
  await system.stop();
  return run;
}

/**
 * The disk's fsync latency, which bounds durable throughput: with S senders
 * each waiting for its own durable write, at most S events complete per
 * fsync (Little's law), however fast the engine is.
 */
function fsyncP50Ms(dir: string): number {
  const fd = openSync(join(dir, 'fsync-probe'), 'w');
  const page = Buffer.alloc(4096, 1);
  const samples = new Samples();
  try {
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      writeSync(fd, page, 0, page.length, (i % 16) * page.length);
      fdatasyncSync(fd);
      samples.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
  }
  return quantile(samples.sorted(), 0.5);
}

async function lmdbDurable(ctx: BenchContext): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), 'shardchart-bench-'));
  try {
    return await shardchart(
      ctx,
      'shardchart, LMDB, every send durable',
      lmdbStore({ path: join(dir, 'db') }),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The three subjects run in turn, `ctx.rounds` times, each from a fresh
 * setup; a ratio is taken within a round and the median over rounds is
 * reported. On a shared machine the load drifts within a minute; taking
 * the baseline once and the subjects later would put that drift into
 * the ratios.
 */
export async function throughput(ctx: BenchContext): Promise<Section> {
  const runs: Run[][] = [[], [], []];
  const dir = await mkdtemp(join(tmpdir(), 'shardchart-bench-'));
  let fsyncMs: number;
  try {
    fsyncMs = fsyncP50Ms(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  for (let round = 0; round < ctx.rounds; round++) {
    runs[0]!.push(await plainXState(ctx));
    ctx.gc();
    runs[1]!.push(
      await shardchart(ctx, 'shardchart, memory store', memoryStore()),
    );
    ctx.gc();
    runs[2]!.push(await lmdbDurable(ctx));
    ctx.gc();
  }
  const [plain, memory, lmdb] = runs.map((list) => ({
    subject: list[0]!.subject,
    eventsPerSecond: median(list.map((r) => r.eventsPerSecond)),
    p50Ms: median(list.map((r) => r.p50Ms)),
    p99Ms: median(list.map((r) => r.p99Ms)),
    ratio: median(
      list.map((r, i) => r.eventsPerSecond / runs[0]![i]!.eventsPerSecond),
    ),
    perRound: list.map((r) => Math.round(r.eventsPerSecond)),
  })) as [Summary, Summary, Summary];
  const percent = (v: number): string => `${(v * 100).toFixed(1)}%`;
  return {
    title: `throughput: ${ctx.entities.toLocaleString('en-US')} entities, ${ctx.sendersMax} concurrent senders, ${ctx.seconds} s per subject, median of ${ctx.rounds} interleaved rounds`,
    header: [
      'subject',
      'events/s',
      'send p50',
      'send p99',
      'vs plain',
      'events/s per round',
    ],
    rows: [plain, memory, lmdb].map((run) => [
      run.subject,
      Math.round(run.eventsPerSecond).toLocaleString('en-US'),
      `${run.p50Ms.toFixed(3)} ms`,
      `${run.p99Ms.toFixed(3)} ms`,
      percent(run.ratio),
      run.perRound.map((v) => v.toLocaleString('en-US')).join(' / '),
    ]),
    notes: [
      `disk under ${tmpdir()}: 4 KiB write + fdatasync p50 ${fsyncMs.toFixed(2)} ms, so ${ctx.sendersMax} senders waiting on durable writes complete at most ~${Math.round((ctx.sendersMax / fsyncMs) * 1_000).toLocaleString('en-US')} events/s if every commit costs one fsync`,
    ],
    bars: [
      {
        name: 'memory store events/s vs plain XState',
        measured: percent(memory.ratio),
        target: '≥ 50%',
        met: memory.ratio >= 0.5,
      },
      {
        name: 'LMDB (every send durable) events/s vs plain XState',
        measured: percent(lmdb.ratio),
        target: '≥ 25%',
        met: lmdb.ratio >= 0.25,
      },
    ],
  };
}

interface Summary extends Run {
  ratio: number;
  perRound: number[];
}

