/**
 * The cluster against an embedded node and against Moleculer, on one
 * machine in one run (issue 5's benchmark). One private nats-server with
 * JetStream serves every subject:
 *
 * - embedded, LMDB: one process, `lmdbStore` (the embedded default), every
 *   send fsynced before it resolves;
 * - embedded, natsStore: one process, `natsStore({ servers })` without the
 *   `cluster` option, so the journal goes to the same JetStream server as
 *   the cluster's but nothing is routed: the difference to the next row is
 *   what routing through the shard stream costs;
 * - cluster: three `shardchart node` processes (this file is their module:
 *   see `entities` below) and a client node in this process
 *   (`hostShards: false`) sending to them;
 * - Moleculer: three Moleculer service brokers in their own processes, each
 *   keeping a counter per entity in memory (nothing durable), called with
 *   `broker.call` from this process over the same nats-server, with
 *   Moleculer's `Shard` strategy so an entity always goes to one broker.
 *   Moleculer needs `nats` v2 and declares an optional peer pino <= 9, which
 *   conflicts with this repository's pino 10, so it is not a devDependency:
 *   install it beside the repository, in `../bench-peers` (or any directory
 *   named by BENCH_PEERS_DIR):
 *
 *       mkdir -p ../bench-peers && cd ../bench-peers \
 *         && npm init -y && npm install moleculer@0.14 nats@2
 *
 *   Without it the row is skipped with the reason.
 *
 * Run: `npm run bench -- cluster [--seconds S]`; BENCH_CLUSTER_PARTS picks
 * parts (consumers, lmdb, nats, moleculer, cluster, cluster32, failover);
 * BENCH_NODE_FLAGS adds Node flags to the node processes (`--cpu-prof
 * --cpu-prof-dir=/tmp/prof` to profile them); BENCH_NODE_LOG_DIR keeps
 * their info-level logs; BENCH_OPEN_REPEATS (default 3) sets how many
 * times the open loop at the bar's rate runs on each subject.
 *
 * Every subject runs the same counter machine over 1,000 entities: a warm-up
 * (every entity activated, then 2 s of load), then closed loop (64 senders,
 * each sending and waiting) for events/s, then open loop: sends scheduled at
 * a fixed 1,000 events/s to random entities, whatever the answers do, with
 * each latency measured from its scheduled time, so a stall shows up in
 * every send it delays (no coordinated omission); meanwhile a separate idle
 * Node process measures how late its 1 ms timer fires, which is what the
 * machine's scheduling alone adds to any wait on a shared machine. Last,
 * open loop at a tenth of the rate: the latency of a send when nothing
 * queues.
 *
 * Failover: on the cluster, under a steady closed-loop load (16 senders, so
 * no backlog builds up), SIGKILL one node; measure until the survivors
 * consume all its shards, and the longest time one event waited for its
 * answer. Three times, each time starting a replacement node and waiting
 * for the shards to spread again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  readdirSync,
  readFileSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type ConsumerMessages,
} from '@nats-io/jetstream';
import { pino } from 'pino';
import { createActorSystem, type ActorSystem, type Store } from 'shardchart';
import { lmdbStore } from 'shardchart/adapters/lmdb';
import { natsStore } from 'shardchart/adapters/nats';
import { assign, setup } from 'xstate';
import { createSeededRandom } from '../src/system/random.js';
import { startNatsServer } from '../test/support/nats-server.js';
import type { BenchContext, Section } from './run.js';
import { quantile, Samples } from './throughput.bench.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..');
const ENTITIES = 1_000;
const SENDERS = 64;
const OFFERED_PER_SECOND = 1_000;
const NODES = 3;
const SHARDS = 256;
const LEASE_TTL_MS = 2_000;
/** Kills in the failover part (BENCH_FAILOVER_TRIALS, default 3). */
const FAILOVER_TRIALS = Number(process.env.BENCH_FAILOVER_TRIALS ?? 3);
/**
 * BENCH_OPEN_REPEATS: how many times the open loop at the bar's rate runs
 * back to back on each subject. One run of a few seconds swings several
 * times over on this machine (see bench/README), so the table gives the
 * median run's p99 and lists every run's.
 */
const OPEN_REPEATS = Math.max(
  1,
  Math.floor(Number(process.env.BENCH_OPEN_REPEATS ?? 3)) || 1,
);
const P99_BAR_MS = 10;
/** Concurrent senders (closed loop) while a node is killed. */
const FAILOVER_SENDERS = 16;
/** A send around a kill slower than this is listed by entity. */
const SLOW_SEND_MS = 10_000;
/** BENCH_NODE_LOG_DIR: the node processes log at info level into `<dir>/<nodeId>.log`. */
const logDir = process.env.BENCH_NODE_LOG_DIR;
/** USER_HZ of /proc/<pid>/stat on Linux. */
const CLOCK_TICKS = 100;
/**
 * Where Moleculer is installed, outside the repository's dependencies:
 * BENCH_PEERS_DIR, or `bench-peers` beside the repository (see the header).
 */
const MOLECULER_DIR =
  process.env.BENCH_PEERS_DIR ?? join(repoRoot, '..', 'bench-peers');

