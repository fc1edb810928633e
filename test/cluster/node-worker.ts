/**
 * One cluster node in its own process, for the cluster tests: hosts the
 * `tally` and `alarm` entity types on a natsStore, prints `{"ready":true}` once it has
 * joined, and leaves the cluster gracefully on SIGTERM.
 *
 *   node --import tsx --conditions=shardchart-source node-worker.ts <natsUrl> <nodeId> <system> <shardCount> <leaseTtlMs>
 */
import { pino } from 'pino';
import { createActorSystem } from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import { alarmMachine, tallyMachine } from './machines.js';

const [url, nodeId, system, shardCount, leaseTtlMs] = process.argv.slice(2);
const logger = pino(
  { level: process.env.SHARDCHART_TEST_LOG ?? 'warn' },
  pino.destination(2),
);
const sys = await createActorSystem({
  name: system as string,
  entities: { tally: tallyMachine, alarm: alarmMachine },
  store: natsStore(),
  passivateAfterMs: 0,
  logger,
  cluster: {
    nats: { servers: url as string },
    nodeId: nodeId as string,
    shardCount: Number(shardCount),
    leaseTtlMs: Number(leaseTtlMs),
  },
});
process.stdout.write(`${JSON.stringify({ ready: true, nodeId })}\n`);
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void sys.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`stop failed: ${String(error)}\n`);
      process.exit(1);
    },
  );
});
setInterval(() => undefined, 60_000);
