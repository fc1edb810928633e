/**
 * `shardchart graph`: draws a module's machine in every format, and with
 * `--entity` reads an entity's latest state from a real LMDB store (written
 * here by an actor system with a simulated clock) and highlights it. The
 * command line itself runs as a child process for the wiring and exit
 * codes; the formats run in-process through `runGraph`, which `main` calls.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lmdbStore } from '../../adapters/lmdb/index.js';
import { GraphCommandError, runGraph, type GraphCommandOptions } from '../../src/cli/graph.js';
import { orderMachine } from '../../src/cli/order-machine.js';
import { createActorSystem, createSimulatedClock, isShardchartError } from '../../src/index.js';
import type { GraphModel } from '../../src/graph/index.js';
import { runDot } from '../graph/graphviz.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const machineModule = join(root, 'src/cli/order-machine.ts');
const start = 1_700_000_000_000;

function cli(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--conditions=shardchart-source', 'src/cli/main.ts', ...args],
      { cwd: root, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The store's data files (LMDB's lock file changes on reads). */
function storeData(path: string): Buffer {
  return Buffer.concat(
    readdirSync(path)
      .filter((name) => !name.includes('lock'))
      .sort()
      .map((name) => readFileSync(join(path, name))),
  );
}

async function capture(options: Omit<GraphCommandOptions, 'output'>): Promise<string> {
  let text = '';
  await runGraph({ ...options, output: { write: (chunk: string) => (text += chunk) } });
  return text;
}

describe('cli graph', () => {
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shardchart-graph-'));
    // One order in processing with its timers pending, one paused so its
    // deep history remembers both regions.
    const clock = createSimulatedClock(start);
    const system = await createActorSystem({
      name: 'graph-cli',
      entities: { order: orderMachine },
      store: lmdbStore({ path: join(dir, 'store') }),
      clock,
      logger: pino({ level: 'silent' }),
      passivateAfterMs: 0,
    });
    const running = system.entity('order', 'o-1');
    await running.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
    await running.send({ type: 'CHECKOUT' });
    const paused = system.entity('order', 'o/2');
    await paused.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
    await paused.send({ type: 'CHECKOUT' });
    await paused.send({ type: 'PICKED' });
    await paused.send({ type: 'PAUSE' });
    await system.stop();
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('graph - the command writes each format, highlights an entity, and answers errors with exit codes', async () => {
    const svgOut = join(dir, 'o-1.svg');
    const before = storeData(join(dir, 'store'));
    // Each child process pays for tsx's start-up, so three cover the
    // wiring: success with --entity and --out, a ShardchartError, bad usage.
    const [live, bad, usage] = await Promise.all([
      cli(['graph', 'src/cli/order-machine.ts', 'orderMachine', '--format', 'svg', '--entity', 'order/o-1', '--store', join(dir, 'store'), '--out', svgOut]),
      cli(['graph', 'src/cli/order-machine.ts', 'orderStates']),
      cli(['graph', 'src/cli/order-machine.ts', 'orderMachine', '--entity', 'order/o-1']),
    ]);
    expect(live.code, live.stderr).toBe(0);
    expect(live.stdout).toBe('');
    // Reading an entity writes nothing: no snapshot, no fired timer.
    expect(storeData(join(dir, 'store')).equals(before)).toBe(true);
    const svg = readFileSync(svgOut, 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toMatch(/<g class="st active" data-state-id="order\.processing\.payment\.authorizing"/);
    expect(svg).toContain('due 22:13:20.400Z');

    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^shardchart: Export "orderStates" of src\/cli\/order-machine\.ts is not an XState v5 machine \(got an array\)/);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--entity and --store go together');
  });

  it('graph - every format draws the module machine', async () => {
    const base = { module: machineModule, exportName: 'orderMachine' } as const;
    expect(await capture({ ...base, format: 'mermaid' })).toMatch(/^stateDiagram-v2\n/);
    const dot = await capture({ ...base, format: 'dot' });
    expect(dot).toMatch(/^digraph "order" \{/);
    expect(runDot(dot).code).toBe(0);
    const graph = JSON.parse(await capture({ ...base, format: 'json' })) as GraphModel;
    expect(graph.nodes).toHaveLength(17);
    expect(graph.live).toBeUndefined();
    expect(await capture({ ...base, format: 'svg' })).toMatch(/^<svg[^>]*>\n<title>order<\/title>/);
  });

  it('graph - --entity replays the stored state: active states, pending timers, history values', async () => {
    const store = join(dir, 'store');
    const running = JSON.parse(
      await capture({ module: machineModule, exportName: 'orderMachine', format: 'json', entity: 'order/o-1', store }),
    ) as GraphModel;
    expect(running.live?.seq).toBe(2);
    expect(running.live?.active).toEqual([
      'order', 'order.processing', 'order.processing.payment', 'order.processing.payment.authorizing',
      'order.processing.shipping', 'order.processing.shipping.picking',
    ]);
    expect(running.edges.filter((e) => e.pending).map((e) => [e.source, e.pending!.dueAt])).toEqual([
      ['order.processing.payment.authorizing', start + 400],
    ]);

    // An id holding a slash: only the first one separates type from id.
    const paused = JSON.parse(
      await capture({ module: machineModule, exportName: 'orderMachine', format: 'json', entity: 'order/o/2', store }),
    ) as GraphModel;
    expect(paused.live?.active).toEqual(['order', 'order.paused']);
    expect(paused.live?.history).toEqual({
      'order.processing.resume': ['order.processing.payment.authorizing', 'order.processing.shipping.packing'],
    });
    expect(paused.edges.some((e) => e.pending)).toBe(false);
  });

  it('graph - a missing module or export is MACHINE_INVALID; a bad entity or store is a command error; a failed layout is GRAPH_FAILED', async () => {
    const base = { exportName: 'orderMachine', format: 'json' } as const;
    for (const options of [
      { ...base, module: join(dir, 'nothing-here.js') },
      { ...base, module: machineModule, exportName: 'missing' },
      { ...base, module: machineModule, exportName: 'orderStates' },
    ]) {
      await expect(capture(options)).rejects.toSatisfy(
        (err) => isShardchartError(err, 'MACHINE_INVALID') && (err as Error).name === 'DefinitionError',
      );
    }
    const entity = { ...base, module: machineModule };
    await expect(capture({ ...entity, entity: 'order', store: dir })).rejects.toThrow(GraphCommandError);
    await expect(capture({ ...entity, entity: 'order/nobody', store: join(dir, 'store') })).rejects.toThrow(
      /No entity order "nobody"/,
    );
    await expect(capture({ ...entity, entity: 'order/o-1', store: join(dir, 'absent') })).rejects.toThrow(/No store at/);
    await expect(capture({ ...entity, entity: 'order/o-1' })).rejects.toThrow(/--entity needs --store/);
    await expect(
      capture({ module: machineModule, exportName: 'orderMachine', format: 'svg', svg: { nodesMax: 3 } }),
    ).rejects.toSatisfy((err) => isShardchartError(err, 'GRAPH_FAILED'));
  });
});
