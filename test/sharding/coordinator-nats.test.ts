// Three coordinators in one process over JetStream KV on a private
// nats-server, on the real clock: they converge to one owner per shard
// (the allocation target), a graceful leave hands shards over at once, and
// an abandoned node's shards are taken after its lease TTL, with fencing
// tokens that grow.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, test } from 'vitest';

import { natsClusterKv } from '../../src/cluster/nats/kv.js';
import { allocate } from '../../src/sharding/allocation.js';
import {
  createCoordinator,
  type Coordinator,
} from '../../src/sharding/coordinator.js';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';

const SHARDS = 32;
const TTL = 1_000;
let server: NatsServerHandle;
const connections: NatsConnection[] = [];
const coordinators: Coordinator[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  await Promise.all(
    coordinators.map((c) => c.stop({ graceful: false }).catch(() => undefined)),
  );
  await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
  await server?.stop();
});

async function waitFor(
  check: () => boolean,
  timeoutMs: number,
): Promise<number> {
  const start = performance.now();
  while (!check()) {
    if (performance.now() - start > timeoutMs)
      throw new Error(`not reached within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return performance.now() - start;
}

test('coordinator over NATS - three nodes converge, hand over on leave and take over after a lease TTL', async () => {
  const tokens = new Map<number, number[]>();
  const start = async (nodeId: string): Promise<Coordinator> => {
    const nc = await connect({
      servers: server.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    connections.push(nc);
    const coordinator = createCoordinator({
      kv: await natsClusterKv(nc, 'SHARDCHART_test_CLUSTER'),
      nodeId,
      shardCount: SHARDS,
      leaseTtlMs: TTL,
      types: ['order'],
      onAcquired: (shard, token) => {
        tokens.set(shard, [...(tokens.get(shard) ?? []), token.token]);
      },
    });
    coordinators.push(coordinator);
    await coordinator.start();
    return coordinator;
  };
  const [n1, n2, n3] = await Promise.all([
    start('n1'),
    start('n2'),
    start('n3'),
  ]);
  const all = [n1, n2, n3];
  const owners = (nodes: Coordinator[]): (string | undefined)[] =>
    Array.from({ length: SHARDS }, (_, shard) => {
      const holding = nodes.filter((c) => c.owns(shard));
      return holding.length === 1
        ? holding[0]!.nodeId
        : holding.length === 0
          ? undefined
          : 'SEVERAL';
    });
  const expected3 = allocate(SHARDS, ['n1', 'n2', 'n3']);
  // Each node learns the others' claims from its KV watch, a moment after
  // they hold them: wait for every view as well as for the claims.
  const viewsAgree = (nodes: Coordinator[], expected: string[]): boolean =>
    nodes.every((c) =>
      expected.every((owner, shard) => c.ownerOf(shard) === owner),
    );
  await waitFor(
    () => owners(all).join() === expected3.join() && viewsAgree(all, expected3),
    10 * TTL,
  );
  for (const c of all) {
    for (let shard = 0; shard < SHARDS; shard++)
      expect(c.ownerOf(shard)).toBe(expected3[shard]);
  }
  expect(n1.status().members.map((m) => m.nodeId)).toEqual(['n1', 'n2', 'n3']);

  // Graceful leave: n1's shards move at once, without waiting for a TTL.
  const expected2 = allocate(SHARDS, ['n2', 'n3']);
  const leftAt = performance.now();
  await n1.stop();
  await waitFor(() => owners([n2, n3]).join() === expected2.join(), 5 * TTL);
  const handedOver = performance.now() - leftAt;
  expect(handedOver).toBeLessThan(TTL);

  // Abandon n3 (no goodbye): n2 takes everything after n3's lease TTL.
  const abandonedAt = performance.now();
  await n3.stop({ graceful: false });
  await waitFor(() => owners([n2]).every((o) => o === 'n2'), 10 * TTL);
  const failover = performance.now() - abandonedAt;
  expect(failover).toBeGreaterThanOrEqual(TTL - TTL / 3 - 50);
  expect(failover).toBeLessThan(TTL + 2_000);
  // Every change of owner got a larger fencing token.
  for (const seen of tokens.values()) {
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(new Set(seen).size).toBe(seen.length);
  }
  console.log(
    `coordinator over NATS: graceful leave handed ${expected3.filter((o) => o === 'n1').length} shards over in ${handedOver.toFixed(0)} ms, failover after abandon ${failover.toFixed(0)} ms (lease TTL ${TTL} ms)`,
  );
});