/** The entity of every subject: a counter, so every event is journaled. */
export const counterMachine = setup({
  types: {
    context: {} as { count: number },
    events: {} as { type: 'ADD' },
  },
}).createMachine({
  id: 'counter',
  context: { count: 0 },
  on: {
    ADD: { actions: assign({ count: ({ context }) => context.count + 1 }) },
  },
});

/** What `shardchart node bench/cluster.bench.ts` hosts. */
export const entities = { counter: counterMachine };
/** Entities stay live for the whole run, on every subject. */
export const options = { passivateAfterMs: 0 };

type Send = (entity: number) => Promise<void>;

interface Subject {
  name: string;
  send: Send;
  /** Processes doing the work, by role, for the CPU time per event. */
  pids: Record<string, number[]>;
  close(): Promise<void>;
}

interface Measured {
  name: string;
  closedPerSecond: number;
  closedP50: number;
  closedP99: number;
  /** CPU time per event of the closed-loop run, by role (µs), when /proc tells. */
  cpu: Record<string, number> | undefined;
  /** The open-loop run with the median p99 of `opens`. */
  open: OpenLoop;
  /** Every open-loop run at the bar's rate, in the order they ran. */
  opens: OpenLoop[];
  /** Timer lateness of an idle process during the open loops (ms). */
  idleLag: { p99: number; max: number };
  /**
   * CPU ms per second that the kernel's DAMON threads (kdamond) used during
   * the open loops, when the kernel runs DAMON; see `kernelThreadCpu`.
   */
  damonMsPerSecond: number | undefined;
  /**
   * CPU time per event over the open loops at the bar's rate, by role (µs),
   * when /proc tells: at a steady rate nothing batches, so each event pays
   * every process's wake-ups.
   */
  openCpu: Record<string, number> | undefined;
  /** Open loop at a tenth of the rate. */
  light: OpenLoop;
}

interface Failover {
  failoverMs: number;
  longestWaitMs: number;
  errors: number;
  /** Sends around the kill that waited longer than SLOW_SEND_MS. */
  slow: string[];
}

interface OpenLoop {
  p50: number;
  p99: number;
  max: number;
  /** Answers per second over the run. */
  achieved: number;
  errors: number;
  /** p99 of how late this process issued a send after its scheduled time. */
  issueLagP99: number;
}

const silent = pino({ level: 'silent' });
const ms = (v: number): string => `${v.toFixed(2)} ms`;
const int = (v: number): string => Math.round(v).toLocaleString('en-US');
/** Progress on stderr, so a long run shows where it is. */
const progress = (line: string): void =>
  void process.stderr.write(`  [cluster] ${line}\n`);

/** Runs `SENDERS` loops for `seconds`, each sending to a random entity and waiting. */
export async function closedLoop(
  send: Send,
  seconds: number,
  seed: number,
): Promise<{ perSecond: number; seconds: number; p50: number; p99: number }> {
  const random = createSeededRandom(seed);
  const samples = new Samples();
  let events = 0;
  const started = performance.now();
  const until = started + seconds * 1_000;
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await send(Math.floor(random() * ENTITIES));
        samples.push(performance.now() - t0);
        events++;
      }
    }),
  );
  const sorted = samples.sorted();
  const elapsed = (performance.now() - started) / 1_000;
  return {
    perSecond: events / elapsed,
    seconds: elapsed,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
  };
}

/**
 * Open loop: send `i` is due at `start + i / perSecond`, whatever earlier
 * sends are doing; each latency runs from that due time.
 */
export function openLoop(
  send: Send,
  perSecond: number,
  seconds: number,
  seed: number,
): Promise<OpenLoop> {
  const random = createSeededRandom(seed);
  const samples = new Samples();
  const lags = new Samples();
  const total = Math.round(perSecond * seconds);
  const intervalMs = 1_000 / perSecond;
  let issued = 0;
  let outstanding = 0;
  let errors = 0;
  const started = performance.now();
  return new Promise<OpenLoop>((resolve) => {
    const finish = (): void => {
      if (issued < total || outstanding > 0) return;
      const sorted = samples.sorted();
      resolve({
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
        max: sorted.length > 0 ? sorted[sorted.length - 1]! : 0,
        achieved: sorted.length / ((performance.now() - started) / 1_000),
        errors,
        issueLagP99: quantile(lags.sorted(), 0.99),
      });
    };
    const settle = (): void => {
      outstanding--;
      finish();
    };
    const tick = (): void => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - started) / intervalMs) + 1);
      while (issued < due) {
        const dueAt = started + issued * intervalMs;
        issued++;
        outstanding++;
        lags.push(now - dueAt);
        send(Math.floor(random() * ENTITIES)).then(
          () => {
            samples.push(performance.now() - dueAt);
            settle();
          },
          () => {
            errors++;
            settle();
          },
        );
      }
      if (issued < total) setTimeout(tick, 1);
      else finish();
    };
    tick();
  });
}

