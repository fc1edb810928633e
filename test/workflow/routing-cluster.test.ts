/**
 * Routing and human tasks in a cluster (issue 6, parts 5 and 6): their
 * records are entities, so they are sharded like any entity. Two nodes of
 * one system share a real nats-server; an attachment made on one node
 * routes events published on the other, and a task created by a workflow
 * on whichever node owns it is listed and completed through the other.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { natsStore } from '../../adapters/nats/index.js';
import {
  createActorSystem,
  defineWorkflow,
  type ActorSystem,
  type PublishedEvent,
} from '../../src/index.js';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';
import { until } from './fixtures.js';

const review = defineWorkflow('review', async (ctx) => {
  const { doc } = (ctx.trigger as PublishedEvent).payload as { doc: string };
  const task = await ctx.tasks.create({
    title: 'Review ${contextData.doc}',
    assignee: 'rita',
    form: {
      type: 'object',
      required: ['ok'],
      properties: { ok: { type: 'boolean' } },
    },
    context: { doc },
  });
  ctx.setState('in_review');
  const done = await ctx.tasks.waitFor(task);
  ctx.setState('published');
  const ack = await ctx.events.waitFor('ACK', { correlationKey: `ack-${doc}` });
  return { ok: done.data, ack: (ack as PublishedEvent).payload };
});

const shardCount = 4;
let server: NatsServerHandle;
const nodes: ActorSystem[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  for (const nodeId of ['n1', 'n2'])
    nodes.push(
      await createActorSystem({
        name: 'wfc',
        entities: { review },
        store: natsStore({ logger: pino({ level: 'silent' }) }),
        logger: pino({ level: 'silent' }),
        cluster: {
          nats: { servers: server.url },
          nodeId,
          shardCount,
          leaseTtlMs: 1_000,
        },
      }),
    );
  await until(
    () =>
      nodes.every((n) => (n.stats().cluster?.ownedShards ?? 0) > 0) &&
      nodes.reduce(
        (sum, n) => sum + (n.stats().cluster?.ownedShards ?? 0),
        0,
      ) === shardCount,
    'both nodes to own shards',
    30_000,
  );
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.stop();
  await server?.stop();
});

it('routing cluster - attach on one node, publish on the other; tasks listed and completed across nodes; correlated waits too', async () => {
  const [a, b] = nodes as [ActorSystem, ActorSystem];
  await a.attach({
    tenant: 'acme',
    eventType: 'DOC_SUBMITTED',
    workflow: 'review',
    correlate: 'doc',
  });
  expect(await b.attachments('acme')).toMatchObject([{ workflow: 'review' }]);
  const docs = ['d1', 'd2', 'd3', 'd4', 'd5', 'd6'];
  for (const doc of docs) {
    const r = await b.publishEvent({
      tenant: 'acme',
      type: 'DOC_SUBMITTED',
      payload: { doc },
    });
    expect(r.deliveries).toMatchObject([
      { id: `acme/${doc}`, status: 'delivered' },
    ]);
  }
  await until(
    async () =>
      (await a.tasks.list({ tenant: 'acme', assignee: 'rita' })).length ===
      docs.length,
    'every task to be listed',
    30_000,
  );
  const tasks = await b.tasks.list({ assignee: 'rita' });
  expect(tasks.map((t) => t.title).sort()).toEqual(
    docs.map((d) => `Review ${d}`),
  );
  for (const [i, t] of tasks.entries())
    await (i % 2 === 0 ? a : b).tasks.complete(
      t.id,
      { ok: true },
      { by: 'rita' },
    );
  for (const doc of docs)
    await a
      .entity('review', `acme/${doc}`)
      .waitFor((s) => s.value === 'published', { timeoutMs: 30_000 });
  expect(await a.tasks.list()).toEqual([]);
  // Each workflow now waits for its ACK by correlation key; the waits are
  // indexed on whichever node owns their index entity.
  for (const doc of docs)
    await until(
      async () =>
        (
          (
            await b
              .entity('shardchart.correlation', `acme/3:ACK/ack-${doc}`)
              .snapshot()
          ).context as { waiters: unknown[] }
        ).waiters.length === 1,
      `the wait of ${doc}`,
      30_000,
    );
  for (const [i, doc] of docs.entries())
    await (i % 2 === 0 ? b : a).publishEvent({
      tenant: 'acme',
      type: 'ACK',
      correlationKey: `ack-${doc}`,
      payload: { n: i },
    });
  for (const [i, doc] of docs.entries()) {
    const s = await b
      .entity('review', `acme/${doc}`)
      .waitFor((st) => st.status === 'done', { timeoutMs: 30_000 });
    expect(s.output).toEqual({ ok: { ok: true }, ack: { n: i } });
  }
}, 120_000);
