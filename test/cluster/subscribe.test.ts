/**
 * `subscribe` and `waitFor` on clustered refs get each state pushed by the
 * entity's owner on `shardchart.<sys>.state.<n>`. Three nodes run in their
 * own processes on a private nats-server; the subscriber is a client node
 * (hostShards: false) in the test process, and a plain NATS connection
 * listens on the query and state subjects to see what crossed the wire:
 * the deliveries must be the pushed states (no `snapshot` reads), in seq
 * order with none skipped, must go on through a SIGKILL and a graceful
 * leave of the owner, must stop with `unsubscribe` (and the owner's watch
 * lapse), and garbage on a state subject must be counted and dropped.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { pino } from 'pino';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  createActorSystem,
  type ActorSystem,
  type EntityRef,
  type EntityState,
} from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import { decodeEnvelope, encodeEnvelope } from '../../src/codec/index.js';
import { encodeMessage } from '../../src/cluster/protocol.js';
import { WATCH_TTL_MS } from '../../src/cluster/nats/state-feed.js';
import { shardOf } from '../../src/sharding/index.js';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';
import { tallyMachine } from './machines.js';
import {
  clusterStatus,
  spawnNode,
  waitForOwners,
  type NodeProcess,
  type NodeStatus,
} from './support.js';

const SYSTEM = 'push';
const SHARDS = 6;
const LEASE_TTL_MS = 1_500;

let server: NatsServerHandle;
let client: ActorSystem;
let snoop: NatsConnection;
const nodes: NodeProcess[] = [];
/** What crossed the query and state subjects, per entity id. */
const wire = {
  queries: [] as { op: string; id: string }[],
  pushed: new Map<string, number[]>(),
};

type Status = NodeStatus & {
  watchedEntities: number;
  watchingEntities: number;
};

beforeAll(async () => {
  server = await startNatsServer();
  nodes.push(
    ...['n1', 'n2', 'n3'].map((id) =>
      spawnNode(server.url, id, SYSTEM, SHARDS, LEASE_TTL_MS),
    ),
  );
  await Promise.all(nodes.map((n) => n.ready));
  await waitForOwners(server.url, SYSTEM, SHARDS, ['n1', 'n2', 'n3'], 30_000);
  client = await createActorSystem({
    name: SYSTEM,
    entities: { tally: tallyMachine },
    store: natsStore(),
    logger: pino({ level: 'error' }),
    cluster: {
      nats: { servers: server.url },
      nodeId: 'client',
      shardCount: SHARDS,
      leaseTtlMs: LEASE_TTL_MS,
      hostShards: false,
      sendTimeoutMs: 20_000,
      // Below NATS's 1 MiB payload bound, so an oversized message can be sent.
      messageBytesMax: 262_144,
    },
  });
  snoop = await connect({ servers: server.url });
  const limits = { bytesMax: 1 << 20, depthMax: 64 };
  snoop.subscribe(`shardchart.${SYSTEM}.query.*`, {
    callback: (err, msg) => {
      if (err) return;
      try {
        const q = decodeEnvelope(msg.data, limits) as {
          op: string;
          id: string;
        };
        wire.queries.push({ op: q.op, id: q.id });
      } catch {
        // Garbage sent by a test.
      }
    },
  });
  snoop.subscribe(`shardchart.${SYSTEM}.state.*`, {
    callback: (err, msg) => {
      if (err) return;
      try {
        const m = decodeEnvelope(msg.data, limits) as {
          k: string;
          id: string;
          state?: { seq: number };
        };
        if (m.k !== 'state' || m.state === undefined) return;
        const seqs = wire.pushed.get(m.id) ?? [];
        seqs.push(m.state.seq);
        wire.pushed.set(m.id, seqs);
      } catch {
        // Garbage sent by a test.
      }
    },
  });
  await snoop.flush();
}, 120_000);

afterAll(async () => {
  await snoop?.close();
  await client?.stop();
  for (const node of nodes) node.signal('SIGKILL');
  await Promise.all(nodes.map((n) => n.exited));
  await server?.stop();
}, 60_000);

async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Subscribes the client node to tally `id`, collecting states and errors,
 * and waits for the first delivery (the current state).
 */
