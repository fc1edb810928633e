/**
 * Timer-index scans on shard acquisition (ClusterNode.loadWakeupsOf), with
 * a real nats-server and real node processes.
 *
 * Goal: when a node acquires many shards at once (at start, by handoff
 * from running nodes, or a dead node's shards at failover), the entities of
 * all those shards that have timers pending are woken, every timer fires
 * exactly once, the shards share a few scans of the timer index instead of
 * one scan each, shards acquired while a scan is running get the next scan,
 * and a scan that fails is retried instead of losing wake-ups.
 *
 * Method: the node under test runs in this process on a store that wraps
 * natsStore: it counts the scans of the timer index, can hold one on a gate
 * (so acquisitions happen while it runs), and can fail one after it has
 * yielded part of the index (a StoreError, as a store that loses its
 * connection mid-scan throws). The other nodes are child processes that the
 * test kills with SIGKILL. The test then reads the journals straight from
 * the store (which activates nothing) until every alarm has rung, so only
 * the timer index can have woken the entities of the shards that moved.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { pino } from 'pino';
import {
  createActorSystem,
  StoreError,
  type ActorSystem,
  type JournalEntry,
  type Store,
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

const SHARDS = 16;
const LEASE_TTL_MS = 2_000;

let server: NatsServerHandle;
const nodes: NodeProcess[] = [];
const systems: ActorSystem[] = [];
const gates: (() => void)[] = [];

beforeAll(async () => {
  server = await startNatsServer();
}, 60_000);

afterAll(async () => {
  for (const open of gates) open();
  for (const system of systems) await system.stop().catch(() => undefined);
  for (const node of nodes) node.signal('SIGKILL');
  await server?.stop();
}, 60_000);

interface ScanControl {
  /** Scans of the timer index started so far. */
  scans: number;
  /** Scans that failed (by `failScan`). */
  failed: number;
  /** The shards each scan asked the store for (`WakeupScanOptions.partitions`). */
  asked: (number[] | undefined)[];
  /** The scan with this number (1-based) waits for `release` before reading. */
  holdScan?: number;
  /** The scan with this number throws after yielding `failAfter` wake-ups. */
  failScan?: number;
  failAfter: number;
  /** Resolves when the held scan waits. */
  held: Promise<void>;
  release(): void;
}

/** natsStore with a timer index whose scans the test counts, holds and fails. */
function scanningStore(): { store: Store; control: ScanControl } {
  const inner = natsStore();
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  gates.push(release);
  let reached!: () => void;
  const control: ScanControl = {
    scans: 0,
    failed: 0,
    asked: [],
    failAfter: 0,
    held: new Promise<void>((resolve) => (reached = resolve)),
    release,
  };
  const store: Store = {
    ...inner,
    async *scanWakeups(options) {
      const number = ++control.scans;
      control.asked.push(
        options?.partitions === undefined
          ? undefined
          : [...options.partitions].sort((a, b) => a - b),
      );
      if (number === control.holdScan) {
        reached();
        await released;
      }
      let yielded = 0;
      for await (const wakeup of inner.scanWakeups(options)) {
        if (number === control.failScan && yielded === control.failAfter) {
          control.failed++;
          throw new StoreError(
            'STORE_FAILED',
            'The timer index scan failed (injected by the test).',
            { retryable: true },
          );
        }
        yielded++;
        yield wakeup;
      }
    },
  };
  return { store, control };
}

async function startNode(
  system: string,
  nodeId: string,
  store: Store,
): Promise<ActorSystem> {
  const sys = await createActorSystem({
    name: system,
    entities: { tally: tallyMachine, alarm: alarmMachine },
    store,
    passivateAfterMs: 0,
    logger: pino({ level: 'silent' }),
    cluster: {
      nats: { servers: server.url },
      nodeId,
      shardCount: SHARDS,
      leaseTtlMs: LEASE_TTL_MS,
      sendTimeoutMs: 20_000,
    },
  });
  systems.push(sys);
  return sys;
}

async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function journalOf(
  system: ActorSystem,
  id: string,
): Promise<JournalEntry[]> {
  const out: JournalEntry[] = [];
  for await (const entry of system.entity('alarm', id).journal())
    out.push(entry);
  return out;
}

const isRing = (e: JournalEntry): boolean =>
  e.event.type.startsWith('xstate.after');

/**
 * Waits (reading the store only) until every alarm has rung, then a while
 * longer, and checks each rang exactly once: journal [ARM, ring], state
 * `rung`, one ring counted.
 */
async function expectRungOnce(
  reader: ActorSystem,
  ids: readonly string[],
  timeoutMs: number,
): Promise<void> {
  const rang = new Set<string>();
  const deadline = Date.now() + timeoutMs;
  while (rang.size < ids.length && Date.now() < deadline) {
    for (const id of ids) {
      if (rang.has(id)) continue;
      if ((await journalOf(reader, id)).some(isRing)) rang.add(id);
    }
    if (rang.size < ids.length) await new Promise((r) => setTimeout(r, 200));
  }
  expect(
    ids.filter((id) => !rang.has(id)),
    'alarms that never rang',
  ).toEqual([]);
  await new Promise((r) => setTimeout(r, 1_000));
  for (const id of ids) {
    const journal = await journalOf(reader, id);
    expect(journal.filter(isRing), `rings of ${id}`).toHaveLength(1);
    expect(journal.map((e) => e.seq)).toEqual([1, 2]);
  }
  for (const id of ids) {
    const s = await reader.entity('alarm', id).snapshot();
    expect(s.value).toBe('rung');
    expect((s.context as { rings: number }).rings).toBe(1);
  }
}

