import { stat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine } from 'xstate';
import { lmdbStore } from '../../adapters/lmdb/index.js';
import { DefinitionError } from '../errors.js';
import {
  assertMachine,
  toDot,
  toGraph,
  toMermaid,
  toSvg,
  type SvgOptions,
} from '../graph/index.js';
import { recover } from '../persistence/recovery.js';
import type { StoredSnapshot } from '../persistence/types.js';

/** The formats `shardchart graph` writes. */
export const graphFormats = ['mermaid', 'dot', 'json', 'svg'] as const;
export type GraphFormat = (typeof graphFormats)[number];

export interface GraphCommandOptions {
  /** Path of the module that exports the machine. */
  module: string;
  /** The export holding the machine (`default` for the default export). */
  exportName: string;
  format: GraphFormat;
  /** `type/id` of an entity whose latest state is highlighted; needs `store`. */
  entity?: string;
  /** LMDB directory holding the entity. */
  store?: string;
  /** Write here instead of to `output`. */
  out?: string;
  /** SVG layout settings (programmatic use only). */
  svg?: Pick<SvgOptions, 'direction' | 'layoutOptions' | 'nodesMax'>;
  output?: { write(chunk: string): unknown };
}

/** A problem the user can fix (no store, no such entity); printed without a stack. */
export class GraphCommandError extends Error {
  override readonly name = 'GraphCommandError';
}

/**
 * `shardchart graph`: draws the machine a module exports as Mermaid, DOT,
 * JSON or SVG. With `entity` it reads that entity's latest state from an
 * LMDB store (snapshot plus a pure replay of the journal tail, nothing is
 * written and no timer fires) and highlights it: active states, pending
 * timers and history values.
 *
 * @throws DefinitionError `MACHINE_INVALID` when the module cannot be loaded or the export is not a machine.
 * @throws GraphError `GRAPH_FAILED` when the SVG layout fails.
 *
 * @example
 * ```ts
 * await runGraph({ module: 'dist/machines.js', exportName: 'orderMachine', format: 'mermaid' });
 * await runGraph({
 *   module: 'dist/machines.js', exportName: 'orderMachine', format: 'svg',
 *   entity: 'order/o-00042', store: '.shardchart/demo', out: 'o-00042.svg',
 * });
 * ```
 */
export async function runGraph(options: GraphCommandOptions): Promise<void> {
  const machine = await loadMachine(options.module, options.exportName);
  const snapshot =
    options.entity === undefined
      ? undefined
      : await loadEntity(machine, options.entity, options.store);
  const graphOptions = snapshot === undefined ? {} : { snapshot };
  let text: string;
  switch (options.format) {
    case 'mermaid':
      text = toMermaid(machine, graphOptions);
      break;
    case 'dot':
      text = toDot(machine, graphOptions);
      break;
    case 'json':
      text = `${JSON.stringify(toGraph(machine, graphOptions), null, 2)}\n`;
      break;
    case 'svg':
      text = await toSvg(machine, { ...options.svg, ...graphOptions });
      break;
  }
  if (options.out !== undefined) await writeFile(options.out, text);
  else (options.output ?? process.stdout).write(text);
}

/** Imports the module and returns the named export, which must be a machine. */
async function loadMachine(
  modulePath: string,
  exportName: string,
): Promise<AnyStateMachine> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(modulePath)).href)) as Record<string, unknown>;
  } catch (cause) {
    throw new DefinitionError(
      'MACHINE_INVALID',
      `Cannot load module ${modulePath}: ${cause instanceof Error ? cause.message : String(cause)}. Pass the path of a JavaScript module that exports the machine.`,
      { cause, details: { module: modulePath } },
    );
  }
  // A default export holding a map of machines counts too, as for inspect.
  const fallback = isRecord(mod.default) ? mod.default : {};
  const value = exportName in mod ? mod[exportName] : fallback[exportName];
  if (value === undefined) {
    const found = Object.keys({ ...fallback, ...mod }).filter((k) =>
      isMachineLike(mod[k] ?? fallback[k]),
    );
    throw new DefinitionError(
      'MACHINE_INVALID',
      `${modulePath} has no export named "${exportName}" (machines exported: ${found.length > 0 ? found.join(', ') : 'none'}).`,
      { details: { module: modulePath, exportName, found } },
    );
  }
  // An entity type config (`{ machine, timerResume }`) names its machine.
  const machine = isRecord(value) && 'machine' in value ? value.machine : value;
  assertMachine(machine, `Export "${exportName}" of ${modulePath}`);
  return machine;
}

/** The entity's latest state as a stored snapshot, rebuilt read-only. */
async function loadEntity(
  machine: AnyStateMachine,
  entity: string,
  dir: string | undefined,
): Promise<StoredSnapshot> {
  const cut = entity.indexOf('/');
  if (cut <= 0 || cut === entity.length - 1) {
    throw new GraphCommandError(
      `--entity expects <type>/<id>, got "${entity}".`,
    );
  }
  if (dir === undefined) {
    throw new GraphCommandError(
      '--entity needs --store <path>: the LMDB directory the entity lives in.',
    );
  }
  const key = { type: entity.slice(0, cut), id: entity.slice(cut + 1) };
  if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
    throw new GraphCommandError(
      `No store at ${dir}. Pass --store with the path given to lmdbStore({ path }).`,
    );
  }
  const store = lmdbStore({ path: dir });
  try {
    // The same recovery an activation runs, minus the actor: a snapshot
    // plus XState's pure transition over the journal tail. It only reads.
    const recovered = await recover(
      store,
      machine,
      key,
      { entityId: key.id, entityType: key.type },
      0,
    );
    if (recovered.state === undefined) {
      throw new GraphCommandError(
        `No entity ${key.type} "${key.id}" in ${dir}: it has no journal and no snapshot.`,
      );
    }
    return {
      v: 1,
      seq: recovered.seq,
      at: recovered.at,
      state: recovered.state,
      timers: recovered.timers,
      eventIds: [],
    };
  } finally {
    await store.close();
  }
}

function isMachineLike(value: unknown): boolean {
  try {
    assertMachine(isRecord(value) && 'machine' in value ? value.machine : value);
    return true;
  } catch {
    return false;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
