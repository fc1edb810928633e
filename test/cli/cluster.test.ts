/**
 * `shardchart node` and `shardchart cluster status` as an operator runs
 * them: two `shardchart node` processes on a module of the repository, a
 * private nats-server, a client system in the test process sending events,
 * then the status command as a process (JSON and tables). SIGTERM of one
 * node must hand its shards to the other, with every entity's state intact.
 * The module contract and the usage errors are checked too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createActorSystem, type ActorSystem } from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import {
  ranges,
  readClusterStatus,
  runClusterStatus,
  type ClusterStatusReport,
} from '../../src/cli/cluster-status.js';
import { loadNodeModule } from '../../src/cli/node.js';
import { tallyMachine } from '../cluster/machines.js';
import {
  freePort,
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const moduleFile = join(root, 'test/cli/cluster-module.ts');
const SYSTEM = 'clitest';
const SHARDS = 12;
const LEASE_TTL_MS = 1_500;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface CliProcess {
  readonly child: ChildProcess;
  readonly stderr: () => string;
  readonly done: Promise<Run>;
  /** Resolves when stderr holds `text`; rejects if the process ends first. */
  waitFor(text: string): Promise<void>;
}

function cliProcess(args: readonly string[]): CliProcess {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--conditions=shardchart-source',
      'src/cli/main.ts',
      ...args,
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  const waiters: { text: string; resolve(): void }[] = [];
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
    for (const w of waiters) if (stderr.includes(w.text)) w.resolve();
  });
  const done = new Promise<Run>((resolve) =>
    child.once('close', (code) => resolve({ code, stdout, stderr })),
  );
  return {
    child,
    stderr: () => stderr,
    done,
    waitFor(text) {
      return new Promise<void>((resolve, reject) => {
        if (stderr.includes(text)) return resolve();
        waiters.push({ text, resolve });
        void done.then((run) =>
          reject(
            new Error(
              `exited (${String(run.code)}) before "${text}":\n${run.stderr}`,
            ),
          ),
        );
      });
    },
  };
}

const cli = (args: readonly string[]): Promise<Run> => cliProcess(args).done;

let server: NatsServerHandle;
const started: CliProcess[] = [];

/** Exit-code runs of the usage test, started with the server so they overlap the node starts. */
let usageRuns: Promise<[Run, Run]>;

beforeAll(async () => {
  server = await startNatsServer();
  usageRuns = Promise.all([
    cli(['cluster', 'status', '--nats', server.url]),
    cli([
      'cluster',
      'status',
      '--nats',
      server.url,
      '--system',
      'nosuch',
      '--wait',
      '200',
    ]),
  ]);
});

afterAll(async () => {
  for (const p of started)
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await server?.stop();
});

function startNode(nodeId: string): CliProcess {
  const p = cliProcess([
    'node',
    moduleFile,
    '--nats',
    server.url,
    '--node-id',
    nodeId,
    '--system',
    SYSTEM,
    '--shards',
    String(SHARDS),
    '--lease-ttl',
    String(LEASE_TTL_MS),
  ]);
  started.push(p);
  return p;
}

