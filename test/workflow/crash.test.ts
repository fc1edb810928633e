/**
 * Crash and replay of a workflow (issue 6, "Tests"): a real child process
 * (`crash-worker.ts`) runs the `ledger` workflow (debit, credit, notify) on
 * LMDB and SIGKILLs itself at a chosen point; a second process opens the
 * same directory, touches nothing, and must see the workflow wake by itself
 * and finish. Every action run is appended to a file, so the test counts
 * runs across both processes.
 *
 * The documented counts: an action whose result was journaled never runs
 * again; an action that ran but whose result was not journaled runs again
 * after recovery, with the same idempotency key and the same params (at
 * least once).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { lmdbStore } from '../../adapters/lmdb/index.js';
import type { EffectLine } from './crash-worker.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const workerPath = fileURLToPath(new URL('./crash-worker.ts', import.meta.url));
/** Only catches a hung worker; a slow machine just takes longer. */
const WORKER_BOUND_MS = 60_000;

const dirs: string[] = [];
afterAll(() =>
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true })),
);

interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runWorker(args: string[]): Promise<WorkerExit> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--conditions=shardchart-source',
        workerPath,
        ...args,
      ],
      {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const watchdog = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`worker ${args.join(' ')} hung; stderr: ${stderr}`));
    }, WORKER_BOUND_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(watchdog);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function readEffects(file: string): EffectLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as EffectLine);
}

async function journalOf(dir: string): Promise<{ type: string }[]> {
  const store = lmdbStore({ path: dir });
  await store.open();
  const events: { type: string }[] = [];
  for await (const e of store.journal.read({ type: 'ledger', id: 'l-1' }, 1))
    events.push(e.event);
  await store.close();
  return events;
}

/** Runs the kill round and the resume round; returns the effects and the final output. */
async function crashAndResume(killPoint: string) {
  const dir = mkdtempSync(join(tmpdir(), 'shardchart-wf-crash-'));
  dirs.push(dir);
  const effects = join(dir, 'effects.jsonl');
  const killed = await runWorker([
    join(dir, 'db'),
    effects,
    'start',
    killPoint,
  ]);
  expect(
    killed.signal,
    `the first worker dies by SIGKILL; stderr: ${killed.stderr}`,
  ).toBe('SIGKILL');
  const resumed = await runWorker([join(dir, 'db'), effects, 'resume']);
  expect(resumed.code, resumed.stderr).toBe(0);
  const done = /^DONE (.*)$/m.exec(resumed.stdout);
  expect(done, resumed.stdout).not.toBeNull();
  return {
    effects: readEffects(effects),
    output: JSON.parse(done![1]!) as unknown,
    journal: await journalOf(join(dir, 'db')),
  };
}

describe('workflow crash', () => {
  it('crash - SIGKILL after an action ran but before its result was journaled: it runs once more, same key and params; the rest once', async () => {
    const { effects, output, journal } = await crashAndResume('debit-ran');
    const debits = effects.filter((e) => e.name === 'debit');
    expect(debits).toHaveLength(2);
    expect(new Set(debits.map((d) => d.pid)).size).toBe(2);
    expect(debits[1]!.key).toBe(debits[0]!.key);
    expect(debits[1]!.params).toEqual(debits[0]!.params);
    expect(effects.filter((e) => e.name === 'credit')).toHaveLength(1);
    expect(effects.filter((e) => e.name === 'notify')).toHaveLength(1);
    expect(output).toEqual({ debit: 'd-a-25', credit: 'c-b-25' });
    // One result per action in the journal, whatever ran twice.
    expect(
      journal
        .filter((e) => e.type.startsWith('xstate.done.actor.'))
        .map((e) => e.type),
    ).toEqual([
      'xstate.done.actor.workflow.action.1',
      'xstate.done.actor.workflow.action.4',
      'xstate.done.actor.workflow.action.6',
    ]);
  });

  it('crash - SIGKILL after an action result was journaled: no action runs twice', async () => {
    const { effects, output } = await crashAndResume('credit-start');
    expect(effects.map((e) => e.name)).toEqual(['debit', 'credit', 'notify']);
    expect(new Set(effects.map((e) => e.pid)).size).toBe(2);
    expect(output).toEqual({ debit: 'd-a-25', credit: 'c-b-25' });
  });
});
