/**
 * Helpers of the cluster tests: node processes, the cluster's status as the
 * nodes report it, and a load driver that records every acknowledged event.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { ActorSystem } from 'shardchart';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..');
const workerPath = join(here, 'node-worker.ts');

export interface NodeProcess {
  readonly nodeId: string;
  readonly process: ChildProcess;
  /** Everything the node wrote to stderr (its warn/error logs). */
  readonly stderr: () => string;
  /** Resolves when the node has joined. */
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM (graceful leave) and wait for exit. */
  stop(): Promise<void>;
}

export function spawnNode(
  url: string,
  nodeId: string,
  system: string,
  shardCount: number,
  leaseTtlMs: number,
): NodeProcess {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--conditions=shardchart-source',
      workerPath,
      url,
      nodeId,
      system,
      String(shardCount),
      String(leaseTtlMs),
    ],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < 200_000) stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('"ready":true')) resolve();
    });
    void exited.then((code) =>
      reject(
        new Error(
          `node ${nodeId} exited (${String(code)}) before it was ready:\n${stderr}`,
        ),
      ),
    );
  });
  ready.catch(() => undefined);
  return {
    nodeId,
    process: child,
    stderr: () => stderr,
    ready,
    exited,
    signal(signal) {
      if (child.exitCode === null && child.signalCode === null)
        child.kill(signal);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface NodeStatus {
  nodeId: string;
  incarnation: string;
  hostShards: boolean;
  ownedShards: number[];
  liveEntities: number;
  messagesInvalid: number;
}

/** The status every node reports now (a node that does not answer within `waitMs` is missing). */
export async function clusterStatus(
  url: string,
  system: string,
  waitMs = 400,
): Promise<NodeStatus[]> {
  let nc;
  try {
    nc = await connect({ servers: url });
  } catch {
    return []; // The server is restarting.
  }
  const out: NodeStatus[] = [];
  try {
    const replies = await nc.requestMany(
      `shardchart.${system}.admin.status`,
      new Uint8Array(0),
      { maxWait: waitMs },
    );
    for await (const msg of replies)
      out.push(JSON.parse(new TextDecoder().decode(msg.data)) as NodeStatus);
  } catch {
    // No node answers yet (reconnecting): nobody owns anything as far as we can tell.
  } finally {
    await nc.close();
  }
  return out;
}

/** Waits until the shards are owned exactly once by the hosting nodes in `nodeIds`; resolves with the time it took. */
export async function waitForOwners(
  url: string,
  system: string,
  shardCount: number,
  nodeIds: readonly string[],
  timeoutMs: number,
): Promise<number> {
  const started = Date.now();
  for (;;) {
    const status = await clusterStatus(url, system, 250);
    const owners = new Map<number, string[]>();
    for (const node of status)
      for (const shard of node.ownedShards)
        owners.set(shard, [...(owners.get(shard) ?? []), node.nodeId]);
    let ok = owners.size === shardCount;
    for (const list of owners.values())
      if (list.length !== 1 || !nodeIds.includes(list[0] as string)) ok = false;
    if (ok) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      throw new Error(
        `shards not owned by ${nodeIds.join(',')} after ${timeoutMs} ms: ${JSON.stringify(status.map((s) => [s.nodeId, s.ownedShards.length]))}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Sends `ADD n` events with event ids, from `senders` concurrent loops over
 * `entities`, retrying each event with its own id until it is acknowledged
 * (as a client of an effectively-once system does), and records every
 * acknowledgement with its latency.
 */
export class LoadDriver {
  readonly acked = new Map<string, Set<number>>();
  readonly sent = new Map<string, number>();
  readonly latencies: number[] = [];
  readonly errors = new Map<string, number>();
  /** Longest time one event took from its first attempt to its acknowledgement. */
  longestMs = 0;
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly system: ActorSystem,
    private readonly entities: readonly string[],
    private readonly senders: number,
    private readonly pauseMs = 0,
  ) {}

  start(): void {
    this.running = true;
    for (let s = 0; s < this.senders; s++) this.loops.push(this.loop(s));
  }

  private async loop(s: number): Promise<void> {
    let i = s;
    while (this.running) {
      const id = this.entities[i % this.entities.length] as string;
      i += this.senders;
      const n = (this.sent.get(id) ?? 0) + 1;
      this.sent.set(id, n);
      const started = Date.now();
      for (;;) {
        try {
          const t0 = Date.now();
          await this.system
            .entity('tally', id)
            .send(
              { type: 'ADD', n },
              { eventId: `${id}:${n}`, timeoutMs: 15_000 },
            );
          this.latencies.push(Date.now() - t0);
          let set = this.acked.get(id);
          if (!set) this.acked.set(id, (set = new Set()));
          set.add(n);
          this.longestMs = Math.max(this.longestMs, Date.now() - started);
          break;
        } catch (error) {
          const code = (error as { code?: string }).code ?? String(error);
          this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      if (this.pauseMs > 0)
        await new Promise((r) => setTimeout(r, this.pauseMs));
    }
  }

  /** Stops after every event in flight is acknowledged. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  ackedCount(): number {
    let total = 0;
    for (const set of this.acked.values()) total += set.size;
    return total;
  }
}

/** p-th percentile of `values` (0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))
  ] as number;
}

/**
 * Checks every entity against what was acknowledged: each acknowledged n is
 * in the state exactly once, nothing else is there twice. Returns the counts.
 */
export async function verify(
  system: ActorSystem,
  driver: LoadDriver,
): Promise<{ lost: number; duplicated: number; checked: number }> {
  let lost = 0;
  let duplicated = 0;
  let checked = 0;
  const entries = [...driver.acked];
  // A few reads in flight at once: one at a time is slow on a loaded machine.
  const check = async ([id, acked]: [string, Set<number>]): Promise<void> => {
    const state = await system.entity('tally', id).snapshot();
    const seen = (state.context as { seen: number[] }).seen;
    const counts = new Map<number, number>();
    for (const n of seen) counts.set(n, (counts.get(n) ?? 0) + 1);
    for (const n of acked) if (!counts.has(n)) lost++;
    for (const c of counts.values()) if (c > 1) duplicated += c - 1;
    checked++;
  };
  for (let i = 0; i < entries.length; i += 16)
    await Promise.all(entries.slice(i, i + 16).map(check));
  return { lost, duplicated, checked };
}

/**
 * Reads the whole journal stream of `system` in order and counts writes whose
 * fencing token (header `Shardchart-Fence: shard:token:node`) is older than
 * one already written for the same shard: a write by a stale owner that
 * landed after a newer owner's.
 */
export async function staleWrites(
  url: string,
  system: string,
): Promise<{ total: number; stale: number; nodes: Record<string, number> }> {
  const nc = await connect({ servers: url });
  try {
    const js = jetstream(nc);
    const stream = `shardchart_${system}_journal`;
    const jsm = await jetstreamManager(nc);
    const last = (await jsm.streams.info(stream)).state.last_seq;
    const consumer = await js.consumers.get(stream);
    const maxToken = new Map<number, number>();
    const nodes: Record<string, number> = {};
    let total = 0;
    let stale = 0;
    if (last === 0) return { total, stale, nodes };
    const messages = await consumer.consume();
    for await (const m of messages) {
      const fence = m.headers?.get('Shardchart-Fence');
      if (fence) {
        const [shard, token, node] = fence.split(':');
        const s = Number(shard);
        const t = Number(token);
        total++;
        nodes[node as string] = (nodes[node as string] ?? 0) + 1;
        if (t < (maxToken.get(s) ?? 0)) stale++;
        maxToken.set(s, Math.max(t, maxToken.get(s) ?? 0));
      }
      if (m.seq >= last) break;
    }
    await messages.close();
    return { total, stale, nodes };
  } finally {
    await nc.close();
  }
}