test('wakeup scan - shards taken by handoff and from two SIGKILLed nodes while a scan runs get the next scan; a scan failing half-way is retried; every alarm rings once', async () => {
  const system = 'wscan';
  const ids = ['z1', 'z2'];
  nodes.push(
    ...ids.map((id) => spawnNode(server.url, id, system, SHARDS, LEASE_TTL_MS)),
  );
  await Promise.all(nodes.map((n) => n.ready));
  await waitForOwners(server.url, system, SHARDS, ids, 60_000);

  // Alarms in every shard, armed on z1 and z2. ALARM_SOON falls due after
  // the kill and before the held scans are let go (they fire as soon as the
  // scan has loaded them); ALARM_LATE after (at their deadline).
  const ALARM_SOON_MS = 4_000;
  const ALARM_LATE_MS = 10_000;
  const alarms = Array.from({ length: 64 }, (_, i) => ({
    id: `a-${i}`,
    delayMs: i % 2 === 0 ? ALARM_SOON_MS : ALARM_LATE_MS,
  }));
  const shardsWithAlarms = new Set(
    alarms.map((a) => shardOf('alarm', a.id, SHARDS)),
  );
  expect(shardsWithAlarms.size).toBe(SHARDS);
  const { store, control } = scanningStore();
  // y's first scan (the shards it takes over by handoff as it joins) waits
  // until the test lets it go; its second fails after 5 wake-ups.
  control.holdScan = 1;
  control.failScan = 2;
  control.failAfter = 5;
  const y = await startNode(system, 'y', store);
  await Promise.all(
    alarms.map(async (a) => {
      const r = await y
        .entity('alarm', a.id)
        .send({ type: 'ARM', delayMs: a.delayMs }, { eventId: `arm-${a.id}` });
      expect(r.value).toBe('armed');
    }),
  );

  // Every ARM is applied by now, so every alarm is due by this + its delay.
  const armedAt = Date.now();
  await control.held;
  await waitForOwners(server.url, system, SHARDS, ['y', ...ids], 30_000);
  const joined = (await clusterStatus(server.url, system)).find(
    (s) => s.nodeId === 'y',
  )!.ownedShards;
  expect(joined.length).toBeGreaterThan(0);
  expect(joined.length).toBeLessThan(SHARDS);

  for (const node of nodes) node.signal('SIGKILL');
  await Promise.all(nodes.map((n) => n.exited));
  const killedAt = Date.now();
  // Every shard of the dead nodes is acquired while y's first scan runs.
  await until(
    'y owns every shard',
    () => y.stats().cluster?.ownedShards === SHARDS,
    30_000,
  );
  expect(control.scans).toBe(1);
  const allOwnedAt = Date.now();
  // Held until the ALARM_SOON alarms are overdue: they ring as soon as a
  // scan has loaded them.
  const soonDueAt = armedAt + ALARM_SOON_MS;
  await new Promise((r) =>
    setTimeout(r, Math.max(0, soonDueAt + 500 - Date.now())),
  );
  expect(control.scans).toBe(1);
  control.release();

  await expectRungOnce(
    y,
    alarms.map((a) => a.id),
    ALARM_LATE_MS + 30_000,
  );
  // One scan for the handoff, one (failed) and its retry for the shards
  // taken over meanwhile: a few scans for 16 acquisitions, not 16.
  expect(control.failed).toBe(1);
  expect(control.scans).toBeGreaterThanOrEqual(3);
  expect(control.scans).toBeLessThanOrEqual(5);
  // Each scan told the store which shards it is for: the first, those y
  // took by handoff (the store reads only their part of the index).
  expect(control.asked[0]).toEqual([...joined].sort((a, b) => a - b));
  for (const asked of control.asked) {
    expect(asked?.length).toBeGreaterThan(0);
    for (const shard of asked!) expect(shard).toBeLessThan(SHARDS);
  }
  console.log(
    `[wakeup scan] y took ${joined.length} shards by handoff, ${SHARDS - joined.length} from the killed nodes ${allOwnedAt - killedAt} ms after the kill; ` +
      `scans ${control.scans} (failed ${control.failed}); alarms armed ${killedAt - armedAt} ms before the kill`,
  );
}, 90_000);

test('wakeup scan - a node that starts alone takes every shard in one burst: one coalesced scan, retried after a failure, wakes every entity once', async () => {
  const system = 'wstart';
  const first = await startNode(system, 'first', natsStore());
  await until(
    'first owns every shard',
    () => first.stats().cluster?.ownedShards === SHARDS,
    30_000,
  );
  const ids = Array.from({ length: 48 }, (_, i) => `b-${i}`);
  await Promise.all(
    ids.map((id) =>
      first
        .entity('alarm', id)
        .send({ type: 'ARM', delayMs: 3_000 }, { eventId: `arm-${id}` }),
    ),
  );
  // A graceful stop: the alarms are passivated with their timers in the
  // store's index, and the shards are released.
  await first.stop();

  const { store, control } = scanningStore();
  control.failScan = 1;
  control.failAfter = 7;
  const second = await startNode(system, 'second', store);
  await until(
    'second owns every shard',
    () => second.stats().cluster?.ownedShards === SHARDS,
    30_000,
  );
  await expectRungOnce(second, ids, 30_000);
  expect(control.failed).toBe(1);
  // The first scan failed; its retry covered every shard of the burst.
  expect(control.scans).toBeGreaterThanOrEqual(2);
  expect(control.scans).toBeLessThanOrEqual(4);
  console.log(
    `[wakeup scan] a node starting alone took ${SHARDS} shards with ${ids.length} alarms pending: scans ${control.scans} (failed ${control.failed})`,
  );
}, 60_000);
