/**
 * Benchmark runner:
 * `npm run bench [scenario] [-- --seconds S --entities N --rounds R]`.
 * Scenarios: throughput, activation, heap, workflow, cluster (default: all,
 * in that order). Every figure is reported next to a baseline measured in
 * the same run (plain XState, peer libraries), plus the bars of the issues. A missed bar is reported, never
 * failed: benchmarks do not gate tests (STYLE.md item 15).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { activation } from './activation.bench.js';
import { cluster } from './cluster.bench.js';
import { heap } from './heap.bench.js';
import { throughput } from './throughput.bench.js';
import { workflow } from './workflow.bench.js';

export interface BenchContext {
  /** Entities in the throughput and heap scenarios. */
  entities: number;
  sendersMax: number;
  /** Timed run per throughput subject and round. */
  seconds: number;
  /** Interleaved throughput rounds; the median is reported. */
  rounds: number;
  warmupSeconds: number;
  /** Entities activated one by one in the activation scenario. */
  activations: number;
  /** A full collection (needs --expose-gc; a no-op without it). */
  gc(): void;
  hasGc: boolean;
  /** For every system: errors only, so the memory store's warning stays out of the tables. */
  logger: Logger;
}

export interface Bar {
  name: string;
  measured: string;
  target: string;
  met: boolean;
}

/** What a scenario reports: one table and the bars it checks. */
export interface Section {
  title: string;
  header: string[];
  rows: string[][];
  bars: Bar[];
  notes?: string[];
}

const scenarios: Record<string, (ctx: BenchContext) => Promise<Section>> = {
  throughput,
  activation,
  heap,
  workflow,
  cluster,
};

function machineLine(): string {
  let cpu = 'unknown CPU';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
  } catch {
    // Not Linux: the CPU model stays unknown; the rest still applies.
  }
  const date = new Date().toISOString().slice(0, 10);
  // The load average at start tells whether other work shared the cores.
  const load = loadavg()[0]!.toFixed(2);
  return `${cpu}, ${availableParallelism()} cores, Node ${process.version}, ${process.platform}/${process.arch}, ${date}, load ${load}${damonNote()}`;
}

/**
 * Whether the kernel's DAMON is sampling memory, and how often. On the VM
 * these figures come from, a DAMON context on physical memory (`paddr`,
 * with a pageout scheme) samples every 500 ms, and each sampling stalls
 * every process for several milliseconds at once: latency tails follow it
 * (bench/README.md, "Figures of session 6").
 */
function damonNote(): string {
  const root = '/sys/kernel/mm/damon/admin/kdamonds';
  const running: string[] = [];
  try {
    for (const kdamond of readdirSync(root)) {
      if (!/^\d+$/.test(kdamond)) continue;
      const dir = join(root, kdamond);
      if (readFileSync(join(dir, 'state'), 'utf8').trim() !== 'on') continue;
      for (const context of readdirSync(join(dir, 'contexts'))) {
        if (!/^\d+$/.test(context)) continue;
        const at = join(dir, 'contexts', context);
        const ops = readFileSync(join(at, 'operations'), 'utf8').trim();
        const sampleUs = Number(
          readFileSync(
            join(at, 'monitoring_attrs', 'intervals', 'sample_us'),
            'utf8',
          ),
        );
        running.push(`${ops} every ${sampleUs / 1_000} ms`);
      }
    }
  } catch {
    // No DAMON (or no sysfs): nothing to report.
  }
  return running.length === 0
    ? ''
    : `; kernel DAMON sampling memory (${running.join(', ')}): expect machine-wide stalls`;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)),
  );
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ');
  console.log(`  ${line(header)}`);
  console.log(`  ${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const row of rows) console.log(`  ${line(row)}`);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      seconds: { type: 'string' },
      entities: { type: 'string' },
      rounds: { type: 'string' },
    },
  });
  const chosen = positionals.length > 0 ? positionals : Object.keys(scenarios);
  const unknown = chosen.filter((name) => !(name in scenarios));
  if (unknown.length > 0) {
    console.error(
      `unknown scenario ${unknown.join(', ')}; choose from: ${Object.keys(scenarios).join(', ')}`,
    );
    process.exitCode = 2;
    return;
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  const ctx: BenchContext = {
    entities: Number(values.entities ?? 10_000),
    sendersMax: 64,
    seconds: Number(values.seconds ?? 4),
    rounds: Number(values.rounds ?? 3),
    warmupSeconds: 1,
    activations: 1_000,
    hasGc: gc !== undefined,
    logger: pino({ level: 'error' }),
    gc: () => {
      // Twice: the first pass can leave objects that only die in the second
      // (weak references, finalizers).
      gc?.();
      gc?.();
    },
  };
  if (!ctx.hasGc) {
    console.warn(
      'global.gc is missing: run with --expose-gc (npm run bench does).',
    );
  }
  console.log(`shardchart bench: ${machineLine()}`);
  const bars: Bar[] = [];
  for (const name of chosen) {
    const section = await scenarios[name]!(ctx);
    console.log(`\n${section.title}`);
    printTable(section.header, section.rows);
    for (const note of section.notes ?? []) console.log(`  ${note}`);
    bars.push(...section.bars);
  }
  if (bars.length > 0) {
    console.log('\nbars (issues 3, 5 and 6)');
    printTable(
      ['bar', 'measured', 'target', 'result'],
      bars.map((b) => [b.name, b.measured, b.target, b.met ? 'met' : 'MISSED']),
    );
  }
}

await main();
