/**
 * Durable timers across failover, with real processes: entities on a node
 * that is SIGKILLed with their `after` timers pending must ring on the node
 * that takes their shards over, exactly once, with nobody sending to them:
 * - timers due after the takeover fire at their original deadline;
 * - timers that fell due while the shard had no owner fire as soon as the
 *   new owner has the shard.
 * The test reads the journals straight from the store (which activates
 * nothing) until every timer has fired, so only the timer index the new
 * owner loads when it acquires a shard can have woken the entities.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { pino } from 'pino';
import {
  createActorSystem,
  type ActorSystem,
  type JournalEntry,
} from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import { shardOf } from '../../src/sharding/index.js';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';
import { alarmMachine, tallyMachine } from './machines.js';
import {
  clusterStatus,
  spawnNode,
  waitForOwners,
  type NodeProcess,
} from './support.js';

const SHARDS = 12;
const LEASE_TTL_MS = 2_000;
const ENTITIES = 48;
/** Due well after the takeover: re-armed at the original deadline. */
const LATE_MS = 7_000;
/** Due while the killed node's shards have no owner: fire at takeover. */
const OVERDUE_MS = 1_000;

let server: NatsServerHandle;
const nodes: NodeProcess[] = [];
let client: ActorSystem | undefined;

beforeAll(async () => {
  server = await startNatsServer();
}, 120_000);

afterAll(async () => {
  await client?.stop();
  for (const node of nodes) node.signal('SIGKILL');
  await server?.stop();
}, 120_000);

async function journalOf(
  system: ActorSystem,
  id: string,
): Promise<JournalEntry[]> {
  const out: JournalEntry[] = [];
  for await (const entry of system.entity('alarm', id).journal()) out.push(entry);
  return out;
}

test('cluster timers - alarms of a SIGKILLed node ring exactly once on the new owner, at their deadline or at takeover when overdue', async () => {
  const system = 'timers';
  const ids = ['n1', 'n2', 'n3'];
  nodes.push(
    ...ids.map((id) => spawnNode(server.url, id, system, SHARDS, LEASE_TTL_MS)),
  );
  await Promise.all(nodes.map((n) => n.ready));
  await waitForOwners(server.url, system, SHARDS, ids, 60_000);
  client = await createActorSystem({
    name: system,
    entities: { tally: tallyMachine, alarm: alarmMachine },
    store: natsStore(),
    logger: pino({ level: 'error' }),
    cluster: {
      nats: { servers: server.url },
      nodeId: 'client-timers',
      shardCount: SHARDS,
      leaseTtlMs: LEASE_TTL_MS,
      hostShards: false,
      sendTimeoutMs: 20_000,
    },
  });

  const status = await clusterStatus(server.url, system);
  const victimShards = new Set(
    status.find((s) => s.nodeId === 'n2')?.ownedShards ?? [],
  );
  expect(victimShards.size).toBeGreaterThan(0);
  const alarms = Array.from({ length: ENTITIES }, (_, i) => ({
    id: `a-${i}`,
    delayMs: i % 2 === 0 ? LATE_MS : OVERDUE_MS,
  }));
  const onVictim = alarms.filter((a) =>
    victimShards.has(shardOf('alarm', a.id, SHARDS)),
  );
  expect(onVictim.some((a) => a.delayMs === LATE_MS)).toBe(true);
  expect(onVictim.some((a) => a.delayMs === OVERDUE_MS)).toBe(true);

  await Promise.all(
    alarms.map(async (a) => {
      const r = await client!
        .entity('alarm', a.id)
        .send({ type: 'ARM', delayMs: a.delayMs }, { eventId: `arm-${a.id}` });
      expect(r.value).toBe('armed');
    }),
  );
  const victim = nodes[1]!;
  victim.signal('SIGKILL');
  const killedAt = Date.now();
  await victim.exited;
  const takeoverMs = await waitForOwners(
    server.url,
    system,
    SHARDS,
    ['n1', 'n3'],
    30_000,
  );

  // Wait (reading the store only) until every alarm has rung.
  const rang = new Map<string, JournalEntry>();
  const appliedAt = new Map<string, number>();
  const deadline = Date.now() + LATE_MS + 30_000;
  while (rang.size < alarms.length && Date.now() < deadline) {
    for (const a of alarms) {
      if (rang.has(a.id)) continue;
      const journal = await journalOf(client, a.id);
      const ring = journal.find((e) => e.event.type.startsWith('xstate.after'));
      if (ring === undefined) continue;
      rang.set(a.id, ring);
      appliedAt.set(a.id, journal[0]!.at);
    }
    if (rang.size < alarms.length) await new Promise((r) => setTimeout(r, 200));
  }
  expect(
    alarms.filter((a) => !rang.has(a.id)).map((a) => a.id),
    'alarms that never rang',
  ).toEqual([]);

  // Rung once: nothing more in any journal a while after the last deadline.
  await new Promise((r) => setTimeout(r, 1_000));
  let rungTwice = 0;
  for (const a of alarms) {
    const journal = await journalOf(client, a.id);
    const rings = journal.filter((e) => e.event.type.startsWith('xstate.after'));
    if (rings.length !== 1) rungTwice++;
    expect(journal.map((e) => e.seq)).toEqual([1, 2]);
  }
  expect(rungTwice).toBe(0);
  for (const a of alarms) {
    const s = await client.entity('alarm', a.id).snapshot();
    expect(s.value).toBe('rung');
    expect((s.context as { rings: number }).rings).toBe(1);
  }

  // How late each victim alarm rang: the late ones against their deadline,
  // the overdue ones against the kill (the lease has to lapse first).
  const late = onVictim
    .filter((a) => a.delayMs === LATE_MS)
    .map((a) => rang.get(a.id)!.at - (appliedAt.get(a.id)! + LATE_MS));
  const overdue = onVictim
    .filter((a) => a.delayMs === OVERDUE_MS)
    .map((a) => rang.get(a.id)!.at - killedAt);
  for (const a of onVictim.filter((x) => x.delayMs === LATE_MS))
    expect(rang.get(a.id)!.at).toBeGreaterThanOrEqual(appliedAt.get(a.id)! + LATE_MS);
  for (const ms of overdue) expect(ms).toBeGreaterThan(0);
  console.log(
    `[cluster timers] ${onVictim.length} of ${alarms.length} alarms on the killed node; shards owned again ${takeoverMs} ms after the kill; ` +
      `late alarms rang ${Math.min(...late)}..${Math.max(...late)} ms after their deadline; ` +
      `overdue alarms rang ${Math.min(...overdue)}..${Math.max(...overdue)} ms after the kill (lease TTL ${LEASE_TTL_MS} ms); rang twice ${rungTwice}`,
  );
}, 120_000);
