/**
 * A send the router publishes again (same eventId and cid, a new
 * Nats-Msg-Id; see Router.send) while the shard owner is still applying the
 * first copy, against a real nats-server.
 *
 * Goal: the owner acks and drops the repeat while the first copy is being
 * applied (the first copy's answer settles the send); a repeat that arrives
 * after the first copy is done is answered as a duplicate by the entity's
 * applied event ids; no copy is ever applied twice; and the message being
 * applied is never taken out of the stream before it is applied, also when
 * the server redelivers it because its ack wait ran out.
 *
 * Method: the event's store write is held on a gate (a store that wraps
 * natsStore and waits before writing one event id), so the first copy stays
 * "being applied" for as long as the test wants. The test publishes the
 * send envelope itself to `shardchart.<sys>.shard.<n>` and listens on the
 * reply subject; the stream's message count tells what the owner acked.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { pino } from 'pino';
import {
  connect,
  createInbox,
  type NatsConnection,
} from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { createActorSystem, type ActorSystem } from 'shardchart';
import type { Store } from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import { ClusterError } from '../../src/errors.js';
import {
  ShardWorker,
  type ShardHost,
} from '../../src/cluster/nats/shard-worker.js';
import {
  decodeMessage,
  encodeMessage,
  type ReplyMessage,
  type SendMessage,
} from '../../src/cluster/protocol.js';
import { subjectsFor } from '../../src/cluster/subjects.js';
import type { EntityState } from '../../src/system/types.js';
import { shardOf } from '../../src/sharding/index.js';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';
import { tallyMachine } from './machines.js';

const SHARDS = 4;
const limits = { bytesMax: 1_048_576, depthMax: 64 };

let server: NatsServerHandle;
let nc: NatsConnection;
const systems: ActorSystem[] = [];
/** Opened on the way out, so a failed test does not leave a write held. */
const gates: (() => void)[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
}, 60_000);

afterAll(async () => {
  for (const open of gates) open();
  for (const system of systems) await system.stop().catch(() => undefined);
  await nc?.close();
  await server?.stop();
}, 60_000);

/** A gate the test opens; `reached` resolves when something waits on it. */
function gate(): {
  wait(): Promise<void>;
  open(): void;
  reached: Promise<void>;
} {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let reach!: () => void;
  const reached = new Promise<void>((resolve) => (reach = resolve));
  gates.push(open);
  return {
    wait() {
      reach();
      return opened;
    },
    open,
    reached,
  };
}

/**
 * natsStore, except that the write of a journal entry whose event id is in
 * `held` waits for that id's gate first: a slow store, as the owner sees it.
 */
function slowStore(held: Map<string, ReturnType<typeof gate>>): Store {
  const inner = natsStore();
  return {
    ...inner,
    async write(write) {
      for (const entry of write.entries) {
        const g =
          entry.eventId === undefined ? undefined : held.get(entry.eventId);
        if (g !== undefined) await g.wait();
      }
      return inner.write(write);
    },
  };
}

/** Messages of the events stream not acknowledged yet. */
async function streamMessages(
  jsm: JetStreamManager,
  stream: string,
): Promise<number> {
  return (await jsm.streams.info(stream)).state.messages;
}

async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Collects the replies published to a fresh inbox, by cid. */
function replies(): { subject: string; byCid: Map<number, ReplyMessage[]> } {
  const subject = createInbox();
  const byCid = new Map<number, ReplyMessage[]>();
  nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return;
      const reply = decodeMessage(msg.data, limits) as ReplyMessage;
      const cid = reply.cid ?? -1;
      byCid.set(cid, [...(byCid.get(cid) ?? []), reply]);
    },
  });
  return { subject, byCid };
}

async function publishSend(
  subject: string,
  message: SendMessage,
  msgID: string,
): Promise<void> {
  await jetstream(nc).publish(subject, encodeMessage(message), { msgID });
}

async function startOwner(
  system: string,
  store: Store,
  leaseTtlMs = 1_000,
): Promise<ActorSystem> {
  const sys = await createActorSystem({
    name: system,
    entities: { tally: tallyMachine },
    store,
    logger: pino({ level: 'error' }),
    cluster: {
      nats: { servers: server.url },
      nodeId: `owner-${system}`,
      shardCount: SHARDS,
      leaseTtlMs,
    },
  });
  systems.push(sys);
  // Every shard owned (and its consumer running) before the test publishes.
  await until(
    'the owner holds every shard',
    () => sys.stats().cluster?.ownedShards === SHARDS,
    30_000,
  );
  return sys;
}