async function measure(
  subject: Subject,
  seconds: number,
  seed: number,
): Promise<Measured> {
  // Warm-up: every entity activated once, then load long enough for the
  // JIT and the connections' buffers to settle.
  let next = 0;
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      while (next < ENTITIES) await subject.send(next++);
    }),
  );
  await closedLoop(subject.send, 2, seed + 1);
  const before = cpuTimes(subject.pids);
  const closed = await closedLoop(subject.send, seconds, seed + 2);
  const after = cpuTimes(subject.pids);
  const cpu = cpuPerEvent(before, after, closed.perSecond * closed.seconds);
  const noise = timerLateness(seconds * OPEN_REPEATS);
  const damonBefore = kernelThreadCpu('kdamond');
  const openCpuBefore = cpuTimes(subject.pids);
  const openStarted = performance.now();
  const opens: OpenLoop[] = [];
  for (let i = 0; i < OPEN_REPEATS; i++) {
    opens.push(
      await openLoop(
        subject.send,
        OFFERED_PER_SECOND,
        seconds,
        seed + 3 + 100 * i,
      ),
    );
  }
  const damonAfter = kernelThreadCpu('kdamond');
  const openCpuAfter = cpuTimes(subject.pids);
  // Each open loop issues exactly this many sends, answered or not.
  const openCpu = cpuPerEvent(
    openCpuBefore,
    openCpuAfter,
    Math.round(OFFERED_PER_SECOND * seconds) * opens.length,
  );
  const damonMsPerSecond =
    damonBefore === undefined || damonAfter === undefined
      ? undefined
      : ((damonAfter - damonBefore) * 1_000) /
        ((performance.now() - openStarted) / 1_000);
  const byP99 = [...opens].sort((a, b) => a.p99 - b.p99);
  const open = byP99[Math.floor((byP99.length - 1) / 2)]!;
  const idleLag = await noise;
  // The same offered load at a tenth of the rate: what one send costs when
  // nothing queues.
  const light = await openLoop(
    subject.send,
    OFFERED_PER_SECOND / 10,
    seconds,
    seed + 4,
  );
  progress(
    `${subject.name}: ${int(closed.perSecond)} events/s closed loop; open loop p50 ${ms(open.p50)} p99 ${ms(open.p99)} (median of ${opens.map((o) => o.p99.toFixed(2)).join(', ')} ms${damonMsPerSecond === undefined ? '' : `; kdamond ${damonMsPerSecond.toFixed(1)} ms/s`}) (an idle process's 1 ms timer meanwhile late by p99 ${ms(idleLag.p99)}, max ${ms(idleLag.max)}); at ${int(OFFERED_PER_SECOND / 10)} events/s p50 ${ms(light.p50)} p99 ${ms(light.p99)}${cpu === undefined ? '' : `; CPU per event ${formatCpu(cpu)}`}${openCpu === undefined ? '' : `, in the open loop ${formatCpu(openCpu)}`}`,
  );
  return {
    name: subject.name,
    closedPerSecond: closed.perSecond,
    closedP50: closed.p50,
    closedP99: closed.p99,
    cpu,
    open,
    opens,
    idleLag,
    damonMsPerSecond,
    openCpu,
    light,
  };
}

/**
 * How late a 1 ms timer fires in a separate, otherwise idle Node process
 * over `seconds`: what the machine's scheduling alone adds to any wait (the
 * machine may be shared), measured while the open loop runs.
 */
function timerLateness(seconds: number): Promise<{ p99: number; max: number }> {
  const script = `
    const lags = []; let last = performance.now(); const end = last + ${seconds * 1_000};
    const tick = () => {
      const now = performance.now(); lags.push(now - last - 1); last = now;
      if (now < end) return setTimeout(tick, 1);
      lags.sort((a, b) => a - b);
      process.stdout.write(JSON.stringify({ p99: lags[Math.floor(0.99 * (lags.length - 1))], max: lags[lags.length - 1] }));
    };
    setTimeout(tick, 1);`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (out += chunk));
    child.once('exit', () => {
      try {
        resolve(JSON.parse(out) as { p99: number; max: number });
      } catch {
        resolve({ p99: Number.NaN, max: Number.NaN });
      }
    });
  });
}

/** CPU seconds (user + system) used so far by each role's processes, from /proc; undefined elsewhere. */
function cpuTimes(
  pids: Record<string, number[]>,
): Record<string, number> | undefined {
  try {
    const out: Record<string, number> = {};
    for (const [role, list] of Object.entries(pids)) {
      out[role] = 0;
      for (const pid of list) {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        // utime and stime, fields 14 and 15 of stat(5), in clock ticks.
        out[role] += (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
      }
    }
    return out;
  } catch {
    return undefined;
  }
}

/** CPU µs per event by role between two `cpuTimes` readings. */
function cpuPerEvent(
  before: Record<string, number> | undefined,
  after: Record<string, number> | undefined,
  events: number,
): Record<string, number> | undefined {
  if (before === undefined || after === undefined) return undefined;
  return Object.fromEntries(
    Object.keys(before).map((role) => [
      role,
      ((after[role]! - before[role]!) / events) * 1e6,
    ]),
  );
}

/**
 * CPU seconds used so far by the kernel threads whose name starts with
 * `prefix` (from /proc; undefined when there are none, or off Linux). The
 * kernel's DAMON (data access monitor) runs as `kdamond.N`: on the VM the
 * figures in bench/README come from, it samples page accesses every
 * ~540 ms and each round holds one of the two vCPUs for 10-45 ms, which
 * is when the open loop's slow sends come (see bench/README, session 8).
 */
function kernelThreadCpu(prefix: string): number | undefined {
  try {
    let total = 0;
    let found = false;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue; // exited meanwhile
      }
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!name.startsWith(prefix)) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
      found = true;
    }
    return found ? total : undefined;
  } catch {
    return undefined;
  }
}

