/**
 * The `shardchart` command end to end, as a child process on a real LMDB
 * store in a temporary directory: a small demo run must print its summary
 * and prove that every entity survived the restart, and `inspect` must read
 * what the demo left behind.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProgress } from '../../src/cli/progress.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const entities = 200;

function cli(
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [
        '--import',
        'tsx',
        '--conditions=shardchart-source',
        'src/cli/main.ts',
        ...args,
      ],
      { cwd: root, timeout: 90_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A digest of the store's data files (LMDB lock files change on reads). */
function hashData(dir: string): string {
  const hash = createHash('sha256');
  for (const name of readdirSync(dir).sort()) {
    if (name.includes('lock')) continue;
    hash.update(name).update(readFileSync(join(dir, name)));
  }
  return hash.digest('hex');
}

describe('cli', () => {
  let dir: string;
  let demo: { code: number; stdout: string; stderr: string };

  beforeAll(async () => {
    dir = join(mkdtempSync(join(tmpdir(), 'shardchart-cli-')), 'demo');
    demo = await cli([
      'demo',
      '--entities',
      String(entities),
      '--seconds',
      '8',
      '--dir',
      dir,
    ]);
  }, 120_000);

  afterAll(() => {
    if (dir) rmSync(dirname(dir), { recursive: true, force: true });
  });

  it('demo - prints a summary and proves every entity survived the restart', () => {
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/events\/s/);
    expect(demo.stdout).toMatch(/p50 [\d.]+ ms · p99 [\d.]+ ms/);
    expect(demo.stdout).toMatch(/completed \d+/);
    expect(demo.stdout).toMatch(/timers fired +[1-9]/);
    expect(demo.stdout).toMatch(/([\d,]+) sent on purpose, \1 suppressed/);
    expect(demo.stdout).toContain(
      `survived: ${entities}/${entities} entities match`,
    );
  });

  it('inspect - prints the latest state and the journal of a demo order', async () => {
    const r = await cli(['inspect', 'order', 'o-00001', '--dir', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/state at seq \d+ \(latest\)/);
    expect(r.stdout).toMatch(/status +(active|done)/);
    expect(r.stdout).toContain('"orderId": "o-00001"');
    expect(r.stdout).toMatch(/journal \(\d+ entries\)/);
    expect(r.stdout).toMatch(/^ +1 +\S+Z +ADD_ITEM +o-00001:0:0$/m);
  });

  it('inspect - --at shows the state right after that seq', async () => {
    const r = await cli([
      'inspect',
      'order',
      'o-00001',
      '--at',
      '1',
      '--dir',
      dir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/state at seq 1 of \d+/);
    expect(r.stdout).toContain('"items": 1');
    expect(r.stdout).toMatch(/value +"cart"/);
  });

  it('inspect - a missing entity fails with exit code 1 and says why', async () => {
    const r = await cli(['inspect', 'order', 'nope', '--dir', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no journal and no snapshot');
  });

  it('inspect - reads without writing: the data file is unchanged', async () => {
    const before = hashData(dir);
    const r = await cli(['inspect', 'order', 'o-00002', '--dir', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(hashData(dir)).toBe(before);
  });

  it('cli - an unknown command prints usage and exits 2', async () => {
    const r = await cli(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
    expect(r.stderr).toContain('Usage: shardchart');
  });

  it('cli - an unknown flag prints usage and exits 2', async () => {
    const r = await cli(['demo', '--entitys', '5']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: shardchart');
  });

  it('cli - a malformed number prints usage and exits 2', async () => {
    const r = await cli(['inspect', 'order', 'o-1', '--at', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--at expects an integer');
  });

  it('cli - help prints usage and exits 0', async () => {
    const r = await cli(['help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('inspect <type> <id>');
  });
});

describe('progress', () => {
  const capture = (isTTY: boolean) => {
    const chunks: string[] = [];
    return {
      chunks,
      output: { isTTY, columns: 80, write: (c: string) => chunks.push(c) },
    };
  };

  it('progress - redraws one line in place on a terminal, throttled', () => {
    const { chunks, output } = capture(true);
    let now = 0;
    const progress = createProgress({
      total: 10,
      label: 'orders',
      output,
      now: () => now,
    });
    progress.update(1);
    progress.update(2); // within 100 ms of the last draw: skipped
    now = 150;
    progress.update(5, 'half');
    progress.finish(10);
    expect(chunks.filter((c) => c.startsWith('\r'))).toHaveLength(3);
    expect(chunks.join('')).toContain(' 50% 5/10  half');
    expect(chunks.join('')).toContain('100% 10/10');
    expect(chunks.at(-1)).toBe('\n');
    expect(chunks.every((c) => !c.includes('\n') || c === '\n')).toBe(true);
  });

  it('progress - prints plain periodic lines when not on a terminal', () => {
    const { chunks, output } = capture(false);
    let now = 0;
    const progress = createProgress({
      total: 4,
      label: 'orders',
      output,
      now: () => now,
    });
    progress.update(1);
    now = 1_000;
    progress.update(2); // within 2 s: skipped
    now = 2_500;
    progress.update(3);
    progress.finish(3, 'stopped early');
    expect(chunks).toEqual([
      'orders  25% 1/4\n',
      'orders  75% 3/4\n',
      'orders  75% 3/4  stopped early\n',
    ]);
  });
});
