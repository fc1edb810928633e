/**
 * Malformed, oversized and misdirected messages on every cluster subject get
 * a typed answer where one is possible, are counted, and never stop a node.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { pino } from 'pino';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import {
  createActorSystem,
  encode,
  decode,
  type ActorSystem,
} from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';
import { tallyMachine } from './machines.js';

let server: NatsServerHandle;
let node: ActorSystem;
let nc: NatsConnection;
const SYSTEM = 'badinput';
const enc = (value: unknown): Uint8Array =>
  new TextEncoder().encode(JSON.stringify(value));
const dec = (
  data: Uint8Array,
): {
  ok: boolean;
  state?: { seq: number; context: { seen: number[] } };
  error?: { code: string; message: string };
} => JSON.parse(new TextDecoder().decode(data)) as never;

beforeAll(async () => {
  server = await startNatsServer();
  node = await createActorSystem({
    name: SYSTEM,
    entities: { tally: tallyMachine },
    store: natsStore(),
    logger: pino({ level: 'silent' }),
    cluster: {
      nats: { servers: server.url },
      nodeId: 'b1',
      shardCount: 4,
      leaseTtlMs: 1_000,
      messageBytesMax: 4_096,
    },
  });
  for (let i = 0; i < 200 && (node.stats().cluster?.ownedShards ?? 0) < 4; i++)
    await new Promise((r) => setTimeout(r, 50));
  nc = await connect({ servers: server.url });
});

afterAll(async () => {
  await nc?.close();
  await node?.stop();
  await server?.stop();
});

test('cluster ingress - JSON and msgpack requests on shardchart.<system>.in.<type>.<id> are applied and answered', async () => {
  const json = dec(
    (
      await nc.request(
        `shardchart.${SYSTEM}.in.tally.a.b.c`,
        enc({ type: 'ADD', n: 1 }),
        { timeout: 10_000 },
      )
    ).data,
  );
  expect(json.ok).toBe(true);
  expect(json.state?.context.seen).toEqual([1]);
  const wrapped = dec(
    (
      await nc.request(
        `shardchart.${SYSTEM}.in.tally.a.b.c`,
        enc({ event: { type: 'ADD', n: 2 }, eventId: 'x-2' }),
        { timeout: 10_000 },
      )
    ).data,
  );
  expect(wrapped.state?.context.seen).toEqual([1, 2]);
  const again = dec(
    (
      await nc.request(
        `shardchart.${SYSTEM}.in.tally.a.b.c`,
        enc({ event: { type: 'ADD', n: 2 }, eventId: 'x-2' }),
        { timeout: 10_000 },
      )
    ).data,
  );
  expect(again.state?.context.seen).toEqual([1, 2]);
  const h = headers();
  h.set('Nats-Msg-Id', 'x-3');
  const packed = decode(
    (
      await nc.request(
        `shardchart.${SYSTEM}.in.tally.a.b.c`,
        encode({ type: 'ADD', n: 3 }),
        { timeout: 10_000, headers: h },
      )
    ).data,
  ) as ReturnType<typeof dec>;
  expect(packed.state?.context.seen).toEqual([1, 2, 3]);
  // The id with dots is one entity, reachable through the API too.
  expect(
    (
      (await node.entity('tally', 'a.b.c').snapshot()).context as {
        seen: number[];
      }
    ).seen,
  ).toEqual([1, 2, 3]);
});

test('cluster ingress - bad requests get typed errors and are counted', async () => {
  const before = node.stats().cluster?.messagesInvalid ?? 0;
  const ask = async (subject: string, data: Uint8Array) =>
    dec((await nc.request(subject, data, { timeout: 10_000 })).data);
  const errorOf = async (subject: string, data: Uint8Array) => {
    const reply =
      data.length > 0 && data[0] === 0x7b
        ? await ask(subject, data)
        : (decode(
            (await nc.request(subject, data, { timeout: 10_000 })).data,
          ) as ReturnType<typeof dec>);
    expect(reply.ok).toBe(false);
    return reply.error?.code;
  };
  expect(
    await errorOf(`shardchart.${SYSTEM}.in.tally.x`, enc('{"type": broken')),
  ).toBe('MESSAGE_INVALID');
  expect(
    await errorOf(
      `shardchart.${SYSTEM}.in.tally.x`,
      new TextEncoder().encode('{"type": broken'),
    ),
  ).toBe('MESSAGE_INVALID');
  expect(
    await errorOf(
      `shardchart.${SYSTEM}.in.tally.x`,
      new Uint8Array([0xc1, 0xff, 0x00]),
    ),
  ).toBe('MESSAGE_INVALID');
  expect(
    await errorOf(
      `shardchart.${SYSTEM}.in.tally.x`,
      enc({ type: 'ADD', pad: 'x'.repeat(5_000) }),
    ),
  ).toBe('MESSAGE_INVALID');
  expect(
    await errorOf(`shardchart.${SYSTEM}.in.tally`, enc({ type: 'ADD', n: 1 })),
  ).toBe('MESSAGE_INVALID');
  expect(
    await errorOf(`shardchart.${SYSTEM}.in.nope.x`, enc({ type: 'ADD', n: 1 })),
  ).toBe('ENTITY_TYPE_UNKNOWN');
  expect(
    await errorOf(`shardchart.${SYSTEM}.in.tally.x`, enc({ kind: 'no type' })),
  ).toBe('EVENT_INVALID');
  let deep: unknown = 1;
  for (let i = 0; i < 100; i++) deep = [deep];
  expect(
    await errorOf(
      `shardchart.${SYSTEM}.in.tally.x`,
      encode({ type: 'ADD', deep }),
    ),
  ).toBe('MESSAGE_INVALID');
  // A prototype-polluting key is dropped, never applied to Object.prototype.
  const polluted = await ask(
    `shardchart.${SYSTEM}.in.tally.p`,
    new TextEncoder().encode('{"type":"PING","__proto__":{"polluted":true}}'),
  );
  expect(polluted.ok).toBe(true);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(
    (node.stats().cluster?.messagesInvalid ?? 0) - before,
  ).toBeGreaterThanOrEqual(5);
});

test('cluster - garbage in the events stream, on query and reply subjects is dropped and counted; the node keeps serving', async () => {
  const before = node.stats().cluster?.messagesInvalid ?? 0;
  const js = jetstream(nc);
  for (let shard = 0; shard < 4; shard++)
    await js.publish(
      `shardchart.${SYSTEM}.shard.${shard}`,
      new Uint8Array([1, 0xc1, 0x02, 0x03]),
    );
  await js.publish(
    `shardchart.${SYSTEM}.shard.0`,
    encode({ k: 'send', type: 'tally' }),
  );
  const queryReply = await nc.request(
    `shardchart.${SYSTEM}.query.1`,
    new Uint8Array([9, 9, 9]),
    { timeout: 5_000 },
  );
  expect(queryReply.data.length).toBeGreaterThan(0);
  nc.publish(
    `shardchart.${SYSTEM}.reply.b1.whatever`,
    new Uint8Array([1, 2, 3]),
  );
  for (
    let i = 0;
    i < 100 && (node.stats().cluster?.messagesInvalid ?? 0) - before < 6;
    i++
  )
    await new Promise((r) => setTimeout(r, 50));
  expect(
    (node.stats().cluster?.messagesInvalid ?? 0) - before,
  ).toBeGreaterThanOrEqual(6);
  // Still serving, and the garbage is out of the stream (terminated, not redelivered forever).
  const state = await node
    .entity('tally', 'after-garbage')
    .send({ type: 'ADD', n: 7 }, { eventId: 'g-7' });
  expect((state.context as { seen: number[] }).seen).toEqual([7]);
});