function formatCpu(cpu: Record<string, number>): string {
  const total = Object.values(cpu).reduce((a, b) => a + b, 0);
  return `${Object.entries(cpu)
    .map(([role, us]) => `${role} ${int(us)}`)
    .join(' + ')} = ${int(total)} µs`;
}

/** A send that retries what the system says is retryable, with the same event id. */
function shardchartSend(system: ActorSystem, run: string): Send {
  let n = 0;
  return async (entity) => {
    const eventId = `${run}-${n++}`;
    const ref = system.entity('counter', `c-${entity}`);
    for (let attempt = 0; ; attempt++) {
      try {
        await ref.send({ type: 'ADD' }, { eventId });
        return;
      } catch (error) {
        if (
          (error as { retryable?: boolean }).retryable !== true ||
          attempt > 50
        )
          throw error;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
}

async function embedded(
  name: string,
  pids: Record<string, number[]>,
  storeFor: () => Promise<{ store: Store; cleanup(): Promise<void> }>,
): Promise<Subject> {
  const { store, cleanup } = await storeFor();
  const system = await createActorSystem({
    name: 'benchembedded',
    entities,
    store,
    logger: silent,
    passivateAfterMs: 0,
  });
  return {
    name,
    pids,
    send: shardchartSend(system, 'e'),
    async close() {
      await system.stop();
      await cleanup();
    },
  };
}

// ------------------------------------------------------------ cluster nodes

interface NodeProcess {
  nodeId: string;
  child: ChildProcess;
  stderr(): string;
}

function spawnNode(
  url: string,
  system: string,
  nodeId: string,
  shards: number,
): NodeProcess {
  const child = spawn(
    process.execPath,
    [
      // Extra Node flags for the node processes, e.g. `--cpu-prof`.
      ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean),
      '--import',
      'tsx',
      '--conditions=shardchart-source',
      join(repoRoot, 'src/cli/main.ts'),
      'node',
      fileURLToPath(import.meta.url),
      '--nats',
      url,
      '--system',
      system,
      '--node-id',
      nodeId,
      '--shards',
      String(shards),
      '--lease-ttl',
      String(LEASE_TTL_MS),
      '--log-level',
      logDir === undefined ? 'error' : 'info',
    ],
    {
      cwd: repoRoot,
      // With BENCH_NODE_LOG_DIR, stdout goes to the log too (--trace-gc).
      stdio: ['ignore', logDir === undefined ? 'ignore' : 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  if (logDir !== undefined) {
    const log = createWriteStream(join(logDir, `${nodeId}.log`));
    child.stderr?.pipe(log);
    child.stdout?.pipe(log);
  }
  return { nodeId, child, stderr: () => stderr };
}

/** Hosting node id -> shards it consumes now, from the nodes' status answers. */
async function served(
  nc: NatsConnection,
  system: string,
): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  try {
    // Every node answers; the collection ends 200 ms after the last answer.
    const replies = await nc.requestMany(
      `shardchart.${system}.admin.status`,
      new Uint8Array(0),
      { strategy: 'stall', stall: 200, maxWait: 2_000 },
    );
    for await (const msg of replies) {
      const status = JSON.parse(new TextDecoder().decode(msg.data)) as {
        nodeId: string;
        hostShards: boolean;
        ownedShards: number[];
      };
      if (status.hostShards) out.set(status.nodeId, status.ownedShards);
    }
  } catch {
    // No node listens yet: nothing is served.
  }
  return out;
}

/** Waits until `nodeIds`, and only they, serve every shard, each some; resolves with the time it took. */
async function waitServed(
  nc: NatsConnection,
  system: string,
  shards: number,
  nodeIds: readonly string[],
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    const now = await served(nc, system);
    const seen = new Set<number>();
    let count = 0;
    let strangers = false;
    for (const [nodeId, owned] of now) {
      if (!nodeIds.includes(nodeId) && owned.length > 0) strangers = true;
      for (const s of owned) seen.add(s);
      count += owned.length;
    }
    const spread = nodeIds.every((id) => (now.get(id)?.length ?? 0) > 0);
    if (seen.size === shards && count === shards && !strangers && spread) {
      return performance.now() - started;
    }
    if (performance.now() - started > timeoutMs) {
      throw new Error(
        `shards not served by ${nodeIds.join(', ')} after ${timeoutMs} ms: ${JSON.stringify([...now].map(([id, s]) => [id, s.length]))}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

// ---------------------------------------------------------------- Moleculer

interface MoleculerBroker {
  start(): Promise<void>;
  stop(): Promise<void>;
  call(action: string, params: unknown): Promise<unknown>;
  waitForServices(names: string[], timeoutMs?: number): Promise<unknown>;
  createService(schema: unknown): unknown;
}
type MoleculerModule = {
  ServiceBroker: new (options: Record<string, unknown>) => MoleculerBroker;
};

/** Moleculer from the repository's node_modules or from MOLECULER_DIR, or why not. */
function loadMoleculer(): MoleculerModule | string {
  const places = [
    join(repoRoot, 'package.json'),
    join(MOLECULER_DIR, 'package.json'),
  ];
  for (const place of places) {
    if (!existsSync(place)) continue;
    try {
      return createRequire(place)('moleculer') as MoleculerModule;
    } catch {
      // Not installed there.
    }
  }
  return `moleculer is not installed (looked beside ${places.join(' and ')}); see the header of bench/cluster.bench.ts`;
}

function spawnMoleculerNode(url: string, nodeId: string): ChildProcess {
  return spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--conditions=shardchart-source',
      fileURLToPath(import.meta.url),
      'moleculer-service',
      url,
      nodeId,
    ],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] },
  );
}

/** Runs in a child process: one broker with the counter service. */
async function moleculerService(url: string, nodeID: string): Promise<void> {
  const moleculer = loadMoleculer();
  if (typeof moleculer === 'string') throw new Error(moleculer);
  const broker = new moleculer.ServiceBroker({
    nodeID,
    transporter: url,
    logger: false,
  });
  const counts = new Map<string, number>();
  broker.createService({
    name: 'counter',
    actions: {
      add(ctx: { params: { id: string } }) {
        const count = (counts.get(ctx.params.id) ?? 0) + 1;
        counts.set(ctx.params.id, count);
        return { count };
      },
    },
  });
  await broker.start();
  process.stdout.write('ready\n');
  process.once('SIGTERM', () => {
    void broker.stop().then(() => process.exit(0));
  });
}

async function moleculerSubject(
  url: string,
  natsPid: number,
): Promise<Subject | string> {
  const moleculer = loadMoleculer();
  if (typeof moleculer === 'string') return moleculer;
  const children = Array.from({ length: NODES }, (_, i) =>
    spawnMoleculerNode(url, `mol-${i}`),
  );
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve, reject) => {
          child.stdout?.on('data', (chunk: Buffer) => {
            if (chunk.toString().includes('ready')) resolve();
          });
          child.once('exit', (code) =>
            reject(new Error(`moleculer node exited (${String(code)})`)),
          );
        }),
    ),
  );
  const broker = new moleculer.ServiceBroker({
    nodeID: 'mol-client',
    transporter: url,
    logger: false,
    // An entity always goes to the same broker, as a shard to its owner.
    registry: { strategy: 'Shard', strategyOptions: { shardKey: 'id' } },
  });
  await broker.start();
  await broker.waitForServices(['counter'], 30_000);
  // waitForServices resolves with the first broker; let the others announce themselves.
  await new Promise((r) => setTimeout(r, 1_500));
  return {
    name: `Moleculer, ${NODES} brokers, in-memory counter`,
    pids: {
      caller: [process.pid],
      brokers: children.map((c) => c.pid!),
      'nats-server': [natsPid],
    },
    send: async (entity) => {
      await broker.call('counter.add', { id: `c-${entity}` });
    },
    async close() {
      await broker.stop();
      for (const child of children) child.kill('SIGTERM');
      await Promise.all(
        children.map(
          (c) =>
            new Promise((r) =>
              c.exitCode !== null ? r(null) : c.once('exit', r),
            ),
        ),
      );
    },
  };
}

// ------------------------------------------------------------ a cluster

interface RunningCluster {
  readonly subject: Subject;
  readonly nodes: NodeProcess[];
  readonly nc: NatsConnection;
  readonly system: string;
  readonly shards: number;
  stop(): Promise<void>;
}

/** Spawns the node processes, waits until they serve every shard, connects a client node here. */
export async function startCluster(
  url: string,
  natsPid: number,
  shards: number,
  notes: string[],
): Promise<RunningCluster> {
  const system = `bench${shards}`;
  const nodes = Array.from({ length: NODES }, (_, i) =>
    spawnNode(url, system, `n${i + 1}`, shards),
  );
  const nc = await connect({ servers: url });
  let client: ActorSystem | undefined;
  try {
    const startedAt = performance.now();
    await waitServed(
      nc,
      system,
      shards,
      nodes.map((n) => n.nodeId),
      120_000,
    );
    notes.push(
      `cluster with ${shards} shards: ${NODES} node processes serving all shards ${int(performance.now() - startedAt)} ms after they were spawned (process start included)`,
    );
    client = await createActorSystem({
      name: system,
      entities,
      store: natsStore({ logger: silent }),
      logger: silent,
      cluster: {
        nats: { servers: url },
        nodeId: 'bench-client',
        shardCount: shards,
        leaseTtlMs: LEASE_TTL_MS,
        hostShards: false,
      },
    });
  } catch (error) {
    for (const node of nodes) node.child.kill('SIGKILL');
    await nc.close();
    throw new Error(
      `${String(error)}\n${nodes.map((n) => `${n.nodeId}: ${n.stderr()}`).join('\n')}`,
    );
  }
  const running = client;
  return {
    subject: {
      name: `cluster, ${NODES} nodes, ${shards} shards, client node sending`,
      pids: {
        client: [process.pid],
        nodes: nodes.map((n) => n.child.pid!),
        'nats-server': [natsPid],
      },
      send: shardchartSend(running, `c${shards}`),
      close: async () => undefined,
    },
    nodes,
    nc,
    system,
    shards,
    async stop() {
      await running.stop();
      // SIGTERM: the nodes leave (and write a --cpu-prof profile); SIGKILL
      // whoever has not exited within 10 s.
      await Promise.all(
        nodes.map(async ({ child }) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        }),
      );
      await nc.close();
    },
  };
}

/**
 * SIGKILL of one node under a steady load: the time until the
 * survivors consume all of its shards, and the longest time one event sent
 * around the kill waited for its answer. A replacement node then joins and
 * the shards spread over three nodes again before the next trial.
 */
async function failover(
  url: string,
  cluster: RunningCluster,
  trial: number,
): Promise<Failover> {
  const alive = cluster.nodes.filter(
    (n) => n.child.exitCode === null && n.child.signalCode === null,
  );
  const victim = alive.shift()!;
  let killedAt = Number.POSITIVE_INFINITY;
  let longestWaitMs = 0;
  const slow: string[] = [];
  let errors = 0;
  let running = true;
  // A steady closed-loop load: it never builds a backlog, so what is
  // measured is the failover and not a queue.
  const random = createSeededRandom(50 + trial);
  const load = Promise.all(
    Array.from({ length: FAILOVER_SENDERS }, async () => {
      while (running) {
        const started = performance.now();
        const entity = Math.floor(random() * ENTITIES);
        try {
          await cluster.subject.send(entity);
        } catch {
          errors++;
        }
        // Sends that were in flight at the kill, or started after it.
        if (performance.now() >= killedAt) {
          const waited = performance.now() - started;
          longestWaitMs = Math.max(longestWaitMs, waited);
          if (waited > SLOW_SEND_MS)
            slow.push(
              `c-${entity} sent ${int(started - killedAt)} ms after the kill waited ${int(waited)} ms`,
            );
        }
      }
    }),
  );
  await new Promise((r) => setTimeout(r, 2_000));
  killedAt = performance.now();
  victim.child.kill('SIGKILL');
  const failoverMs = await waitServed(
    cluster.nc,
    cluster.system,
    cluster.shards,
    alive.map((n) => n.nodeId),
    LEASE_TTL_MS + 30_000,
  );
  // The events that waited in the stream for the victim's shards are
  // answered by now; a few more seconds make sure of it.
  await new Promise((r) => setTimeout(r, 3_000));
  running = false;
  await load;
  const replacement = spawnNode(
    url,
    cluster.system,
    `n${NODES + trial + 1}`,
    cluster.shards,
  );
  cluster.nodes.push(replacement);
  await waitServed(
    cluster.nc,
    cluster.system,
    cluster.shards,
    [...alive, replacement].map((n) => n.nodeId),
    120_000,
  );
  progress(
    `failover ${trial + 1}: ${int(failoverMs)} ms until the survivors served all shards; longest wait ${int(longestWaitMs)} ms`,
  );
  if (slow.length > 0)
    progress(`failover ${trial + 1}: slow sends: ${slow.join('; ')}`);
  return { failoverMs, longestWaitMs, errors, slow };
}

// -------------------------------------------------------------------- run

const PARTS = [
  'consumers',
  'lmdb',
  'nats',
  'moleculer',
  'cluster',
  'cluster32',
  'failover',
];

/**
 * The parts to run, from BENCH_CLUSTER_PARTS (comma-separated, default all):
 * consumers, lmdb, nats, moleculer, cluster, cluster32, failover.
 */
function parts(): Set<string> {
  const chosen = process.env.BENCH_CLUSTER_PARTS?.split(',').map((p) =>
    p.trim(),
  );
  const unknown = (chosen ?? []).filter((p) => !PARTS.includes(p));
  if (unknown.length > 0) {
    throw new Error(
      `BENCH_CLUSTER_PARTS: unknown ${unknown.join(', ')}; choose from ${PARTS.join(', ')}`,
    );
  }
  return new Set(chosen ?? PARTS);
}

export async function cluster(ctx: BenchContext): Promise<Section> {
  const seconds = ctx.seconds;
  const run = parts();
  const server = await startNatsServer();
  const natsPid = server.process!.pid!;
  const notes: string[] = [];
  const results: Measured[] = [];
  const failovers: Failover[] = [];
  try {
    if (run.has('consumers'))
      notes.push(...(await consumerCost(server.url, natsPid)));
    if (run.has('lmdb')) {
      const dir = await mkdtemp(join(tmpdir(), 'shardchart-bench-cluster-'));
      const subject = await embedded(
        'embedded, LMDB (fsync per commit)',
        { process: [process.pid] },
        async () => ({
          store: lmdbStore({ path: join(dir, 'db') }),
          cleanup: () => rm(dir, { recursive: true, force: true }),
        }),
      );
      results.push(await measure(subject, seconds, 10));
      await subject.close();
    }
    if (run.has('nats')) {
      const subject = await embedded(
        'embedded, natsStore on the same server',
        { process: [process.pid], 'nats-server': [natsPid] },
        async () => ({
          store: natsStore({
            servers: server.url,
            prefix: 'benchembedded',
            logger: silent,
          }),
          cleanup: async () => undefined,
        }),
      );
      results.push(await measure(subject, seconds, 20));
      await subject.close();
    }
    if (run.has('moleculer')) {
      const subject = await moleculerSubject(server.url, natsPid);
      if (typeof subject === 'string')
        notes.push(`Moleculer row skipped: ${subject}`);
      else {
        results.push(await measure(subject, seconds, 30));
        await subject.close();
      }
    }
    if (run.has('cluster') || run.has('failover')) {
      const running = await startCluster(server.url, natsPid, SHARDS, notes);
      try {
        const measured = await measure(running.subject, seconds, 40);
        if (run.has('cluster')) results.push(measured);
        for (
          let trial = 0;
          run.has('failover') && trial < FAILOVER_TRIALS;
          trial++
        ) {
          failovers.push(await failover(server.url, running, trial));
        }
      } finally {
        await running.stop();
      }
    }
    if (run.has('cluster32')) {
      const running = await startCluster(server.url, natsPid, 32, notes);
      try {
        results.push(await measure(running.subject, seconds, 50));
      } finally {
        await running.stop();
      }
    }
  } finally {
    await server.stop();
  }
  return report(results, failovers, notes, seconds);
}

/**
 * What one message costs the nats-server in a work-queue stream with one
 * filtered pull consumer per shard (state in memory), as the cluster's events stream has,
 * for a few consumer counts: 64 publishers, each consumer acknowledging at
 * once; then at the cluster bar's rate (1,000 messages/s, one at a time),
 * where each message costs the server several times more. Measured here
 * because the cluster's cost depends on it.
 */
async function consumerCost(url: string, natsPid: number): Promise<string[]> {
  const lines: string[] = [];
  const nc = await connect({ servers: url, noAsyncTraces: true });
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    for (const consumers of [1, 16, 64, 256]) {
      const stream = `WQ${consumers}`;
      await jsm.streams.add({
        name: stream,
        subjects: [`wq${consumers}.*`],
        retention: RetentionPolicy.Workqueue,
        storage: StorageType.File,
      });
      const feeds: ConsumerMessages[] = [];
      for (let c = 0; c < consumers; c++) {
        await jsm.consumers.add(stream, {
          durable_name: `c${c}`,
          filter_subject: `wq${consumers}.${c}`,
          ack_policy: AckPolicy.Explicit,
          max_ack_pending: 256,
          // As the cluster's shard consumers (src/cluster/nats/shard-worker.ts).
          mem_storage: true,
        });
        const feed = await (
          await js.consumers.get(stream, `c${c}`)
        ).consume({ max_messages: 256 });
        feeds.push(feed);
        void (async () => {
          for await (const m of feed) m.ack();
        })();
      }
      const data = new Uint8Array(160);
      let published = 0;
      const drive = async (secs: number): Promise<void> => {
        const until = performance.now() + secs * 1_000;
        await Promise.all(
          Array.from({ length: SENDERS }, async () => {
            while (performance.now() < until) {
              await js.publish(
                `wq${consumers}.${published++ % consumers}`,
                data,
              );
            }
          }),
        );
      };
      // At the cluster bar's rate, one message at a time: nothing is
      // batched, so each costs the server its own wake-ups.
      const paced = async (secs: number): Promise<number> => {
        const started = performance.now();
        const acks: Promise<unknown>[] = [];
        for (let i = 0; performance.now() - started < secs * 1_000;) {
          const due = started + (i * 1_000) / OFFERED_PER_SECOND;
          const wait = due - performance.now();
          if (wait > 0) {
            await new Promise((r) => setTimeout(r, wait));
            continue;
          }
          acks.push(js.publish(`wq${consumers}.${i % consumers}`, data));
          i++;
        }
        await Promise.all(acks);
        return acks.length;
      };
      await drive(1);
      const before = cpuTimes({ nats: [natsPid] });
      published = 0;
      const started = performance.now();
      await drive(3);
      const after = cpuTimes({ nats: [natsPid] });
      const perSecond = published / ((performance.now() - started) / 1_000);
      const pacedBefore = cpuTimes({ nats: [natsPid] });
      const pacedCount = await paced(3);
      const pacedAfter = cpuTimes({ nats: [natsPid] });
      const cost = (
        a: Record<string, number> | undefined,
        b: Record<string, number> | undefined,
        n: number,
      ): string =>
        a === undefined || b === undefined
          ? 'n/a'
          : `${int(((b.nats! - a.nats!) / n) * 1e6)} µs`;
      lines.push(
        `work-queue stream with ${consumers} filtered pull consumer(s): ${int(perSecond)} messages/s; nats-server CPU ${cost(before, after, published)} per message; at ${OFFERED_PER_SECOND.toLocaleString('en-US')} messages/s ${cost(pacedBefore, pacedAfter, pacedCount)}`,
      );
      progress(lines[lines.length - 1]!);
      for (const feed of feeds) await feed.close();
      await jsm.streams.delete(stream);
    }
  } finally {
    await nc.close();
  }
  return lines;
}

function report(
  results: Measured[],
  failovers: Failover[],
  notes: string[],
  seconds: number,
): Section {
  // The bar is for the default shard count, the first cluster row.
  const clusterRow = results.find((r) => r.name.startsWith('cluster'));
  const baseline = results[0];
  const rows = results.map((r) => [
    r.name,
    int(r.closedPerSecond),
    baseline === undefined
      ? '-'
      : `${((r.closedPerSecond / baseline.closedPerSecond) * 100).toFixed(0)}%`,
    ms(r.closedP50),
    ms(r.closedP99),
    r.cpu === undefined
      ? 'n/a'
      : int(Object.values(r.cpu).reduce((a, b) => a + b, 0)),
    ms(r.open.p50),
    ms(r.open.p99),
    r.opens.map((o) => o.p99.toFixed(2)).join(' / '),
    r.damonMsPerSecond === undefined ? 'n/a' : r.damonMsPerSecond.toFixed(1),
    r.openCpu === undefined
      ? 'n/a'
      : int(Object.values(r.openCpu).reduce((a, b) => a + b, 0)),
    ms(Math.max(...r.opens.map((o) => o.max))),
    int(r.open.achieved),
    ms(r.open.issueLagP99),
    ms(r.idleLag.p99),
    String(r.opens.reduce((n, o) => n + o.errors, 0)),
    ms(r.light.p50),
    ms(r.light.p99),
  ]);
  for (const r of results) {
    if (r.cpu !== undefined)
      notes.push(`CPU per event, ${r.name}: ${formatCpu(r.cpu)}`);
    if (r.openCpu !== undefined)
      notes.push(
        `CPU per event in the open loop at ${OFFERED_PER_SECOND.toLocaleString('en-US')}/s, ${r.name}: ${formatCpu(r.openCpu)}`,
      );
  }
  for (const [i, f] of failovers.entries()) {
    notes.push(
      `failover ${i + 1} (${SHARDS} shards, ${FAILOVER_SENDERS} senders in closed loop): SIGKILL of a node to all its shards consumed by the survivors ${int(f.failoverMs)} ms (lease TTL ${LEASE_TTL_MS} ms); longest wait of one event ${int(f.longestWaitMs)} ms; failed sends ${f.errors}${f.slow.length > 0 ? `; over ${int(SLOW_SEND_MS)} ms: ${f.slow.join('; ')}` : ''}`,
    );
  }
  return {
    title: `cluster: ${ENTITIES.toLocaleString('en-US')} entities, counter machine; closed loop ${SENDERS} senders ${seconds} s (events/s, p50, p99, CPU µs per event over all processes); open loop ${OFFERED_PER_SECOND.toLocaleString('en-US')} events/s ${seconds} s, ${OPEN_REPEATS} run${OPEN_REPEATS === 1 ? '' : 's'} back to back, the run with the median p99 shown (latency from the scheduled send time; kdamond: CPU the kernel's DAMON threads used meanwhile; issue lag: how late this process issued sends; idle timer lag: how late a 1 ms timer fired in an idle process meanwhile, the machine's own scheduling delay), then open loop at a tenth of the rate; one private nats-server with JetStream`,
    header: [
      'subject',
      'events/s',
      'vs first',
      'p50',
      'p99',
      'CPU µs/event',
      'open p50',
      'open p99',
      'open p99 of each run',
      'kdamond CPU ms/s',
      'open CPU µs/event',
      'open max (all runs)',
      'open answered/s',
      'issue lag p99',
      'idle timer lag p99',
      'errors (all runs)',
      `at ${OFFERED_PER_SECOND / 10}/s p50`,
      `at ${OFFERED_PER_SECOND / 10}/s p99`,
    ],
    rows,
    bars:
      clusterRow === undefined
        ? []
        : [
            {
              name: `clustered p99 send latency at ${OFFERED_PER_SECOND.toLocaleString('en-US')} events/s, median of ${OPEN_REPEATS} run${OPEN_REPEATS === 1 ? '' : 's'} (issue 5)`,
              measured: ms(clusterRow.open.p99),
              target: `< ${P99_BAR_MS} ms`,
              met: clusterRow.open.p99 < P99_BAR_MS,
            },
          ],
    notes,
  };
}

// Child-process mode: `node --import tsx bench/cluster.bench.ts moleculer-service <url> <nodeID>`.
if (
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(process.argv[1]).href &&
  process.argv[2] === 'moleculer-service'
) {
  await moleculerService(process.argv[3]!, process.argv[4]!);
}