/** Polls the status until `ok` holds; returns that report. */
async function statusWhen(
  ok: (r: ClusterStatusReport) => boolean,
  timeoutMs: number,
): Promise<ClusterStatusReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await readClusterStatus({
      servers: [server.url],
      system: SYSTEM,
      waitMs: 300,
    });
    if (ok(report)) return report;
    if (Date.now() > deadline) {
      throw new Error(
        `status never matched:\n${JSON.stringify(report, null, 2)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}

function expandRanges(text: string): number[] {
  if (text === '') return [];
  return text.split(',').flatMap((part) => {
    const [a, b] = part.split('-').map(Number) as [number, number?];
    return b === undefined
      ? [a]
      : Array.from({ length: b - a + 1 }, (_, i) => a + i);
  });
}

const ids = Array.from({ length: 30 }, (_, i) => `t-${i}`);

test('cli cluster - two `shardchart node` processes serve the module; `cluster status` lists nodes, owners and entities; SIGTERM hands the shards over', async () => {
  const a = startNode('a');
  const b = startNode('b');
  await Promise.all([
    a.waitFor('"msg":"node ready"'),
    b.waitFor('"msg":"node ready"'),
  ]);
  await statusWhen(
    (r) =>
      r.healthy &&
      r.owners.length === 2 &&
      r.owners.every((o) => o.shards > 0) &&
      r.nodes.filter((n) => n.answered).length === 2,
    20_000,
  );

  const client: ActorSystem = await createActorSystem({
    name: SYSTEM,
    entities: { tally: tallyMachine },
    store: natsStore({ logger: pino({ level: 'error' }) }),
    logger: pino({ level: 'error' }),
    cluster: {
      nats: { servers: server.url },
      nodeId: 'client',
      shardCount: SHARDS,
      leaseTtlMs: LEASE_TTL_MS,
      hostShards: false,
    },
  });
  try {
    for (const state of await Promise.all(
      ids.map((id) =>
        client
          .entity('tally', id)
          .send({ type: 'ADD', n: 1 }, { eventId: `${id}:1` }),
      ),
    )) {
      expect(state.seq).toBe(1);
      expect((state.context as { seen: number[] }).seen).toEqual([1]);
    }

    const json = await cli([
      'cluster',
      'status',
      '--nats',
      server.url,
      '--system',
      SYSTEM,
      '--json',
    ]);
    let text = '';
    await runClusterStatus({
      servers: [server.url],
      system: SYSTEM,
      output: { write: (chunk: string) => (text += chunk) },
    });
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as ClusterStatusReport;
    expect(report.healthy).toBe(true);
    expect(report.problems).toEqual([]);
    expect(report.shardCount).toBe(SHARDS);
    const hosts = report.nodes.filter((n) => n.role === 'host');
    expect(hosts.map((n) => n.nodeId)).toEqual(['a', 'b']);
    for (const host of hosts) {
      expect(host).toMatchObject({
        alive: true,
        status: 'active',
        answered: true,
        messagesInvalid: 0,
      });
      expect(host.incarnation).toMatch(/\S/);
      expect(host.shardsServed).toBe(host.shardsOwned);
    }
    expect(report.nodes.find((n) => n.nodeId === 'client')).toMatchObject({
      role: 'client',
      alive: true,
      liveEntities: 0,
    });
    // Every shard has exactly one owner, and the ranges say which.
    const owned = report.owners.flatMap((o) => expandRanges(o.ranges));
    expect(owned.sort((x, y) => x - y)).toEqual(
      Array.from({ length: SHARDS }, (_, i) => i),
    );
    expect(report.unowned).toBe('');
    expect(report.entities).toEqual({
      live: ids.length,
      byType: { tally: ids.length },
    });
    expect(hosts.reduce((sum, n) => sum + (n.liveEntities ?? 0), 0)).toBe(
      ids.length,
    );
    expect(hosts.reduce((sum, n) => sum + (n.eventsApplied ?? 0), 0)).toBe(
      ids.length,
    );

    expect(text).toMatch(
      /^system clitest: 2 of 2 host node\(s\) alive, 1 client\(s\), 12 shards, healthy/,
    );
    for (const owner of report.owners) {
      expect(text).toMatch(
        new RegExp(
          `\\n {2}${owner.nodeId}\\s+${owner.shards}\\s+${owner.ranges}\\n`,
        ),
      );
    }
    expect(text).toMatch(/\n {2}tally\s+30\n {2}total\s+30\n/);

    // Graceful leave: a's shards go to b without waiting for a's lease.
    const aShards = report.owners.find((o) => o.nodeId === 'a')!.ranges;
    a.child.kill('SIGTERM');
    const left = await a.done;
    expect(left.code, left.stderr).toBe(0);
    expect(left.stderr).toContain('"msg":"leaving: handing shards over"');
    expect(left.stderr).toContain('"msg":"node stopped"');
    const after = await statusWhen(
      (r) => r.healthy && r.owners.length === 1,
      10_000,
    );
    expect(after.owners).toEqual([
      { nodeId: 'b', alive: true, shards: SHARDS, ranges: `0-${SHARDS - 1}` },
    ]);
    expect(after.nodes.some((n) => n.nodeId === 'a')).toBe(false);
    expect(expandRanges(aShards).length).toBeGreaterThan(0);

    // Every entity goes on from its durable state on its new owner.
    for (const state of await Promise.all(
      ids.map((id) =>
        client
          .entity('tally', id)
          .send({ type: 'ADD', n: 2 }, { eventId: `${id}:2` }),
      ),
    )) {
      expect(state.seq).toBe(2);
      expect((state.context as { seen: number[] }).seen).toEqual([1, 2]);
    }
    const final = await statusWhen(
      (r) => r.entities.live === ids.length,
      5_000,
    );
    expect(final.nodes.find((n) => n.nodeId === 'b')?.liveEntities).toBe(
      ids.length,
    );
  } finally {
    await client.stop();
    b.child.kill('SIGTERM');
    expect((await b.done).code).toBe(0);
  }
}, 60_000);

test('cli cluster - bad usage exits 2, a failure exits 1 with what to do', async () => {
  // Two processes for the exit codes (started in beforeAll); the other
  // failures in-process, since a process start costs seconds on a loaded
  // machine.
  const [noSystem, unknownSystem] = await usageRuns;
  expect(noSystem.code).toBe(2);
  expect(noSystem.stderr).toContain('cluster status needs --system NAME');
  expect(noSystem.stderr).toContain('Usage: shardchart <command>');
  expect(unknownSystem.code).toBe(1);
  expect(unknownSystem.stderr).toContain('No system "nosuch"');
  expect(unknownSystem.stderr).toContain(
    'Check --system and --nats, or start a node.',
  );

  const closedPort = await freePort();
  await expect(
    readClusterStatus({
      servers: [`nats://127.0.0.1:${closedPort}`],
      system: SYSTEM,
    }),
  ).rejects.toMatchObject({
    code: 'CLUSTER_UNAVAILABLE',
    message: expect.stringContaining('Could not connect to NATS') as unknown,
  });
  await expect(
    loadNodeModule(join(root, 'test/cli/no-such-module.ts')),
  ).rejects.toMatchObject({
    code: 'MACHINE_INVALID',
    message: expect.stringContaining('Cannot load module') as unknown,
  });
}, 60_000);

