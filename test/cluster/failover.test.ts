/**
 * The cluster under faults, with real processes: three nodes in their own
 * processes on a private nats-server, a client node in the test process
 * driving a steady load over many entities and recording every acknowledged
 * event. After each fault every entity's state must hold each acknowledged
 * event exactly once.
 *
 * Sizes are small by default so the suite stays fast; SHARDCHART_CHAOS_SCALE
 * multiplies entities and run time for a longer run.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { pino } from 'pino';
import { createActorSystem, type ActorSystem } from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';
import { tallyMachine } from './machines.js';
import {
  clusterStatus,
  LoadDriver,
  percentile,
  spawnNode,
  staleWrites,
  verify,
  waitForOwners,
  type NodeProcess,
} from './support.js';

const SCALE = Number(process.env.SHARDCHART_CHAOS_SCALE ?? '1');
const SHARDS = 24;
const LEASE_TTL_MS = 2_000;
const ENTITIES = Math.round(1_000 * SCALE);

let server: NatsServerHandle;
const nodes: NodeProcess[] = [];

beforeAll(async () => {
  server = await startNatsServer();
}, 120_000);

afterAll(async () => {
  for (const node of nodes) node.signal('SIGKILL');
  await server?.stop();
}, 120_000);

async function client(system: string): Promise<ActorSystem> {
  return createActorSystem({
    name: system,
    entities: { tally: tallyMachine },
    store: natsStore(),
    logger: pino({ level: 'error' }),
    cluster: {
      nats: { servers: server.url },
      nodeId: `client-${system}`,
      shardCount: SHARDS,
      leaseTtlMs: LEASE_TTL_MS,
      hostShards: false,
      sendTimeoutMs: 20_000,
    },
  });
}

function startNodes(system: string, ids: readonly string[]): NodeProcess[] {
  const started = ids.map((id) =>
    spawnNode(server.url, id, system, SHARDS, LEASE_TTL_MS),
  );
  nodes.push(...started);
  return started;
}

const ids = (n: number, prefix: string): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

test('cluster - SIGKILL of a node under load: nothing acknowledged lost, nothing applied twice, its shards served again within lease TTL + 2 s', async () => {
  const system = 'killtest';
  const [n1, n2, n3] = startNodes(system, ['n1', 'n2', 'n3']) as [
    NodeProcess,
    NodeProcess,
    NodeProcess,
  ];
  await Promise.all([n1.ready, n2.ready, n3.ready]);
  await waitForOwners(server.url, system, SHARDS, ['n1', 'n2', 'n3'], 20_000);
  const sys = await client(system);
  try {
    const driver = new LoadDriver(sys, ids(ENTITIES, 'k'), 32);
    driver.start();
    await new Promise((r) => setTimeout(r, 2_000 * SCALE));
    const before = driver.ackedCount();
    const victimShards =
      (await clusterStatus(server.url, system)).find((s) => s.nodeId === 'n2')
        ?.ownedShards ?? [];
    expect(victimShards.length).toBeGreaterThan(0);
    const killedAt = Date.now();
    n2.signal('SIGKILL');
    const failoverMs = await waitForOwners(
      server.url,
      system,
      SHARDS,
      ['n1', 'n3'],
      LEASE_TTL_MS + 15_000,
    );
    await new Promise((r) => setTimeout(r, 2_000 * SCALE));
    await driver.stop();
    const servedAgainMs = driver.longestMs;
    const result = await verify(sys, driver);
    console.log(
      `[cluster kill] ${driver.ackedCount()} events acknowledged (${before} before the kill) over ${ENTITIES} entities; ` +
        `shards of n2 (${victimShards.length}) owned again after ${failoverMs} ms (lease TTL ${LEASE_TTL_MS} ms); ` +
        `longest wait of one event ${servedAgainMs} ms; send p50 ${percentile(driver.latencies, 50)} ms p99 ${percentile(driver.latencies, 99)} ms; ` +
        `lost ${result.lost}, applied twice ${result.duplicated}; retried errors ${JSON.stringify(Object.fromEntries(driver.errors))}; killed at +${killedAt % 100_000}`,
    );
    expect(result.checked).toBeGreaterThan(0);
    expect(result.lost).toBe(0);
    expect(result.duplicated).toBe(0);
    expect(driver.ackedCount()).toBeGreaterThan(before);
    expect(failoverMs).toBeLessThan(LEASE_TTL_MS + 2_000);
  } finally {
    await sys.stop();
    await Promise.all([n1.stop(), n3.stop()]);
  }
}, 120_000);

test('cluster - SIGSTOP of an owner past its lease: another node takes over, the old one writes nothing when it resumes', async () => {
  const system = 'stoptest';
  const [n1, n2, n3] = startNodes(system, ['n1', 'n2', 'n3']) as [
    NodeProcess,
    NodeProcess,
    NodeProcess,
  ];
  await Promise.all([n1.ready, n2.ready, n3.ready]);
  await waitForOwners(server.url, system, SHARDS, ['n1', 'n2', 'n3'], 20_000);
  const sys = await client(system);
  try {
    const driver = new LoadDriver(sys, ids(Math.round(300 * SCALE), 's'), 16);
    driver.start();
    await new Promise((r) => setTimeout(r, 1_000));
    n2.signal('SIGSTOP');
    const takeoverMs = await waitForOwners(
      server.url,
      system,
      SHARDS,
      ['n1', 'n3'],
      LEASE_TTL_MS + 15_000,
    );
    await new Promise((r) => setTimeout(r, 500));
    n2.signal('SIGCONT');
    await new Promise((r) => setTimeout(r, 3_000 * SCALE));
    await driver.stop();
    const result = await verify(sys, driver);
    const stale = await staleWrites(server.url, system);
    console.log(
      `[cluster stop] takeover after ${takeoverMs} ms; ${driver.ackedCount()} acknowledged; lost ${result.lost}, applied twice ${result.duplicated}; ` +
        `journal writes with a stale fencing token ${stale.stale} of ${stale.total}; errors seen by the client ${JSON.stringify(Object.fromEntries(driver.errors))}`,
    );
    expect(result.lost).toBe(0);
    expect(result.duplicated).toBe(0);
    expect(stale.total).toBeGreaterThan(0);
    expect(stale.stale).toBe(0);
  } finally {
    await sys.stop();
    await Promise.all([n1.stop(), n2.stop(), n3.stop()]);
  }
}, 120_000);

test('cluster - the NATS server restarts mid-load: nodes reconnect and nothing acknowledged is lost', async () => {
  const system = 'restarttest';
  const [n1, n2, n3] = startNodes(system, ['n1', 'n2', 'n3']) as [
    NodeProcess,
    NodeProcess,
    NodeProcess,
  ];
  await Promise.all([n1.ready, n2.ready, n3.ready]);
  await waitForOwners(server.url, system, SHARDS, ['n1', 'n2', 'n3'], 20_000);
  const sys = await client(system);
  try {
    const driver = new LoadDriver(sys, ids(Math.round(300 * SCALE), 'r'), 16);
    driver.start();
    await new Promise((r) => setTimeout(r, 1_500));
    const before = driver.ackedCount();
    await server.restart();
    await waitForOwners(server.url, system, SHARDS, ['n1', 'n2', 'n3'], 30_000);
    await new Promise((r) => setTimeout(r, 2_000 * SCALE));
    const midway = driver.ackedCount();
    await driver.stop();
    const result = await verify(sys, driver);
    console.log(
      `[cluster nats restart] ${before} acknowledged before the restart, ${driver.ackedCount()} in all; lost ${result.lost}, applied twice ${result.duplicated}; errors seen by the client ${JSON.stringify(Object.fromEntries(driver.errors))}`,
    );
    expect(midway).toBeGreaterThan(before);
    expect(result.lost).toBe(0);
    expect(result.duplicated).toBe(0);
  } finally {
    await sys.stop();
    await Promise.all([n1.stop(), n2.stop(), n3.stop()]);
  }
}, 120_000);

test('cluster - NATS down for longer than the lease: shards pause (no writes), then resume after reconnect with nothing lost', async () => {
  const system = 'outagetest';
  const [n1, n2] = startNodes(system, ['n1', 'n2']) as [
    NodeProcess,
    NodeProcess,
  ];
  await Promise.all([n1.ready, n2.ready]);
  await waitForOwners(server.url, system, SHARDS, ['n1', 'n2'], 20_000);
  const sys = await client(system);
  try {
    const driver = new LoadDriver(sys, ids(Math.round(200 * SCALE), 'o'), 8);
    driver.start();
    await new Promise((r) => setTimeout(r, 1_000));
    await server.kill();
    await new Promise((r) => setTimeout(r, LEASE_TTL_MS * 2));
    const during = driver.ackedCount();
    await server.restart();
    const resumeMs = await waitForOwners(
      server.url,
      system,
      SHARDS,
      ['n1', 'n2'],
      30_000,
    );
    await new Promise((r) => setTimeout(r, 1_500 * SCALE));
    await driver.stop();
    const result = await verify(sys, driver);
    const stale = await staleWrites(server.url, system);
    console.log(
      `[cluster nats outage] ${during} acknowledged before/while down, ${driver.ackedCount()} in all; shards owned again ${resumeMs} ms after the server came back; ` +
        `lost ${result.lost}, applied twice ${result.duplicated}; stale-token writes ${stale.stale} of ${stale.total}`,
    );
    expect(driver.ackedCount()).toBeGreaterThan(during);
    expect(result.lost).toBe(0);
    expect(result.duplicated).toBe(0);
    expect(stale.stale).toBe(0);
    expect(n1.stderr() + n2.stderr()).toMatch(/shard lost|lease/i);
  } finally {
    await sys.stop();
    await Promise.all([n1.stop(), n2.stop()]);
  }
}, 120_000);

test('cluster - a node joins and another leaves under load: shards handed over without loss or double application', async () => {
  const system = 'jointest';
  const [n1, n2] = startNodes(system, ['n1', 'n2']) as [
    NodeProcess,
    NodeProcess,
  ];
  await Promise.all([n1.ready, n2.ready]);
  await waitForOwners(server.url, system, SHARDS, ['n1', 'n2'], 20_000);
  const sys = await client(system);
  let n3: NodeProcess | undefined;
  try {
    const driver = new LoadDriver(sys, ids(Math.round(300 * SCALE), 'j'), 16);
    driver.start();
    await new Promise((r) => setTimeout(r, 1_000));
    [n3] = startNodes(system, ['n3']) as [NodeProcess];
    await n3.ready;
    const joinMs = await waitForOwners(
      server.url,
      system,
      SHARDS,
      ['n1', 'n2', 'n3'],
      30_000,
    );
    const moved =
      (await clusterStatus(server.url, system)).find((s) => s.nodeId === 'n3')
        ?.ownedShards.length ?? 0;
    await new Promise((r) => setTimeout(r, 1_000));
    const leaving = n1.stop();
    const leaveMs = await waitForOwners(
      server.url,
      system,
      SHARDS,
      ['n2', 'n3'],
      30_000,
    );
    await leaving;
    await new Promise((r) => setTimeout(r, 1_000 * SCALE));
    await driver.stop();
    const result = await verify(sys, driver);
    console.log(
      `[cluster join/leave] join converged in ${joinMs} ms (${moved} of ${SHARDS} shards moved to the new node), leave in ${leaveMs} ms; ` +
        `${driver.ackedCount()} acknowledged; lost ${result.lost}, applied twice ${result.duplicated}; errors seen by the client ${JSON.stringify(Object.fromEntries(driver.errors))}`,
    );
    expect(result.lost).toBe(0);
    expect(result.duplicated).toBe(0);
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThanOrEqual(Math.ceil(SHARDS / 2));
    expect(n1.stderr()).not.toMatch(/"level":50/);
  } finally {
    await sys.stop();
    await Promise.all([n2.stop(), n3?.stop()]);
  }
}, 120_000);
