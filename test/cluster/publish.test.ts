/**
 * Domain events published by machines on a cluster node go to NATS once the
 * step that emitted them is durable, with `Nats-Msg-Id` for dedupe: plain
 * NATS subscribers get them, and a JetStream stream that captures the subject
 * stores each once even when it is delivered again.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { pino } from 'pino';
import {
  connect,
  type Msg,
  type NatsConnection,
} from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { setup } from 'xstate';
import {
  createActorSystem,
  decode,
  publish,
  type ActorSystem,
} from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';

const orderMachine = setup({
  types: { events: {} as { type: 'PAY'; amount: number } },
}).createMachine({
  id: 'order',
  initial: 'open',
  states: {
    open: {
      on: {
        PAY: {
          target: 'paid',
          actions: publish(({ event }) => ({
            subject: 'orders.paid',
            data: { amount: event.amount },
          })),
        },
      },
    },
    paid: {
      entry: publish({ subject: 'audit.orders', data: { state: 'paid' } }),
    },
  },
});

let server: NatsServerHandle;
let node: ActorSystem;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  node = await createActorSystem({
    name: 'pub',
    entities: { order: orderMachine },
    store: natsStore(),
    logger: pino({ level: 'silent' }),
    cluster: {
      nats: { servers: server.url },
      nodeId: 'p1',
      shardCount: 2,
      leaseTtlMs: 1_000,
    },
  });
  for (let i = 0; i < 200 && (node.stats().cluster?.ownedShards ?? 0) < 2; i++)
    await new Promise((r) => setTimeout(r, 50));
  nc = await connect({ servers: server.url });
});

afterAll(async () => {
  await nc?.close();
  await node?.stop();
  await server?.stop();
});

test('cluster publish - domain events reach NATS subscribers after the step is durable, with stable message ids', async () => {
  const received: { subject: string; id: string | undefined; data: unknown }[] =
    [];
  const record = (_err: unknown, msg: Msg): void => {
    received.push({
      subject: msg.subject,
      id: msg.headers?.get('Nats-Msg-Id'),
      data: decode(msg.data),
    });
  };
  const sub = nc.subscribe('orders.>', { callback: record });
  const audit = nc.subscribe('audit.>', { callback: record });
  await nc.flush();
  const state = await node
    .entity('order', 'o-1')
    .send({ type: 'PAY', amount: 12 }, { eventId: 'pay-1' });
  expect(state.value).toBe('paid');
  for (let i = 0; i < 100 && received.length < 2; i++)
    await new Promise((r) => setTimeout(r, 20));
  sub.unsubscribe();
  audit.unsubscribe();
  expect(received).toEqual([
    { subject: 'orders.paid', id: 'pub/order/o-1/1/0', data: { amount: 12 } },
    {
      subject: 'audit.orders',
      id: 'pub/order/o-1/1/1',
      data: { state: 'paid' },
    },
  ]);
});

test('cluster publish - a JetStream stream capturing the subject stores each domain event once', async () => {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'PAID', subjects: ['orders.paid'] });
  await node
    .entity('order', 'o-2')
    .send({ type: 'PAY', amount: 5 }, { eventId: 'pay-2' });
  await node
    .entity('order', 'o-2')
    .send({ type: 'PAY', amount: 5 }, { eventId: 'pay-2' });
  for (
    let i = 0;
    i < 100 && (await jsm.streams.info('PAID')).state.messages < 1;
    i++
  )
    await new Promise((r) => setTimeout(r, 20));
  const info = await jsm.streams.info('PAID');
  expect(info.state.messages).toBe(1);
  const stored = await jsm.streams.getMessage('PAID', { seq: 1 });
  expect(stored?.header.get('Nats-Msg-Id')).toBe('pub/order/o-2/1/0');
});
