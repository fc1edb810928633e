import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Logger } from 'pino';

import { lmdbStore } from '../../adapters/lmdb/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import {
  createActorSystem,
  createSimulatedClock,
  type ActionRegistry,
  type EntityDefinition,
  type EntityRef,
  type SimulatedClock,
  type Store,
} from '../../src/index.js';
import { quietLogger } from '../system/fixtures.js';

/** Lets microtasks and a few macrotasks run (actions, writes, replays). */
export const settle = async (turns = 3): Promise<void> => {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
};

/**
 * Polls `condition` until it holds. The bound only catches a hang; a slow
 * machine just takes more polls.
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what = 'condition',
  boundMs = 20_000,
): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > boundMs)
      throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A temporary LMDB directory and a way to (re)open a store on it. */
export function lmdbDir(): { path: string; open(): Store; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), 'shardchart-workflow-'));
  return {
    path,
    open: () => lmdbStore({ path }),
    cleanup: () => rmSync(path, { recursive: true, force: true }),
  };
}

export interface BootOptions {
  entities: Record<string, EntityDefinition>;

  actions?: ActionRegistry<any>;
  store?: Store;
  clock?: SimulatedClock;
  logger?: Logger;
  restart?: { attemptsMax?: number; backoffMs?: number };
  passivateAfterMs?: number;
  snapshotEvery?: number;
}

/** A system on a simulated clock; the memory store unless one is given. */
export async function boot(options: BootOptions) {
  const clock = options.clock ?? createSimulatedClock(1_000_000);
  const store = options.store ?? memoryStore();
  const system = await createActorSystem({
    name: 'wf',
    entities: options.entities,
    ...(options.actions ? { actions: options.actions } : {}),
    store,
    clock,
    logger: options.logger ?? quietLogger(),
    passivateAfterMs: options.passivateAfterMs ?? 0,
    ...(options.restart ? { restart: options.restart } : {}),
    ...(options.snapshotEvery ? { snapshotEvery: options.snapshotEvery } : {}),
  });
  return { system, clock, store };
}

/** The event types of an entity's journal, in order. */
export async function journalTypes(ref: EntityRef): Promise<string[]> {
  const types: string[] = [];
  for await (const e of ref.journal()) types.push(e.event.type);
  return types;
}

/** Counts runs of named effects; `record` is what an action's run calls. */
export class EffectLog {
  readonly runs: {
    name: string;
    key: string;
    params: unknown;
    attempt: number;
  }[] = [];

  record(name: string, key: string, params: unknown, attempt: number): void {
    this.runs.push({ name, key, params, attempt });
  }

  count(name: string): number {
    return this.runs.filter((r) => r.name === name).length;
  }
}