async function subscribed(id: string): Promise<{
  ref: EntityRef;
  states: EntityState[];
  errors: unknown[];
  off: () => void;
}> {
  const ref = client.entity('tally', id);
  const states: EntityState[] = [];
  const errors: unknown[] = [];
  const off = ref.subscribe({
    next: (s) => states.push(s),
    error: (e) => errors.push(e),
  });
  await until('the current state', () => states.length > 0);
  return { ref, states, errors, off };
}

async function statusOf(nodeId: string): Promise<Status | undefined> {
  return (await clusterStatus(server.url, SYSTEM)).find(
    (s) => s.nodeId === nodeId,
  ) as Status | undefined;
}

/** The node that owns the entity's shard now. */
async function ownerOf(id: string): Promise<string> {
  const shard = shardOf('tally', id, SHARDS);
  let owner: string | undefined;
  await until(`an owner of ${id}`, async () => {
    owner = (await clusterStatus(server.url, SYSTEM)).find((s) =>
      s.ownedShards.includes(shard),
    )?.nodeId;
    return owner !== undefined && owner !== 'client';
  });
  return owner!;
}

const seen = (s: EntityState): number[] =>
  (s.context as { seen: number[] }).seen;

/** Sends ADD n and waits until the subscriber got the state that holds it. */
async function step(
  id: string,
  n: number,
  states: EntityState[],
): Promise<void> {
  await client
    .entity('tally', id)
    .send({ type: 'ADD', n }, { eventId: `${id}:${n}` });
  await until(`${id} delivers ADD ${n}`, () =>
    states.some((s) => seen(s).includes(n)),
  );
}

test('cluster subscribe - a client node gets every state of an entity owned elsewhere, pushed on the state subject, in seq order, none skipped', async () => {
  const id = 'w-1';
  // The current state comes first, and it is the initial one.
  const { ref, states, errors, off } = await subscribed(id);
  expect(states[0]?.seq).toBe(0);
  const EVENTS = 20;
  for (let n = 1; n <= EVENTS; n++) await step(id, n, states);

  expect(errors).toEqual([]);
  expect(states.map((s) => s.seq)).toEqual(
    Array.from({ length: EVENTS + 1 }, (_, i) => i),
  );
  expect(seen(states.at(-1)!)).toEqual(
    Array.from({ length: EVENTS }, (_, i) => i + 1),
  );
  // Every delivery after the first came through the state subject, and the
  // owner answered no snapshot read for the subscription.
  await until('the snooped pushes', () =>
    (wire.pushed.get(id) ?? []).includes(EVENTS),
  );
  const pushed = new Set(wire.pushed.get(id));
  for (let seq = 1; seq <= EVENTS; seq++) expect(pushed.has(seq)).toBe(true);
  const ops = wire.queries.filter((q) => q.id === id).map((q) => q.op);
  expect(ops.filter((op) => op === 'snapshot')).toEqual([]);
  expect(ops.filter((op) => op === 'watch').length).toBeGreaterThan(0);

  // waitFor: a predicate true already resolves with the current state; one
  // that becomes true resolves with the state that made it so.
  const now = await ref.waitFor((s) => s.seq >= EVENTS, { timeoutMs: 10_000 });
  expect(now.seq).toBe(EVENTS);
  const later = ref.waitFor((s) => seen(s).includes(99), { timeoutMs: 20_000 });
  await ref.send({ type: 'ADD', n: 99 }, { eventId: `${id}:99` });
  expect((await later).seq).toBe(EVENTS + 1);

  // A second local subscriber shares the watch and gets the current state first.
  const second: EntityState[] = [];
  const off2 = ref.subscribe((s) => second.push(s));
  await until('the second subscriber', () => second.length > 0);
  expect(second[0]?.seq).toBe(EVENTS + 1);
  expect((await statusOf('client'))?.watchingEntities).toBe(1);
  const ownerStatus = await statusOf(await ownerOf(id));
  expect(ownerStatus?.watchedEntities).toBeGreaterThanOrEqual(1);
  off2();
  off();
  console.log(
    `[cluster subscribe] ${EVENTS + 1} events, ${states.length} deliveries, ` +
      `${ops.filter((op) => op === 'watch').length} watch queries, ${ops.filter((op) => op === 'snapshot').length} snapshot reads`,
  );
}, 60_000);

