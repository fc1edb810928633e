import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { subjectsFor } from '../cluster/subjects.js';
import { ClusterError } from '../errors.js';
import {
  CONFIG_KEY,
  decodeConfigRecord,
  decodeNodeRecord,
  decodeShardRecord,
  NODES_PREFIX,
  parseShardKey,
  SHARDS_PREFIX,
  type NodeRecord,
  type ShardRecord,
} from '../sharding/records.js';

export interface ClusterStatusOptions {
  /** NATS server URLs. */
  servers: string[];
  /** The system name, as the nodes were started with. */
  system: string;
  /** How long to collect the nodes' answers. Default 1,000 ms. */
  waitMs?: number;
  /** Print JSON instead of tables. */
  json?: boolean;
  output?: { write(chunk: string): unknown };
}

/** One process of the system, as its membership record and its own answer describe it. */
export interface NodeRow {
  nodeId: string;
  /** The membership incarnation (a client node's process incarnation). */
  incarnation: string;
  /** `host` owns shards; `client` only sends and reads. */
  role: 'host' | 'client';
  /** Heartbeat within its lease (hosts) or answering now (clients). */
  alive: boolean;
  /** `leaving` while a host hands its shards over. */
  status: 'active' | 'leaving' | 'unknown';
  /** It answered the status request within the wait. */
  answered: boolean;
  /** Shards its owner records name it for. */
  shardsOwned: number;
  /** Shards it consumes now (from its answer). */
  shardsServed?: number;
  liveEntities?: number;
  eventsApplied?: number;
  messagesInvalid?: number;
  /** How long ago its membership record was last written (its heartbeat). */
  heartbeatAgoMs?: number;
}

/** What `shardchart cluster status` reports (its `--json` output). */
export interface ClusterStatusReport {
  system: string;
  /** ISO time of the report. */
  at: string;
  shardCount: number | undefined;
  nodes: NodeRow[];
  /** Owner -> shards (compact ranges such as `0-3,7`), from the owner records. */
  owners: { nodeId: string; alive: boolean; shards: number; ranges: string }[];
  /** Shards with no owner record or a released one. */
  unowned: string;
  /** Entities live in memory, by type and in total, over the answering nodes. */
  entities: { live: number; byType: Record<string, number> };
  /** True when every shard has a live owner and every live host answered. */
  healthy: boolean;
  /** What keeps it from being healthy, or looks odd, one sentence each. */
  problems: string[];
}

/** A problem the user can fix (no such system); printed without a stack. */
export class ClusterStatusError extends Error {
  override readonly name = 'ClusterStatusError';
}

/** The fields of a node's answer on `shardchart.<sys>.admin.status` that are read here. */
interface NodeAnswer {
  nodeId: string;
  incarnation: string;
  hostShards: boolean;
  ownedShards: number[];
  liveEntities: number;
  entitiesByType?: Record<string, number>;
  eventsApplied?: number;
  messagesInvalid: number;
  coordinator?: {
    incarnation: string;
    viewHealthy: boolean;
    members: { nodeId: string; incarnation: string; alive: boolean }[];
  };
}

const ANSWER_BYTES_MAX = 4 * 1_048_576;

/**
 * `shardchart cluster status`: asks every node of a system for its figures
 * (`shardchart.<sys>.admin.status`, answered by each node process, clients
 * included) and reads the membership and shard owner records from the
 * system's cluster KV bucket, then prints nodes, shard owners (compact
 * ranges per node) and live entity counts. Reads only: it creates nothing.
 *
 * Liveness comes from a hosting node's own view of the membership when one
 * answers (the view the coordinator acts on); with no host answering, from
 * the age of each membership record against its lease, measured by this
 * machine's clock against the server's timestamps.
 *
 * @throws ClusterError `CLUSTER_UNAVAILABLE` when NATS cannot be reached.
 * @throws ClusterStatusError when no node answers and the system has no bucket.
 *
 * @example
 * ```ts
 * const report = await runClusterStatus({ servers: ['nats://127.0.0.1:4222'], system: 'shop', json: true });
 * if (!report.healthy) console.error(report.problems.join('\n'));
 * ```
 */
export async function runClusterStatus(
  options: ClusterStatusOptions,
): Promise<ClusterStatusReport> {
  const report = await readClusterStatus(options);
  const out = options.output ?? process.stdout;
  out.write(
    options.json === true
      ? `${JSON.stringify(report, null, 2)}\n`
      : formatReport(report),
  );
  return report;
}