describe('cli node - module contract', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'shardchart-node-module-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function write(name: string, body: string): string {
    const file = join(dir, name);
    writeFileSync(file, body);
    return file;
  }

  test('every machine export is an entity type named after it; system and options are read', async () => {
    const mod = await loadNodeModule(moduleFile);
    expect(Object.keys(mod.entities)).toEqual(['tally']);
    expect(mod.system).toBe('cli-module-default');
    expect(mod.options).toEqual({ passivateAfterMs: 0 });
  });

  test('an `entities` export alone says what the node hosts', async () => {
    const file = write(
      'entities.ts',
      `import { tally } from ${JSON.stringify(moduleFile)};\nexport const entities = { counter: tally, audited: { machine: tally, timerResume: 'remaining' } };\nexport const stray = tally;\n`,
    );
    const mod = await loadNodeModule(file);
    expect(Object.keys(mod.entities)).toEqual(['counter', 'audited']);
    expect(mod.system).toBeUndefined();
  });

  test('a module without entity types, or with options the node sets, is refused with what to do', async () => {
    const none = write('none.ts', 'export const system = "x";\n');
    await expect(loadNodeModule(none)).rejects.toThrow(
      /exports no entity types: export each machine under its entity type name/,
    );
    const refused = write(
      'refused.ts',
      `export { tally } from ${JSON.stringify(moduleFile)};\nexport const options = { store: {}, name: 'y' };\n`,
    );
    await expect(loadNodeModule(refused)).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining(
        'sets "name", "store", which the node sets itself',
      ) as unknown,
    });
    const badSystem = write(
      'bad-system.ts',
      `export { tally } from ${JSON.stringify(moduleFile)};\nexport const system = 'a.b';\n`,
    );
    await expect(loadNodeModule(badSystem)).rejects.toThrow(
      /"system" export .* must be a name of letters/,
    );
  });

  test('ranges - shard lists print as compact ranges', () => {
    expect(ranges([])).toBe('');
    expect(ranges([7])).toBe('7');
    expect(ranges([3, 0, 1, 2, 7, 9, 10])).toBe('0-3,7,9-10');
  });
});