test('cluster subscribe - unsubscribe stops deliveries and renewals; the owner forgets the watch after its TTL', async () => {
  const id = 'u-1';
  const ref = client.entity('tally', id);
  const states: EntityState[] = [];
  const off = ref.subscribe((s) => states.push(s));
  await until('the current state', () => states.length > 0);
  await step(id, 1, states);
  const owner = await ownerOf(id);
  off();
  const delivered = states.length;
  const watchesAt = (): number =>
    wire.queries.filter((q) => q.id === id && q.op === 'watch').length;
  const renewalsAtStop = watchesAt();
  expect((await statusOf('client'))?.watchingEntities).toBe(0);
  // Every watch of the earlier test lapsed too once this one has.
  await until(
    'the owner to drop the watch',
    async () => (await statusOf(owner))?.watchedEntities === 0,
    WATCH_TTL_MS * 4,
  );
  // A renewal already on its way at unsubscribe is the most that follows it.
  expect(watchesAt() - renewalsAtStop).toBeLessThanOrEqual(1);
  await ref.send({ type: 'ADD', n: 2 }, { eventId: `${id}:2` });
  await new Promise((r) => setTimeout(r, 300));
  expect(states.length).toBe(delivered);
  // Nobody watches it: the owner published nothing for the new state.
  expect(wire.pushed.get(id) ?? []).not.toContain(2);
}, 60_000);

test('cluster subscribe - garbage on a state subject is counted and dropped; a watch query for an unknown type or a bad id gets a typed error', async () => {
  const id = 'm-1';
  const { states, errors, off } = await subscribed(id);
  const subject = `shardchart.${SYSTEM}.state.${shardOf('tally', id, SHARDS)}`;
  const before = client.stats().cluster?.messagesInvalid ?? 0;
  const state = { seq: 7, value: {}, context: { seen: [7] }, status: 'active' };
  const garbage = [
    new Uint8Array([1, 0xc1, 0x02]),
    new Uint8Array([9, 9, 9]),
    encodeEnvelope({ k: 'state', type: 'tally', id, seq: 'x' }),
    // The state's seq must be the message's.
    encodeEnvelope({ k: 'state', type: 'tally', id, seq: 6, state }),
    encodeEnvelope({
      k: 'state',
      type: 'tally',
      id,
      seq: 7,
      state: { ...state, status: 'weird' },
    }),
    encodeEnvelope({ k: 'moved', shard: -1 }),
    encodeEnvelope({ k: 'nope' }),
    encodeMessage({ k: 'query', op: 'snapshot', type: 'tally', id }),
    encodeEnvelope({
      k: 'state',
      type: 'tally',
      id,
      seq: 1,
      pad: 'x'.repeat(300_000),
    }),
  ];
  for (const bytes of garbage) snoop.publish(subject, bytes);
  await snoop.flush();
  await until(
    'every bad message counted',
    () =>
      (client.stats().cluster?.messagesInvalid ?? 0) - before >= garbage.length,
  );
  expect((client.stats().cluster?.messagesInvalid ?? 0) - before).toBe(
    garbage.length,
  );
  // Nothing of it was delivered, and the subscription still works.
  expect(states.map((s) => s.seq)).toEqual([0]);
  await step(id, 1, states);
  expect(states.map((s) => s.seq)).toEqual([0, 1]);
  expect(errors).toEqual([]);
  off();

  // Asked on the subject of the entity's shard, as a router would.
  const ask = async (
    body: Record<string, unknown> & { type: string; id: string },
  ): Promise<string | undefined> => {
    const reply = decodeEnvelope(
      (
        await snoop.request(
          `shardchart.${SYSTEM}.query.${shardOf(body.type, body.id, SHARDS)}`,
          encodeEnvelope(body),
          { timeout: 10_000 },
        )
      ).data,
      { bytesMax: 1 << 20, depthMax: 64 },
    ) as { ok: boolean; error?: { code: string } };
    expect(reply.ok).toBe(false);
    return reply.error?.code;
  };
  const watch = {
    k: 'query',
    op: 'watch',
    watcher: 'w',
    ttlMs: 3_000,
    seq: -1,
  };
  expect(await ask({ ...watch, type: 'nope', id })).toBe('ENTITY_TYPE_UNKNOWN');
  expect(await ask({ ...watch, type: 'tally', id: 'x'.repeat(5_000) })).toBe(
    'ENTITY_ID_INVALID',
  );
  expect(await ask({ ...watch, type: 'tally', id, ttlMs: 10 })).toBe(
    'MESSAGE_INVALID',
  );
  expect(await ask({ ...watch, type: 'tally', id, watcher: 5 })).toBe(
    'MESSAGE_INVALID',
  );
  expect(await ask({ ...watch, type: 'tally', id, seq: 1.5 })).toBe(
    'MESSAGE_INVALID',
  );
}, 60_000);

