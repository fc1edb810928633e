/**
 * The child program of the crash-safety test (`crash.test.ts`). It opens an
 * LMDB store, drives ~50 entities with concurrent sends and reports every
 * resolved send on stdout, until the test kills it with SIGKILL.
 *
 *   node --import tsx --conditions=shardchart-source \
 *     test/integration/crash-worker.ts <dir> <seed> [--round=R] [--prev=M1,M2,...]
 *       [--events=N]
 *
 * Round R sends new events `s<seed>-r<R>-<i>`, and also re-sends events of
 * earlier rounds (`--prev` gives, per earlier round, the highest index that
 * round may have sent): the tail that was in flight when the previous worker
 * was killed, then random earlier ones. Every event is a pure function of
 * (seed, round, index), so a re-send carries the same entity, payload and
 * event id as the original.
 *
 * Output, one line per resolved send, written synchronously so a SIGKILL
 * never loses an answered send:
 *
 *   ACK <type> <id> <eventId> <seq> <new|dup>
 *   ERR <type> <id> <eventId> <code> <message>
 *   DONE <sent>
 *
 * The machine and the event generator are exported for the verifier.
 */
import { writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { pino } from 'pino';
import { assign, setup } from 'xstate';

import { createActorSystem } from '../../src/index.js';
import { lmdbStore } from '../../adapters/lmdb/index.js';
import { createSeededRandom as prng } from '../../src/system/random.js';

export const ENTITY_TYPE = 'counter' as const;
export const ENTITY_COUNT = 50;
/** New events per round; bounds the dedupe window needed (see DEDUPE_WINDOW). */
export const EVENTS_PER_ROUND = 6_000;
export const CONCURRENCY = 16;
export const SNAPSHOT_EVERY = 5;
export const BLINK_MS = 40;
/**
 * Re-sent ids must still be inside the dedupe window: an entity receives
 * about EVENTS_PER_ROUND / ENTITY_COUNT new events per round (120), plus
 * re-sends, over at most three rounds.
 */
export const DEDUPE_WINDOW = 4_096;
/** LRU passivation kicks in, so snapshots on passivation are exercised too. */
export const LIVE_ENTITIES_MAX = 32;

export interface CounterContext {
  /** Every applied `n`, in order: a double application shows as a repeat. */
  applied: number[];
  sum: number;
  /** Delayed `blinker` transitions that fired. */
  ticks: number;
}

export type CounterEvent = { type: 'ADD'; n: number };

/**
 * Two parallel regions: `counting` records every ADD; `blinker` switches on
 * with an ADD and back off after BLINK_MS, so delayed events are pending
 * at most moments and are journaled as they fire.
 */
export const counterMachine = setup({
  types: {
    context: {} as CounterContext,
    events: {} as CounterEvent,
    input: {} as { entityId: string; entityType: string },
  },
}).createMachine({
  id: 'counter',
  type: 'parallel',
  context: { applied: [], sum: 0, ticks: 0 },
  states: {
    counting: {
      on: {
        ADD: {
          actions: assign({
            applied: ({ context, event }) => [...context.applied, event.n],
            sum: ({ context, event }) => context.sum + event.n,
          }),
        },
      },
    },
    blinker: {
      initial: 'off',
      states: {
        off: { on: { ADD: 'on' } },
        on: {
          after: {
            [BLINK_MS]: {
              target: 'off',
              actions: assign({ ticks: ({ context }) => context.ticks + 1 }),
            },
          },
        },
      },
    },
  },
});

/** Options shared by the worker and the in-process verifier. */
export function systemOptions(dir: string) {
  return {
    name: 'crash',
    entities: { [ENTITY_TYPE]: counterMachine },
    // A checkpoint every 64 log records, so kills land before, during and
    // after checkpoints and every restart replays part of the log.
    store: lmdbStore({ path: dir, checkpointRecords: 64 }),
    snapshotEvery: SNAPSHOT_EVERY,
    dedupeWindow: DEDUPE_WINDOW,
    liveEntitiesMax: LIVE_ENTITIES_MAX,
    passivateAfterMs: 0,
    // pino writes to stdout by default; keep stdout for ACK lines only.
    logger: pino({ level: 'warn' }, pino.destination(2)),
  };
}


function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export interface PlannedEvent {
  id: string;
  eventId: string;
  event: CounterEvent;
}

/** Event `index` of `round`: the same inputs always give the same event. */
export function plannedEvent(
  seed: number,
  round: number,
  index: number,
): PlannedEvent {
  const entity = hash32(`${seed}:${round}:${index}`) % ENTITY_COUNT;
  return {
    id: `c-${entity}`,
    eventId: `s${seed}-r${round}-${index}`,
    event: { type: 'ADD', n: round * 1_000_000 + index },
  };
}

/** The `n` an event id stands for, or undefined if it is not one of ours. */
export function nOfEventId(eventId: string): number | undefined {
  const m = /^s\d+-r(\d+)-(\d+)$/.exec(eventId);
  return m ? Number(m[1]) * 1_000_000 + Number(m[2]) : undefined;
}

/** Plans round `round`: new events interleaved with re-sends of older ones. */
export function* plan(
  seed: number,
  round: number,
  prevMax: readonly number[],
  events = EVENTS_PER_ROUND,
): Generator<PlannedEvent> {
  const rand = prng(hash32(`plan:${seed}:${round}`));
  // First the tail the previous worker may have had in flight when killed:
  // each of those may be durable-but-unanswered, or not applied at all.
  const last = prevMax.length;
  if (last > 0) {
    const max = prevMax[last - 1]!;
    for (let j = Math.max(0, max - 2 * CONCURRENCY); j <= max; j++) {
      yield plannedEvent(seed, last, j);
    }
  }
  for (let i = 0; i < events; i++) {
    if (last > 0 && rand() < 0.15) {
      const r = 1 + Math.floor(rand() * last);
      const j = Math.floor(rand() * (prevMax[r - 1]! + 1));
      yield plannedEvent(seed, r, j);
    }
    yield plannedEvent(seed, round, i);
  }
}

function writeLine(line: string): void {
  const buf = Buffer.from(line + '\n');
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(1, buf, off);
    } catch (err) {
      // A non-blocking stdout pipe can refuse a write for a moment.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const [dir, seedArg, ...flags] = argv;
  if (!dir || !seedArg) {
    throw new Error(
      'usage: crash-worker.ts <dir> <seed> [--round=R] [--prev=M1,M2] [--events=N]',
    );
  }
  const seed = Number(seedArg);
  let round = 1;
  let prevMax: number[] = [];
  let events = EVENTS_PER_ROUND;
  for (const flag of flags) {
    const [k, v = ''] = flag.split('=');
    if (k === '--round') round = Number(v);
    else if (k === '--events') events = Math.min(Number(v), EVENTS_PER_ROUND);
    else if (k === '--prev') prevMax = v ? v.split(',').map(Number) : [];
    else throw new Error(`unknown flag ${flag}`);
  }
  if (prevMax.length !== round - 1) {
    throw new Error(`--prev needs ${round - 1} entries, got ${prevMax.length}`);
  }

  const system = await createActorSystem(systemOptions(dir));
  const planned = plan(seed, round, prevMax, events);
  let sent = 0;
  // Each sender takes the next planned event synchronously and calls send()
  // at once, so send order per entity follows plan order.
  const sender = async (): Promise<void> => {
    for (;;) {
      const next = planned.next();
      if (next.done) return;
      const { id, eventId, event } = next.value;
      sent++;
      try {
        const r = await system.entity(ENTITY_TYPE, id).send(event, { eventId });
        writeLine(
          `ACK ${ENTITY_TYPE} ${id} ${eventId} ${r.seq} ${r.duplicate ? 'dup' : 'new'}`,
        );
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'UNCAUGHT';
        const message = String((err as Error).message).replace(/\s+/g, ' ');
        writeLine(`ERR ${ENTITY_TYPE} ${id} ${eventId} ${code} ${message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, sender));
  writeLine(`DONE ${sent}`);
  await system.stop();
}

const isMain =
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(
        `crash-worker failed: ${String((err as Error)?.stack ?? err)}\n`,
      );
      process.exit(1);
    },
  );
}