/** The report without printing it. */
export async function readClusterStatus(
  options: ClusterStatusOptions,
): Promise<ClusterStatusReport> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: options.servers,
      name: `shardchart-cluster-status-${options.system}`,
      maxReconnectAttempts: 0,
      timeout: 5_000,
    });
  } catch (cause) {
    throw new ClusterError(
      'CLUSTER_UNAVAILABLE',
      `Could not connect to NATS at ${options.servers.join(',')} (${cause instanceof Error ? cause.message : String(cause)}); check the --nats URL.`,
      { cause, retryable: true },
    );
  }
  try {
    const [answers, records] = await Promise.all([
      askNodes(nc, options.system, options.waitMs ?? 1_000),
      readRecords(nc, options.system),
    ]);
    if (records === undefined && answers.answers.length === 0) {
      throw new ClusterStatusError(
        `No system "${options.system}" on ${options.servers.join(',')}: no node answered on ${subjectsFor(options.system).adminStatus} within ${options.waitMs ?? 1_000} ms and there is no cluster bucket SHARDCHART_${options.system}_CLUSTER. Check --system and --nats, or start a node.`,
      );
    }
    return buildReport(options.system, answers, records);
  } finally {
    await nc.close();
  }
}

interface Answers {
  answers: NodeAnswer[];
  unreadable: number;
}

async function askNodes(
  nc: NatsConnection,
  system: string,
  waitMs: number,
): Promise<Answers> {
  const out: Answers = { answers: [], unreadable: 0 };
  let replies: AsyncIterable<{ data: Uint8Array }>;
  try {
    replies = await nc.requestMany(
      subjectsFor(system).adminStatus,
      new Uint8Array(0),
      { maxWait: waitMs },
    );
  } catch {
    return out; // Nobody listens: the system has no running process.
  }
  try {
    for await (const msg of replies) {
      const answer = parseAnswer(msg.data);
      if (answer === undefined) out.unreadable++;
      else out.answers.push(answer);
    }
  } catch {
    // "no responders" ends the iteration the same way.
  }
  return out;
}

function parseAnswer(data: Uint8Array): NodeAnswer | undefined {
  if (data.length > ANSWER_BYTES_MAX) return undefined;
  try {
    const value = JSON.parse(new TextDecoder().decode(data)) as unknown;
    if (typeof value !== 'object' || value === null) return undefined;
    const a = value as Partial<NodeAnswer>;
    if (
      typeof a.nodeId !== 'string' ||
      typeof a.incarnation !== 'string' ||
      !Array.isArray(a.ownedShards) ||
      !a.ownedShards.every((s) => Number.isInteger(s))
    ) {
      return undefined;
    }
    return {
      nodeId: a.nodeId,
      incarnation: a.incarnation,
      hostShards: a.hostShards === true,
      ownedShards: a.ownedShards,
      liveEntities: num(a.liveEntities),
      entitiesByType: isCounts(a.entitiesByType) ? a.entitiesByType : undefined,
      eventsApplied:
        a.eventsApplied === undefined ? undefined : num(a.eventsApplied),
      messagesInvalid: num(a.messagesInvalid),
      coordinator: a.coordinator,
    };
  } catch {
    return undefined;
  }
}

interface Records {
  shardCount: number | undefined;
  nodes: Map<string, { record: NodeRecord; createdAt: number }>;
  shards: Map<number, ShardRecord>;
  invalid: string[];
}

/** The cluster bucket's records, or undefined when the system has none. */
async function readRecords(
  nc: NatsConnection,
  system: string,
): Promise<Records | undefined> {
  const bucket = `SHARDCHART_${system}_CLUSTER`;
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(`KV_${bucket}`);
  } catch {
    return undefined;
  }
  const kv = await new Kvm(jetstream(nc)).open(bucket);
  const keys: string[] = [];
  for await (const key of await kv.keys()) keys.push(key);
  const entries = await Promise.all(keys.map((key) => kv.get(key)));
  const out: Records = {
    shardCount: undefined,
    nodes: new Map(),
    shards: new Map(),
    invalid: [],
  };
  const config = entries.find((e) => e?.key === CONFIG_KEY);
  if (config?.operation === 'PUT') {
    const decoded = decodeConfigRecord(config.value);
    if (decoded.ok) out.shardCount = decoded.record.shardCount;
    else out.invalid.push(`${CONFIG_KEY}: ${decoded.reason}`);
  }
  for (const entry of entries) {
    if (entry === null || entry.operation !== 'PUT') continue;
    if (entry.key.startsWith(NODES_PREFIX)) {
      const decoded = decodeNodeRecord(entry.value, entry.key);
      if (decoded.ok) {
        out.nodes.set(decoded.record.nodeId, {
          record: decoded.record,
          createdAt: entry.created.getTime(),
        });
      } else out.invalid.push(`${entry.key}: ${decoded.reason}`);
    } else if (entry.key.startsWith(SHARDS_PREFIX)) {
      const shard = parseShardKey(entry.key, out.shardCount ?? 65_536);
      const decoded = decodeShardRecord(entry.value);
      if (shard !== undefined && decoded.ok)
        out.shards.set(shard, decoded.record);
      else {
        out.invalid.push(
          `${entry.key}: ${decoded.ok ? 'shard out of range' : decoded.reason}`,
        );
      }
    }
  }
  return out;
}

