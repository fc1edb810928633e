/**
 * Every program in examples/ runs as a user would run it: a child process
 * importing `shardchart` by its package name. The `shardchart-source`
 * condition resolves that name to the TypeScript sources and tsx compiles
 * them, so no build is needed. An example must exit 0; the ones listed in
 * `expected` must also print what their README promises.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const examplesDir = join(root, 'examples');

const expected: Record<string, readonly string[]> = {
  quickstart: [
    'seq 1: tea',
    'retry: duplicate true, seq 1',
    'seq 3: done, tea, mug',
  ],
};

const examples = readdirSync(examplesDir, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .filter((name) => existsSync(join(examplesDir, name, 'main.ts')))
  .sort();

async function runExample(
  name: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [
        '--import',
        'tsx',
        '--conditions=shardchart-source',
        join('examples', name, 'main.ts'),
      ],
      { cwd: root, timeout: 60_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === 'number' ? e.code : -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? String(err),
    };
  }
}

describe('examples', () => {
  it('examples - the quickstart is among them', () => {
    expect(examples).toContain('quickstart');
  });

  it.each(examples)(
    'examples - %s runs by package name and exits 0',
    async (name) => {
      const result = await runExample(name);
      expect(result.code, result.stderr).toBe(0);
      for (const line of expected[name] ?? []) {
        expect(result.stdout, result.stderr).toContain(line);
      }
    },
    60_000,
  );
});
