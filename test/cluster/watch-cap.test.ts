/**
 * `cluster.watchesMax` bounds the watch registrations one owner keeps. Past
 * it a new watch is refused with the retryable WATCHES_FULL (not the
 * CLUSTER_UNAVAILABLE of a lost connection), a renewal of a registration
 * already kept still succeeds, and once registrations lapse the refused
 * watcher gets in. A `subscribe` on a client node that meets the cap gets
 * no error: it retries by itself and receives states once a slot frees.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { pino } from 'pino';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  createActorSystem,
  isShardchartError,
  type ActorSystem,
  type EntityState,
} from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import { decodeEnvelope, encodeEnvelope } from '../../src/codec/index.js';
import { shardOf } from '../../src/sharding/index.js';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';
import { until } from '../workflow/fixtures.js';
import { tallyMachine } from './machines.js';
import { clusterStatus } from './support.js';

const SYSTEM = 'cap';
const SHARDS = 2;
// Long enough that the first three queries of a test surely fit in it.
const TTL_MS = 2_000;

let server: NatsServerHandle;
let owner: ActorSystem;
let client: ActorSystem;
let raw: NatsConnection;

/** A node of the test's system; every node keeps at most 2 watches. */
function startSystem(
  nodeId: string,
  hostShards: boolean,
  watchesMax = 2,
): Promise<ActorSystem> {
  const logger = pino({ level: 'silent' });
  return createActorSystem({
    name: SYSTEM,
    entities: { tally: tallyMachine },
    store: natsStore({ logger }),
    logger,
    cluster: {
      nats: { servers: server.url },
      nodeId,
      shardCount: SHARDS,
      leaseTtlMs: 1_000,
      hostShards,
      watchesMax,
    },
  });
}

beforeAll(async () => {
  server = await startNatsServer();
  owner = await startSystem('owner', true);
  await until(
    () => owner.stats().cluster?.ownedShards === SHARDS,
    'the owner to hold every shard',
    30_000,
  );
  client = await startSystem('client', false);
  raw = await connect({ servers: server.url });
}, 60_000);

afterAll(async () => {
  await raw?.close();
  await client?.stop();
  await owner?.stop();
  await server?.stop();
});

interface Answer {
  ok: boolean;
  value?: unknown;
  error?: { code: string; retryable?: boolean; details?: { limit?: number } };
}

/** Entities of the owner that other nodes watch, from `cluster status`. */
async function watched(): Promise<number | undefined> {
  const status = await clusterStatus(server.url, SYSTEM);
  const mine = status.find((s) => s.nodeId === 'owner') as
    { watchedEntities?: number } | undefined;
  return mine?.watchedEntities;
}

/** A watch query as a router sends it, on the subject of the entity's shard. */
async function watch(id: string, watcher: string): Promise<Answer> {
  const reply = await raw.request(
    `shardchart.${SYSTEM}.query.${shardOf('tally', id, SHARDS)}`,
    encodeEnvelope({
      k: 'query',
      op: 'watch',
      type: 'tally',
      id,
      watcher,
      ttlMs: TTL_MS,
      seq: -1,
    }),
    { timeout: 10_000 },
  );
  return decodeEnvelope(reply.data, {
    bytesMax: 1 << 20,
    depthMax: 64,
  }) as Answer;
}

test('cluster watchesMax - past the cap a new watch gets the retryable WATCHES_FULL; renewals pass; a lapse lets the next one in', async () => {
  expect(await watch('e-1', 'a')).toMatchObject({
    ok: true,
    value: 'watching',
  });
  expect(await watch('e-1', 'b')).toMatchObject({
    ok: true,
    value: 'watching',
  });
  const full = await watch('e-2', 'c');
  expect(full.ok).toBe(false);
  expect(full.error).toMatchObject({
    code: 'WATCHES_FULL',
    retryable: true,
    details: { limit: 2 },
  });
  // A watcher already registered renews within the cap.
  expect(await watch('e-1', 'a')).toMatchObject({ ok: true });
  expect(await watched()).toBe(1);
  // Both registrations lapse TTL_MS after their last renewal.
  await until(
    async () => (await watched()) === 0,
    'the registrations to lapse',
    10_000,
  );
  expect(await watch('e-2', 'c')).toMatchObject({
    ok: true,
    value: 'watching',
  });
}, 30_000);

test('cluster watchesMax - a subscribe that meets the cap gets no error, retries, and gets its states once a slot frees', async () => {
  // Fill the cap with raw watchers and keep them renewed.
  let holding = true;
  const hold = (async () => {
    while (holding) {
      await watch('e-3', 'x');
      await watch('e-3', 'y');
      await new Promise((r) => setTimeout(r, TTL_MS / 4));
    }
  })();
  await until(
    async () => !(await watch('e-4', 'probe')).ok,
    'the cap to be full',
    10_000,
  );
  const states: EntityState[] = [];
  const errors: unknown[] = [];
  const off = client.entity('tally', 'e-4').subscribe({
    next: (state) => states.push(state),
    error: (error) => errors.push(error),
  });
  await client.entity('tally', 'e-4').send({ type: 'ADD', n: 1 });
  await new Promise((r) => setTimeout(r, 1_000));
  // Refused all along, quietly: no state, no error.
  expect(states).toEqual([]);
  expect(errors).toEqual([]);
  holding = false;
  await hold;
  await until(
    () => states.some((s) => s.seq >= 1),
    'the subscriber to get in once the raw watches lapse',
    15_000,
  );
  await client.entity('tally', 'e-4').send({ type: 'ADD', n: 2 });
  await until(() => states.some((s) => s.seq >= 2), 'the next state pushed');
  expect(errors).toEqual([]);
  off();
}, 40_000);

test('cluster watchesMax - an out-of-range value is a CONFIG_INVALID naming the option', async () => {
  const bad = startSystem('bad', false, 0);
  await expect(bad).rejects.toSatisfy(
    (error) =>
      isShardchartError(error, 'CONFIG_INVALID') &&
      /cluster\.watchesMax/.test((error as Error).message),
  );
});
