import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import type { AnyStateMachine } from 'xstate';
import { createActorSystem, StoreError } from '../index.js';
import type {
  EntityDefinition,
  JournalEntry,
  PendingTimer,
  Store,
} from '../index.js';
import { lmdbStore } from '../../adapters/lmdb/index.js';
import { orderMachine } from './order-machine.js';

export interface InspectOptions {
  type: string;
  id: string;
  /** Show the state right after this seq instead of the latest. */
  at?: number;
  /** LMDB directory. */
  dir: string;
  /** A module whose exports map entity type -> machine. */
  module?: string;
  output?: { write(chunk: string): unknown };
}

/** A problem the user can fix (wrong path, unknown type); printed without a stack. */
export class InspectError extends Error {
  override readonly name = 'InspectError';
}

/**
 * `shardchart inspect`: prints an entity's state (value, context, seq,
 * status, pending timers) and its journal. It reads and never writes: the
 * state is rebuilt from the journal with `stateAt`, and the store is opened
 * through a read-only wrapper, so inspecting an order never fires its
 * overdue timers or snapshots it.
 *
 * @example
 * ```ts
 * await runInspect({ type: 'order', id: 'o-00042', dir: '.shardchart/demo' });
 * await runInspect({ type: 'order', id: 'o-00042', dir: '.shardchart/demo', at: 3 });
 * ```
 */
export async function runInspect(options: InspectOptions): Promise<void> {
  const out = options.output ?? process.stdout;
  const print = (line = ''): void => void out.write(`${line}\n`);
  const machines = await loadMachines(options.type, options.module);
  const isStore = (
    await stat(options.dir).catch(() => undefined)
  )?.isDirectory();
  if (!isStore) {
    throw new InspectError(
      `No store at ${options.dir}. Run \`shardchart demo\` first, or pass --dir with the path given to lmdbStore({ path }).`,
    );
  }
  const store = readOnly(lmdbStore({ path: options.dir }));
  const system = await createActorSystem({
    name: 'inspect',
    entities: machines,
    store,
    logger: pino({ level: 'error' }, pino.destination(2)),
    passivateAfterMs: 0,
  });
  try {
    const key = { type: options.type, id: options.id };
    const lastSeq = await store.journal.lastSeq(key);
    const snapshot = await store.snapshots.load(key);
    if (lastSeq === 0 && !snapshot) {
      throw new InspectError(
        `No entity ${options.type} "${options.id}" in ${options.dir}: it has no journal and no snapshot.`,
      );
    }
    const ref = system.entity(options.type, options.id);
    const seq = options.at ?? lastSeq;
    const state = await ref.stateAt(seq);

    const journal: JournalEntry[] = [];
    for await (const entry of ref.journal()) journal.push(entry);
    // The pending timers at `seq`: the latest set recorded at or before it.
    let timers: readonly PendingTimer[] | undefined =
      snapshot && snapshot.seq <= seq ? snapshot.timers : undefined;
    let timersSeq = snapshot && snapshot.seq <= seq ? snapshot.seq : -1;
    for (const entry of journal) {
      if (entry.seq <= seq && entry.seq > timersSeq && entry.timers) {
        timers = entry.timers;
        timersSeq = entry.seq;
      }
    }

    print(`${options.type} ${options.id}  (${options.dir})`);
    print(
      `state at seq ${seq}${seq === lastSeq ? ' (latest)' : ` of ${lastSeq}`}`,
    );
    print(`  status   ${state.status}`);
    print(`  value    ${JSON.stringify(state.value)}`);
    print(`  context  ${indent(JSON.stringify(state.context, null, 2))}`);
    if (state.output !== undefined) {
      print(`  output   ${indent(JSON.stringify(state.output, null, 2))}`);
    }
    print(`  timers   ${formatTimers(timers ?? [])}`);
    if (snapshot) {
      print(`  snapshot seq ${snapshot.seq} at ${iso(snapshot.at)}`);
    }
    print();
    print(`journal (${journal.length} entries)`);
    const typeWidth = Math.max(5, ...journal.map((e) => e.event.type.length));
    print(`    seq  ${'at'.padEnd(24)}  ${'event'.padEnd(typeWidth)}  eventId`);
    for (const entry of journal) {
      const mark = entry.seq === seq && seq !== lastSeq ? '>' : ' ';
      print(
        `${mark}${String(entry.seq).padStart(6)}  ${iso(entry.at).padEnd(24)}  ${entry.event.type.padEnd(typeWidth)}  ${entry.eventId ?? '-'}`,
      );
    }
  } finally {
    await system.stop();
  }
}

/** The machines to register: the demo's order machine, or a user module's exports. */
async function loadMachines(
  type: string,
  modulePath: string | undefined,
): Promise<Record<string, EntityDefinition>> {
  if (modulePath === undefined) {
    if (type === 'order') return { order: orderMachine };
    throw new InspectError(
      `No machine for entity type "${type}": the built-in one is "order" (the demo). Pass --module <file.js> exporting { ${type}: machine }.`,
    );
  }
  const url = pathToFileURL(resolve(modulePath)).href;
  const mod = (await import(url)) as Record<string, unknown>;
  // Accept named exports (`export const order = orderMachine`) and a
  // default export holding the same map.
  const candidates: Record<string, unknown> = {
    ...(isPlainObject(mod.default) ? mod.default : {}),
    ...mod,
  };
  const machines: Record<string, EntityDefinition> = {};
  for (const [name, value] of Object.entries(candidates)) {
    if (isMachine(value)) machines[name] = value;
    else if (isPlainObject(value) && isMachine(value.machine)) {
      machines[name] = value as unknown as EntityDefinition;
    }
  }
  if (!(type in machines)) {
    const found = Object.keys(machines);
    throw new InspectError(
      `${modulePath} exports no machine named "${type}" (found: ${found.length > 0 ? found.join(', ') : 'none'}). Export { ${type}: machine }.`,
    );
  }
  return machines;
}

function isMachine(value: unknown): value is AnyStateMachine {
  const v = value as Partial<AnyStateMachine> | null | undefined;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.transition === 'function' &&
    typeof v.getInitialSnapshot === 'function'
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.getPrototypeOf(value) === Object.prototype
  );
}

/**
 * The store seen through a window: reads pass, writes are refused, and the
 * timer index looks empty so the system does not wake entities with due
 * timers when it starts.
 */
function readOnly(store: Store): Store {
  const refuse = async (): Promise<never> => {
    throw new StoreError(
      'STORE_FAILED',
      'shardchart inspect opens the store read-only; nothing may write to it.',
    );
  };
  return {
    kind: store.kind,
    durable: store.durable,
    journal: {
      append: refuse,
      read: (key, fromSeq, toSeq) => store.journal.read(key, fromSeq, toSeq),
      lastSeq: (key) => store.journal.lastSeq(key),
    },
    snapshots: {
      load: (key) => store.snapshots.load(key),
      save: refuse,
    },
    open: () => store.open(),
    write: refuse,
    scanWakeups: async function* () {},
    scanEntities: (type) => store.scanEntities(type),
    appendDeadLetter: refuse,
    readDeadLetters: (options) => store.readDeadLetters(options),
    close: () => store.close(),
    sizeBytes: () => store.sizeBytes(),
  };
}

function formatTimers(timers: readonly PendingTimer[]): string {
  if (timers.length === 0) return 'none';
  return timers
    .map((t) => `${t.event.type} due ${iso(t.dueAt)} (${t.delayMs} ms delay)`)
    .join('\n           ');
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function indent(text: string): string {
  return text.split('\n').join('\n           ');
}
