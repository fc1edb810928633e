/**
 * The router's re-publish, against a real nats-server with no node: the
 * test plays the shard owner by consuming the shard stream itself. An owner
 * that acks an event and dies before its answer leaves must not cost the
 * caller the whole send timeout: the router publishes the same event again
 * (same eventId and cid, a new message id) after twice the lease TTL, and
 * the first answer settles the send.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { Router } from '../../src/cluster/nats/router.js';
import { resolveClusterOptions } from '../../src/cluster/options.js';
import {
  decodeMessage,
  encodeMessage,
  type SendMessage,
} from '../../src/cluster/protocol.js';
import { subjectsFor } from '../../src/cluster/subjects.js';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';

let server: NatsServerHandle;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await server?.stop();
}, 60_000);

test('router - an owner that acks and never answers: the send is published again after 2 x lease TTL and the next answer settles it', async () => {
  const subjects = subjectsFor('rt');
  const options = resolveClusterOptions({
    nats: { servers: server.url },
    nodeId: 'client',
    shardCount: 4,
    leaseTtlMs: 1_000,
    sendTimeoutMs: 20_000,
  });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: subjects.stream,
    subjects: [subjects.shardWildcard],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.Memory,
  });
  await jsm.consumers.add(subjects.stream, {
    durable_name: 'owner',
    ack_policy: AckPolicy.Explicit,
  });
  const consumer = await jetstream(nc).consumers.get(subjects.stream, 'owner');
  const router = new Router(
    nc,
    subjects,
    options,
    {
      now: Date.now,
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (t) => clearTimeout(t as never),
    },
    'inc-1',
    (error) => {
      throw error;
    },
  );
  router.start();

  const seen: { message: SendMessage; msgId: string | undefined; at: number }[] = [];
  const limits = { bytesMax: options.messageBytesMax, depthMax: 64 };
  const owner = (async () => {
    const messages = await consumer.consume();
    for await (const m of messages) {
      const message = decodeMessage(m.data, limits) as SendMessage;
      seen.push({ message, msgId: m.headers?.get('Nats-Msg-Id'), at: Date.now() });
      m.ack();
      // The first delivery: acked, then the owner "dies" without answering.
      if (seen.length === 1) continue;
      nc.publish(
        message.replyTo!,
        encodeMessage({
          k: 'reply',
          cid: message.cid,
          ok: true,
          state: {
            seq: 1,
            value: 'done',
            context: {},
            status: 'active',
            changed: true,
          },
        }),
      );
      messages.stop();
    }
  })();

  const started = Date.now();
  const answer = await router.send('order', 'o-1', { type: 'PAY' }, 'e-1', undefined);
  const tookMs = Date.now() - started;
  await owner;
  router.close();

  expect(answer.value).toBe('done');
  expect(seen).toHaveLength(2);
  const [first, second] = seen as [(typeof seen)[0], (typeof seen)[0]];
  expect(second.message.eventId).toBe('e-1');
  expect(second.message.eventId).toBe(first.message.eventId);
  expect(second.message.cid).toBe(first.message.cid);
  expect(second.msgId).not.toBe(first.msgId);
  // Published again after 2 x lease TTL (2 s), long before the 20 s timeout.
  expect(second.at - first.at).toBeGreaterThanOrEqual(1_900);
  expect(tookMs).toBeLessThan(15_000);
  expect(router.stats.resends).toBe(1);
}, 60_000);