test('shard worker - a repeat published while the first copy is applied is acked and dropped; a later repeat is answered as a duplicate; applied once', async () => {
  const system = 'repeat';
  const subjects = subjectsFor(system);
  const held = new Map([['e-1', gate()]]);
  const sys = await startOwner(system, slowStore(held));
  const jsm = await jetstreamManager(nc);
  const { subject: replyTo, byCid } = replies();
  const shard = shardOf('tally', 't-1', SHARDS);
  const send: SendMessage = {
    k: 'send',
    type: 'tally',
    id: 't-1',
    event: { type: 'ADD', n: 1 },
    eventId: 'e-1',
    replyTo,
    cid: 7,
    sentAt: Date.now(),
  };

  await publishSend(subjects.shard(shard), send, `${replyTo}/7`);
  // The first copy is applied: the entity's state has it, its write waits.
  await held.get('e-1')!.reached;
  await publishSend(subjects.shard(shard), send, `${replyTo}/7/1`);
  // The repeat is acked (gone from the work-queue stream) while the first
  // copy is not: one message left, and it stays while the gate is shut.
  await until(
    'the repeat is acked',
    async () => (await streamMessages(jsm, subjects.stream)) === 1,
  );
  await new Promise((r) => setTimeout(r, 300));
  expect(await streamMessages(jsm, subjects.stream)).toBe(1);
  expect(byCid.get(7)).toBeUndefined();

  held.get('e-1')!.open();
  await until('the first copy is answered', () => byCid.has(7));
  await until(
    'the first copy is acked',
    async () => (await streamMessages(jsm, subjects.stream)) === 0,
  );
  // One answer for the cid, no second one from the repeat.
  await new Promise((r) => setTimeout(r, 300));
  const answers = byCid.get(7)!;
  expect(answers).toHaveLength(1);
  const first = answers[0]!;
  expect(first.ok).toBe(true);
  const state = (first as { state: EntityState }).state;
  expect(state.seq).toBe(1);
  expect(state.context).toEqual({ seen: [1] });
  expect(state.duplicate).toBeUndefined();
  let stats = sys.stats();
  expect(stats.eventsApplied).toBe(1);
  expect(stats.duplicates).toBe(0);

  // Once the first copy is done, a repeat is a duplicate: answered with the
  // current state, nothing applied.
  await publishSend(subjects.shard(shard), send, `${replyTo}/7/2`);
  await until('the late repeat is answered', () => byCid.get(7)!.length === 2);
  const late = byCid.get(7)![1]!;
  expect(late.ok).toBe(true);
  const lateState = (late as { state: EntityState }).state;
  expect(lateState.duplicate).toBe(true);
  expect(lateState.seq).toBe(1);
  expect(lateState.context).toEqual({ seen: [1] });
  stats = sys.stats();
  expect(stats.eventsApplied).toBe(1);
  expect(stats.duplicates).toBe(1);

  const journal = [];
  for await (const entry of sys.entity('tally', 't-1').journal())
    journal.push(entry);
  expect(journal.map((e) => [e.seq, e.eventId])).toEqual([[1, 'e-1']]);
  expect(await streamMessages(jsm, subjects.stream)).toBe(0);
}, 60_000);

test('shard worker - the router re-publishes a send whose store write is slow: the owner drops the repeat and the first answer settles the send', async () => {
  // leaseTtlMs 1000: the router publishes again after max(2 s, 2 x TTL) = 2 s.
  const system = 'resend';
  const held = new Map([['e-slow', gate()]]);
  const owner = await startOwner(system, slowStore(held));
  const client = await createActorSystem({
    name: system,
    entities: { tally: tallyMachine },
    store: natsStore(),
    logger: pino({ level: 'error' }),
    cluster: {
      nats: { servers: server.url },
      nodeId: 'client-resend',
      shardCount: SHARDS,
      leaseTtlMs: 1_000,
      hostShards: false,
      sendTimeoutMs: 20_000,
    },
  });
  systems.push(client);
  const sent = client
    .entity('tally', 't-2')
    .send({ type: 'ADD', n: 2 }, { eventId: 'e-slow' });
  await held.get('e-slow')!.reached;
  // Hold the write until the router has published the send twice more.
  await until(
    'two re-publishes',
    () => (client.stats().cluster?.eventsResent ?? 0) >= 2,
    15_000,
  );
  held.get('e-slow')!.open();
  const state = await sent;
  expect(state.seq).toBe(1);
  expect(state.context).toEqual({ seen: [2] });
  expect(state.duplicate).toBeUndefined();
  const stats = owner.stats();
  expect(stats.eventsApplied).toBe(1);
  // The repeats were dropped by the worker, never reached the entity.
  expect(stats.duplicates).toBe(0);
  const snapshot = await client.entity('tally', 't-2').snapshot();
  expect(snapshot.seq).toBe(1);
  expect(snapshot.context).toEqual({ seen: [2] });
}, 60_000);

