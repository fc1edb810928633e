/**
 * The nats store's write path: 64 concurrent writers, each appending one
 * entry at a time to its own entity and waiting for it (as the engine does:
 * one write in flight per entity), against a private nats-server with
 * JetStream on loopback. Reports writes/s and the p50/p99 latency of one
 * `store.write`.
 *
 * Baseline, same run, same server: 64 concurrent publishers calling
 * `js.publish()` of @nats-io/jetstream with a payload of the same size,
 * each waiting for its acknowledgement, without any seq check. The ratio
 * shows what the store's expected-sequence check, record framing and
 * entity queues cost over a bare JetStream publish.
 *
 * Run: `node --import tsx --conditions=shardchart-source bench/nats-store.bench.ts [seconds]`
 * (or register `natsStoreBench` in bench/run.ts).
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { encodeRecord } from '../src/codec/index.js';
import { natsStore } from 'shardchart/adapters/nats';

import { startNatsServer } from '../test/support/nats-server.js';
import type { Section } from './run.js';
import { quantile, Samples } from './throughput.bench.js';

const WRITERS = 64;

interface Result {
  readonly subject: string;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** Runs `one(writer, n)` from `WRITERS` loops for `seconds`. */
async function measure(
  subject: string,
  seconds: number,
  one: (writer: number, n: number) => Promise<void>,
): Promise<Result> {
  const samples = new Samples();
  let done = 0;
  const until = performance.now() + seconds * 1_000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: WRITERS }, async (_, writer) => {
      for (let n = 1; performance.now() < until; n++) {
        const t0 = performance.now();
        await one(writer, n);
        samples.push(performance.now() - t0);
        done++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1_000;
  const sorted = samples.sorted();
  return {
    subject,
    perSecond: done / elapsed,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
  };
}

function entry(seq: number) {
  return {
    seq,
    at: 1_700_000_000_000 + seq,
    event: { type: 'DEPOSIT', amount: seq, note: 'x'.repeat(40) },
    eventId: `e-${seq}`,
  };
}

export async function natsStoreBench(ctx: {
  seconds: number;
}): Promise<Section> {
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url });
  const results: Result[] = [];
  try {
    const store = natsStore({
      connection: nc,
      prefix: 'bench',
      logger: pino({ level: 'silent' }),
    });
    await store.open();
    // Warm-up: the entity caches and the server's streams.
    await measure('warm-up', 0.5, (writer, n) =>
      store.write({
        key: { type: 'warm', id: `w-${writer}` },
        expectedSeq: n - 1,
        entries: [entry(n)],
      }),
    );
    results.push(
      await measure('natsStore write', ctx.seconds, (writer, n) =>
        store.write({
          key: { type: 'account', id: `a-${writer}` },
          expectedSeq: n - 1,
          entries: [entry(n)],
        }),
      ),
    );
    await store.close();

    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'baseline', subjects: ['baseline.>'] });
    const js = jetstream(nc);
    const payload = encodeRecord({
      k: ['account', 'a-0'],
      s: 1,
      e: [entry(1)],
    });
    results.push(
      await measure('js.publish (baseline)', ctx.seconds, async (writer) => {
        await js.publish(`baseline.${writer}`, payload);
      }),
    );
  } finally {
    await nc.close();
    await server.stop();
  }
  const [store, baseline] = results as [Result, Result];
  return {
    title: `nats store: ${WRITERS} concurrent writers, one entry per write, private nats-server on loopback`,
    header: ['subject', 'writes/s', 'p50 ms', 'p99 ms'],
    rows: results.map((r) => [
      r.subject,
      Math.round(r.perSecond).toLocaleString('en-US'),
      r.p50Ms.toFixed(2),
      r.p99Ms.toFixed(2),
    ]),
    bars: [],
    notes: [
      `store / baseline: ${(store.perSecond / baseline.perSecond).toFixed(2)}x`,
    ],
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const seconds = Number(process.argv[2] ?? 4);
  const section = await natsStoreBench({ seconds });
  console.log(section.title);
  console.log(section.header.join('\t'));
  for (const row of section.rows) console.log(row.join('\t'));
  for (const note of section.notes ?? []) console.log(note);
}