function buildReport(
  system: string,
  { answers, unreadable }: Answers,
  records: Records | undefined,
): ClusterStatusReport {
  const now = Date.now();
  const problems: string[] = [];
  const byId = new Map(answers.map((a) => [a.nodeId, a]));
  // The view of a host that says its view is complete: the one it acts on.
  const view = answers.find(
    (a) => a.hostShards && a.coordinator?.viewHealthy === true,
  )?.coordinator;
  const aliveInView = new Map(
    (view?.members ?? []).map((m) => [`${m.nodeId}/${m.incarnation}`, m.alive]),
  );
  const isAlive = (nodeId: string, incarnation: string): boolean => {
    const seen = aliveInView.get(`${nodeId}/${incarnation}`);
    if (seen !== undefined) return seen;
    const node = records?.nodes.get(nodeId);
    if (node === undefined || node.record.incarnation !== incarnation) {
      return false;
    }
    return now - node.createdAt <= node.record.leaseTtlMs;
  };

  const shardCount =
    records?.shardCount ??
    (view as { shardCount?: number } | undefined)?.shardCount;
  const owned = new Map<string, number[]>();
  const unowned: number[] = [];
  const deadOwner: number[] = [];
  for (let shard = 0; shard < (shardCount ?? 0); shard++) {
    const record = records?.shards.get(shard);
    if (record?.owner == null || record.incarnation === null) {
      unowned.push(shard);
      continue;
    }
    const key = record.owner;
    owned.set(key, [...(owned.get(key) ?? []), shard]);
    if (!isAlive(record.owner, record.incarnation)) deadOwner.push(shard);
  }

  const nodes: NodeRow[] = [];
  for (const { record, createdAt } of records?.nodes.values() ?? []) {
    const answer = byId.get(record.nodeId);
    nodes.push({
      nodeId: record.nodeId,
      incarnation: record.incarnation,
      role: 'host',
      alive: isAlive(record.nodeId, record.incarnation),
      status: record.status,
      answered: answer !== undefined,
      shardsOwned: owned.get(record.nodeId)?.length ?? 0,
      ...figures(answer),
      heartbeatAgoMs: Math.max(0, now - createdAt),
    });
  }
  for (const answer of answers) {
    if (records?.nodes.has(answer.nodeId) === true) continue;
    nodes.push({
      nodeId: answer.nodeId,
      incarnation: answer.coordinator?.incarnation ?? answer.incarnation,
      role: answer.hostShards ? 'host' : 'client',
      alive: true,
      status: answer.hostShards ? 'unknown' : 'active',
      answered: true,
      shardsOwned: owned.get(answer.nodeId)?.length ?? 0,
      ...figures(answer),
    });
    if (answer.hostShards) {
      problems.push(
        `Node ${answer.nodeId} answers as a host but has no membership record (joining, or expelled and re-registering).`,
      );
    }
  }
  nodes.sort((a, b) =>
    a.role !== b.role
      ? a.role === 'host'
        ? -1
        : 1
      : a.nodeId.localeCompare(b.nodeId),
  );

  const byType: Record<string, number> = {};
  let live = 0;
  for (const answer of answers) {
    live += answer.liveEntities;
    for (const [type, n] of Object.entries(answer.entitiesByType ?? {})) {
      byType[type] = (byType[type] ?? 0) + n;
    }
  }

  if (records === undefined) {
    problems.push(
      `No cluster bucket SHARDCHART_${system}_CLUSTER: no host has joined yet.`,
    );
  }
  if (unowned.length > 0) {
    problems.push(
      `${unowned.length} shard(s) without an owner (${ranges(unowned)}): their events wait in the stream until a host claims them.`,
    );
  }
  if (deadOwner.length > 0) {
    problems.push(
      `${deadOwner.length} shard(s) owned by a node that is not alive (${ranges(deadOwner)}): they are claimed once its lease has expired.`,
    );
  }
  for (const node of nodes) {
    if (node.role === 'host' && node.alive && !node.answered) {
      problems.push(
        `Node ${node.nodeId} heartbeats but did not answer the status request (busy, or a release without the status subject).`,
      );
    }
  }
  if (unreadable > 0) {
    problems.push(`${unreadable} status answer(s) could not be read.`);
  }
  for (const invalid of records?.invalid ?? []) {
    problems.push(`Invalid record ${invalid}.`);
  }
  return {
    system,
    at: new Date(now).toISOString(),
    shardCount,
    nodes,
    owners: [...owned.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([nodeId, shards]) => ({
        nodeId,
        alive: !shards.some((s) => deadOwner.includes(s)),
        shards: shards.length,
        ranges: ranges(shards),
      })),
    unowned: ranges(unowned),
    entities: { live, byType },
    healthy:
      records !== undefined &&
      unowned.length === 0 &&
      deadOwner.length === 0 &&
      !nodes.some((n) => n.role === 'host' && n.alive && !n.answered),
    problems,
  };
}

