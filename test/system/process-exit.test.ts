/**
 * The system's timers are unref'd, so an idle system never holds a process
 * open; but a caller awaiting what only those timers can bring about must
 * not see Node exit under it (exit code 13, "unsettled top-level await").
 * Each case runs a real child process (exit-worker.ts).
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const worker = join(root, 'test', 'system', 'exit-worker.ts');

function run(mode: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--conditions=shardchart-source', worker, mode],
      { cwd: root, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('process exit', () => {
  it('exit - awaiting waitFor on an after timer, then stop(): the process stays up until both settle and exits 0', async () => {
    const r = await run('wait-timer');
    expect(r.stdout, r.stderr).toBe('reached "c"\nstopped\n');
    expect(r.code, r.stderr).toBe(0);
  });

  it('exit - an idle system that is never stopped does not hold the process open', async () => {
    const r = await run('idle');
    expect(r.stdout, r.stderr).toBe('idle\n');
    expect(r.code, r.stderr).toBe(0);
  });

  it('exit - a waitFor left pending across stop() does not hold the process open', async () => {
    const r = await run('wait-after-stop');
    expect(r.stdout, r.stderr).toBe('stopped\n');
    expect(r.code, r.stderr).toBe(0);
  });
});
