// JetStream KV (src/cluster/nats/kv.ts) on a private nats-server: the shared
// ClusterKv behaviour suite with its two clients on two separate NATS
// connections (so compare-and-set races are real races between processes'
// connections), then what only a server can show: watches that survive a
// server restart, retryable failures while it is down, and consumers that
// do not pile up.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, test } from 'vitest';

import { natsClusterKv } from '../../src/cluster/nats/kv.js';
import { isShardchartError } from '../../src/errors.js';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';
import { collect, describeClusterKvBehaviour, show } from './kv-behaviour.js';
import { startTcpProxy } from './tcp-proxy.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const hasReady = (events: { kind: string }[]): boolean =>
  events.some((e) => e.kind === 'ready');

let server: NatsServerHandle;
const connections: NatsConnection[] = [];
let bucketSeq = 0;

async function connection(reconnectTimeWait = 100): Promise<NatsConnection> {
  const nc = await connect({
    servers: server.url,
    maxReconnectAttempts: -1,
    reconnectTimeWait,
    reconnectJitter: 0,
    pingInterval: 1_000,
  });
  connections.push(nc);
  return nc;
}

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
  await server?.stop();
});

describeClusterKvBehaviour('nats', async () => {
  const bucket = `behaviour_${++bucketSeq}`;
  const a = await natsClusterKv(await connection(), bucket);
  const b = await natsClusterKv(await connection(), bucket);
  return { a, b };
});

async function consumerCount(
  nc: NatsConnection,
  bucket: string,
): Promise<number> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(`KV_${bucket}`)).state.consumer_count;
}

async function eventually(
  check: () => Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function retry<T>(op: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await op();
    } catch (err) {
      if (
        !isShardchartError(err, 'CLUSTER_UNAVAILABLE') ||
        Date.now() > deadline
      )
        throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

test('nats kv - a watch whose connection drops resumes: interrupted, the writes it missed, ready', async () => {
  // The watcher reaches the server through a proxy that the test cuts, so
  // the writes below certainly happen while the watch is away and must come
  // from the consumer that replaces the lost one.
  const proxy = await startTcpProxy(server.port);
  try {
    const nc = await connect({
      servers: `nats://127.0.0.1:${proxy.port}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 50,
      reconnectJitter: 0,
    });
    connections.push(nc);
    const writer = await natsClusterKv(await connection(), 'dropped');
    const watcher = await natsClusterKv(nc, 'dropped');
    const r1 = await writer.create('nodes.n1', bytes('before'));
    await writer.create('nodes.n2', bytes('doomed'));
    const watch = await watcher.watch('nodes.');
    const it = watch[Symbol.asyncIterator]();
    expect((await collect(it, hasReady)).map(show)).toEqual([
      'put nodes.n1=before',
      'put nodes.n2=doomed',
      'ready',
    ]);

    proxy.cut();
    expect((await collect(it, (e) => e.length >= 1)).map(show)).toEqual([
      'interrupted',
    ]);
    const r2 = await writer.update('nodes.n1', bytes('after'), r1);
    await writer.delete('nodes.n2');
    await writer.create('nodes.n3', bytes('new'));
    await writer.put('other.key', bytes('not watched'));
    proxy.restore();

    const resumed = await collect(it, hasReady);
    expect(resumed.map(show)).toEqual([
      'put nodes.n1=after',
      'delete nodes.n2',
      'put nodes.n3=new',
      'ready',
    ]);
    expect((resumed[0] as { revision: number }).revision).toBe(r2);
    await writer.put('nodes.n1', bytes('later'));
    expect((await collect(it, (e) => e.length >= 1)).map(show)).toEqual([
      'put nodes.n1=later',
    ]);
    await watch.stop();
  } finally {
    await proxy.close();
  }
});

test('nats kv - a watch survives a server restart and sees every later write once, in order', async () => {
  const watcherConnection = await connection();
  const writer = await natsClusterKv(await connection(), 'restart', {
    timeoutMs: 500,
  });
  const watcher = await natsClusterKv(watcherConnection, 'restart');
  const r1 = await writer.create('nodes.n1', bytes('before'));
  const watch = await watcher.watch('nodes.');
  const it = watch[Symbol.asyncIterator]();
  await collect(it, hasReady);

  await server.restart();
  let revision = await retry(() =>
    writer.update('nodes.n1', bytes('after-0'), r1),
  );
  for (let i = 1; i < 5; i++) {
    revision = await retry(() =>
      writer.update('nodes.n1', bytes(`after-${i}`), revision),
    );
  }
  const events = await collect(
    it,
    (e) =>
      e.some((x) => x.kind === 'put' && x.revision === revision) && hasReady(e),
    20_000,
  );
  const puts = events.filter((e) => e.kind === 'put').map(show);
  // The watch may or may not see the intermediate values (history 1 keeps
  // the latest), but never one twice and never out of order.
  expect(new Set(puts).size).toBe(puts.length);
  expect(puts.at(-1)).toBe('put nodes.n1=after-4');
  expect([...puts].sort()).toEqual(puts);
  expect(events[0]?.kind).toBe('interrupted');
  await watch.stop();
  await eventually(
    async () => (await consumerCount(watcherConnection, 'restart')) === 0,
  );
});

test('nats kv - operations while the server is down fail with a retryable CLUSTER_UNAVAILABLE', async () => {
  const kv = await natsClusterKv(await connection(), 'down', {
    timeoutMs: 500,
  });
  await kv.create('k', new Uint8Array([1]));
  await server.kill();
  try {
    const err = await kv
      .update('k', new Uint8Array([2]), 1)
      .catch((e: unknown) => e);
    expect(isShardchartError(err, 'CLUSTER_UNAVAILABLE')).toBe(true);
    expect((err as { retryable: boolean }).retryable).toBe(true);
    const readErr = await kv.get('k').catch((e: unknown) => e);
    expect(isShardchartError(readErr, 'CLUSTER_UNAVAILABLE')).toBe(true);
  } finally {
    await server.restart();
  }
  expect((await retry(() => kv.get('k')))?.value).toEqual(new Uint8Array([1]));
});

test('nats kv - list and stopped watches leave no consumers behind', async () => {
  const nc = await connection();
  const kv = await natsClusterKv(nc, 'hygiene');
  for (let i = 0; i < 20; i++) await kv.put(`nodes.n${i}`, new Uint8Array([i]));
  for (let i = 0; i < 5; i++) expect(await kv.keys('nodes.')).toHaveLength(20);
  const watches = await Promise.all([
    kv.watch(),
    kv.watch('nodes.'),
    kv.watch('empty.'),
  ]);
  await eventually(async () => (await consumerCount(nc, 'hygiene')) === 3);
  await kv.close();
  await eventually(async () => (await consumerCount(nc, 'hygiene')) === 0);
  expect(watches.every((w) => w.received >= 1)).toBe(true);
});

test('nats kv - nodes starting together all open the bucket one of them creates', async () => {
  // The coordinator test once failed here under the full suite's load: the
  // loser of the creation race got "subjects overlap with an existing
  // stream" from nats-server 2.9 (this test could not make that happen on
  // demand; it checks that concurrent opens agree on one bucket).
  const ncs = await Promise.all(Array.from({ length: 8 }, () => connection()));
  for (let round = 0; round < 10; round++) {
    const bucket = `race${round}`;
    const kvs = await Promise.all(ncs.map((nc) => natsClusterKv(nc, bucket)));
    const revision = await kvs[0]!.create('k', bytes('v'));
    for (const kv of kvs) expect((await kv.get('k'))?.revision).toBe(revision);
  }
});