function figures(answer: NodeAnswer | undefined): Partial<NodeRow> {
  if (answer === undefined) return {};
  return {
    shardsServed: answer.ownedShards.length,
    liveEntities: answer.liveEntities,
    eventsApplied: answer.eventsApplied,
    messagesInvalid: answer.messagesInvalid,
  };
}

/**
 * Sorted shard numbers as compact ranges: `[0,1,2,3,7,9,10]` -> `0-3,7,9-10`.
 *
 * @example
 * ```ts
 * ranges([0, 1, 2, 5]); // '0-2,5'
 * ```
 */
export function ranges(shards: readonly number[]): string {
  const sorted = [...shards].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

function formatReport(report: ClusterStatusReport): string {
  const lines: string[] = [];
  const hosts = report.nodes.filter((n) => n.role === 'host');
  const aliveHosts = hosts.filter((n) => n.alive).length;
  lines.push(
    `system ${report.system}: ${aliveHosts} of ${hosts.length} host node(s) alive, ${report.nodes.length - hosts.length} client(s), ${report.shardCount ?? '?'} shards, ${report.healthy ? 'healthy' : 'NOT healthy'}  (${report.at})`,
    '',
    'nodes',
  );
  const dash = (v: number | undefined): string =>
    v === undefined ? '-' : String(v);
  lines.push(
    ...table(
      [
        'node',
        'incarnation',
        'role',
        'alive',
        'status',
        'shards',
        'live entities',
        'events applied',
        'invalid msgs',
        'heartbeat',
      ],
      report.nodes.map((n) => [
        n.nodeId,
        n.incarnation,
        n.role,
        n.alive ? 'yes' : 'NO',
        n.status,
        n.role === 'client' ? '-' : String(n.shardsOwned),
        dash(n.liveEntities),
        dash(n.eventsApplied),
        dash(n.messagesInvalid),
        n.heartbeatAgoMs === undefined ? '-' : `${n.heartbeatAgoMs} ms ago`,
      ]),
    ),
  );
  lines.push('', 'shard owners');
  lines.push(
    ...table(
      ['owner', 'shards', 'ranges'],
      [
        ...report.owners.map((o) => [
          o.alive ? o.nodeId : `${o.nodeId} (not alive)`,
          String(o.shards),
          o.ranges,
        ]),
        ...(report.unowned === ''
          ? []
          : [['(none)', String(countRanges(report.unowned)), report.unowned]]),
      ],
    ),
  );
  lines.push('', 'entities live in memory');
  lines.push(
    ...table(
      ['type', 'live'],
      [
        ...Object.entries(report.entities.byType)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([type, n]) => [type, String(n)]),
        ['total', String(report.entities.live)],
      ],
    ),
  );
  if (report.problems.length > 0) {
    lines.push('', 'problems');
    for (const problem of report.problems) lines.push(`  - ${problem}`);
  }
  return `${lines.join('\n')}\n`;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)),
  );
  // Text left, figures right, as people scan them.
  const numeric = header.map((_, i) =>
    rows.every((r) => /^(\d+|-)$/.test(r[i] ?? '')),
  );
  const line = (cells: string[]): string =>
    `  ${cells
      .map((c, i) =>
        numeric[i] === true ? c.padStart(widths[i]!) : c.padEnd(widths[i]!),
      )
      .join('  ')
      .trimEnd()}`;
  return [
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ];
}

function countRanges(text: string): number {
  let n = 0;
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number);
    n += b === undefined ? 1 : b - a! + 1;
  }
  return n;
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

function isCounts(value: unknown): value is Record<string, number> {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.values(value).every((n) => typeof n === 'number')
  );
}