test('cluster subscribe - the subscription goes on after its owner is SIGKILLed, then after the next owner leaves', async () => {
  const id = 'k-1';
  const { states, errors, off } = await subscribed(id);
  let n = 0;
  for (; n < 3;) await step(id, ++n, states);

  const first = await ownerOf(id);
  const victim = nodes.find((p) => p.nodeId === first)!;
  victim.signal('SIGKILL');
  await victim.exited;
  const alive = ['n1', 'n2', 'n3'].filter((x) => x !== first);
  await waitForOwners(server.url, SYSTEM, SHARDS, alive, 30_000);
  const second = await ownerOf(id);
  expect(second).not.toBe(first);
  // The first state after the move may stand for several (applied before
  // the watch reached the new owner); from then on each one arrives.
  await step(id, ++n, states);
  const settled = states.length;
  for (let i = 0; i < 5; i++) await step(id, ++n, states);
  expect(states.slice(settled - 1).map((s) => s.seq)).toEqual(
    Array.from({ length: 6 }, (_, i) => states[settled - 1]!.seq + i),
  );

  // Graceful leave of the new owner: its shards move to the last node.
  const leaving = nodes.find((p) => p.nodeId === second)!;
  await leaving.stop();
  const last = alive.filter((x) => x !== second);
  await waitForOwners(server.url, SYSTEM, SHARDS, last, 30_000);
  expect(await ownerOf(id)).toBe(last[0]);
  await step(id, ++n, states);
  const settledAgain = states.length;
  for (let i = 0; i < 5; i++) await step(id, ++n, states);
  expect(states.slice(settledAgain - 1).map((s) => s.seq)).toEqual(
    Array.from({ length: 6 }, (_, i) => states[settledAgain - 1]!.seq + i),
  );

  expect(errors).toEqual([]);
  // Strictly increasing seqs throughout, ending with every event applied once.
  const seqs = states.map((s) => s.seq);
  for (let i = 1; i < seqs.length; i++)
    expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
  expect(seen(states.at(-1)!)).toEqual(
    Array.from({ length: n }, (_, i) => i + 1),
  );
  expect(
    wire.queries.filter((q) => q.id === id && q.op === 'snapshot'),
  ).toEqual([]);
  off();
  console.log(
    `[cluster subscribe] through a SIGKILL (${first}) and a leave (${second}): ${n} events, ${states.length} deliveries, seqs ${seqs.join(',')}`,
  );
}, 120_000);

test('cluster subscribe - a state too large for messageBytesMax ends the subscription with MESSAGE_INVALID, as a snapshot read fails, instead of going missing', async () => {
  const system = 'pushbig';
  const node = await createActorSystem({
    name: system,
    entities: { tally: tallyMachine },
    store: natsStore(),
    logger: pino({ level: 'silent' }),
    cluster: {
      nats: { servers: server.url },
      nodeId: 'big-1',
      shardCount: 2,
      leaseTtlMs: LEASE_TTL_MS,
      messageBytesMax: 1_024,
    },
  });
  try {
    await until(
      'both shards owned',
      () => (node.stats().cluster?.ownedShards ?? 0) === 2,
    );
    const ref = node.entity('tally', 'b-1');
    const states: EntityState[] = [];
    let failure: unknown;
    ref.subscribe({
      next: (s) => states.push(s),
      error: (e) => (failure = e),
    });
    await until('the current state', () => states.length > 0);
    // Each event fits; the state holding both does not. The send's own
    // answer is too large as well, so it is not awaited.
    await ref.send({ type: 'ADD', n: 'x'.repeat(600) });
    await until('the first state', () => states.length > 1);
    void ref
      .send({ type: 'ADD', n: 'y'.repeat(600) }, { timeoutMs: 3_000 })
      .catch(() => undefined);
    await until('the subscription to fail', () => failure !== undefined);
    expect((failure as { code?: string }).code).toBe('MESSAGE_INVALID');
    expect(states.map((s) => s.seq)).toEqual([0, 1]);
    await expect(ref.snapshot()).rejects.toMatchObject({
      code: 'MESSAGE_INVALID',
    });
  } finally {
    await node.stop();
  }
}, 60_000);