test('shard worker - a redelivery of the message being applied (its ack wait ran out) is not acked: answered once when applied, left in the stream for the next owner when the shard is lost', async () => {
  // A worker of its own with a 1 s ack wait and a host whose apply the test
  // settles: the server redelivers a message while it is being applied.
  const subjects = subjectsFor('redeliver');
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: subjects.stream,
    subjects: [subjects.shardWildcard],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.Memory,
  });
  const applied: string[] = [];
  const inApply = new Map<
    string,
    { resolve(state: EntityState): void; reject(error: Error): void }
  >();
  let owns = true;
  const host: ShardHost = {
    apply(message) {
      applied.push(message.eventId);
      return new Promise<EntityState>((resolve, reject) =>
        inApply.set(message.eventId, { resolve, reject }),
      );
    },
    ownsShard: () => owns,
    query: () => Promise.resolve({}),
    limits,
    invalid(error) {
      throw error;
    },
    log() {},
  };
  const stateOf = (eventId: string): EntityState => ({
    seq: 1,
    value: 'x',
    context: { eventId },
    status: 'active',
    changed: true,
  });
  const worker = new ShardWorker(
    0,
    nc,
    jetstream(nc),
    jsm,
    subjects,
    host,
    16,
    1_000,
  );
  await worker.start();
  const consumer = subjects.consumer(0);
  const { subject: replyTo, byCid } = replies();
  const sendOf = (eventId: string, cid: number): SendMessage => ({
    k: 'send',
    type: 'tally',
    id: 'r-1',
    event: { type: 'ADD', n: cid },
    eventId,
    replyTo,
    cid,
    sentAt: Date.now(),
  });
  /** Waits until the server delivered the consumer's messages `n` times in all. */
  const deliveredTimes = (n: number): Promise<void> =>
    until(
      `${n} deliveries`,
      async () =>
        (await jsm.consumers.info(subjects.stream, consumer)).delivered
          .consumer_seq >= n,
      10_000,
    );

  // 1. Redelivered while applied, then applied: one apply, one answer, and
  // the first delivery's ack takes it out of the stream.
  await publishSend(subjects.shard(0), sendOf('e-a', 1), 'm-a');
  await until('the first apply', () => inApply.has('e-a'));
  await deliveredTimes(2);
  await new Promise((r) => setTimeout(r, 300));
  expect(await streamMessages(jsm, subjects.stream)).toBe(1);
  inApply.get('e-a')!.resolve(stateOf('e-a'));
  await until(
    'acked',
    async () => (await streamMessages(jsm, subjects.stream)) === 0,
  );
  await new Promise((r) => setTimeout(r, 1_500));
  expect(applied).toEqual(['e-a']);
  expect(byCid.get(1)).toHaveLength(1);

  // 2. Redelivered while applied, then the shard is lost before the event
  // is durable: the event must still be in the stream for the next owner.
  await publishSend(subjects.shard(0), sendOf('e-b', 2), 'm-b');
  await until('the second apply', () => inApply.has('e-b'));
  const delivered = (await jsm.consumers.info(subjects.stream, consumer))
    .delivered.consumer_seq;
  await deliveredTimes(delivered + 1);
  await new Promise((r) => setTimeout(r, 300));
  expect(await streamMessages(jsm, subjects.stream)).toBe(1);
  owns = false;
  worker.stop();
  inApply
    .get('e-b')!
    .reject(
      new ClusterError('NOT_OWNER', 'lost the shard', { retryable: true }),
    );
  await new Promise((r) => setTimeout(r, 200));
  expect(await streamMessages(jsm, subjects.stream)).toBe(1);
  expect(byCid.get(2)).toBeUndefined();

  // The next owner applies and answers it, once.
  inApply.clear();
  const next = new ShardWorker(
    0,
    nc,
    jetstream(nc),
    jsm,
    subjects,
    {
      ...host,
      ownsShard: () => true,
      apply: (message) => {
        applied.push(message.eventId);
        return Promise.resolve(stateOf(message.eventId));
      },
    },
    16,
    30_000,
  );
  await next.start();
  await until('the next owner answers', () => byCid.has(2));
  await until(
    'the next owner acks',
    async () => (await streamMessages(jsm, subjects.stream)) === 0,
  );
  expect(byCid.get(2)).toHaveLength(1);
  expect(applied).toEqual(['e-a', 'e-b', 'e-b']);
  next.stop();
}, 60_000);
