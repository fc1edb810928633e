/**
 * Crash safety (DESIGN.md guarantees 1, 2, 3 and 6; issue 3 item 7).
 *
 * Goal: an answered send survives kill -9, nothing is applied twice, the
 * journal has no gaps, and timers pending at the crash fire exactly once.
 *
 * Method: per seed, a child process (`crash-worker.ts`) drives 50 entities on
 * LMDB with 16 sends in flight and prints one line per resolved send. The test
 * kills it with SIGKILL at a seeded moment, starts a second worker on the same
 * directory (new events plus re-sends of the first worker's events, above all
 * the ones that were in flight), kills that one too, then opens the store
 * in-process and checks every acknowledged event against the recovered
 * journals and states. Nothing here depends on how fast the machine is: the
 * kill moments are relative to the first acknowledgement, and whatever
 * number of events got through is what gets checked.
 *
 * `SHARDCHART_CHAOS_SEEDS=N` runs N seeds (default 3).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { createActorSystem } from '../../src/index.js';
import type { JournalEntry } from '../../src/persistence/types.js';
import {
  CONCURRENCY,
  ENTITY_COUNT,
  ENTITY_TYPE,
  EVENTS_PER_ROUND,
  nOfEventId,
  plannedEvent,
  systemOptions,
  type CounterContext,
} from './crash-worker.js';
import { createSeededRandom as prng } from '../../src/system/random.js';

const KILL_ROUNDS = 2;
const KILL_AFTER_MS_MIN = 150;
const KILL_AFTER_MS_MAX = 700;
/** New events of the last worker, which is not killed and must finish. */
const FINAL_EVENTS = 1_500;
/** Generous bounds that only catch a hung worker, never a slow one. */
const FIRST_ACK_WAIT_MS = 60_000;
const STALL_MS = 30_000;

const seedCount = Math.max(1, Number(process.env.SHARDCHART_CHAOS_SEEDS) || 3);
const seeds = Array.from({ length: seedCount }, (_, i) => i + 1);

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const workerPath = fileURLToPath(new URL('./crash-worker.ts', import.meta.url));

const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(
    tempDirs.map((d) => rm(d, { recursive: true, force: true })),
  );
});

interface Ack {
  round: number;
  id: string;
  eventId: string;
  seq: number;
  dup: boolean;
}

interface WorkerRun {
  acks: Ack[];
  errors: string[];
  /** Ms between the first ACK and SIGKILL; undefined if it finished first. */
  killedAfterMs?: number;
  finished: boolean;
  stderr: string;
}

/**
 * Runs one worker. With `killAfterMs` it is SIGKILLed that long after its
 * first ACK; without, it must send `events` new events and exit by itself.
 */
function runWorker(
  dir: string,
  seed: number,
  round: number,
  prevMax: readonly number[],
  killAfterMs: number | undefined,
  events?: number,
): Promise<WorkerRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--conditions=shardchart-source',
        workerPath,
        dir,
        String(seed),
        `--round=${round}`,
        `--prev=${prevMax.join(',')}`,
        ...(events === undefined ? [] : [`--events=${events}`]),
      ],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const run: WorkerRun = {
      acks: [],
      errors: [],
      finished: false,
      stderr: '',
    };
    let pending = '';
    let killTimer: NodeJS.Timeout | undefined;
    let firstAckAt: number | undefined;
    let killedAt: number | undefined;
    // A watchdog, not a speed limit: it only fires when the worker stops
    // answering altogether (a hung send, a livelocked event loop).
    let lastAnswerAt = Date.now();
    const watchdog = setInterval(() => {
      const quietMs = Date.now() - lastAnswerAt;
      const limit = run.acks.length === 0 ? FIRST_ACK_WAIT_MS : STALL_MS;
      if (quietMs < limit || killedAt !== undefined) return;
      clearInterval(watchdog);
      child.kill('SIGKILL');
      reject(
        new Error(
          `worker round ${round} stalled: no answer for ${quietMs} ms after ${run.acks.length} acks and ${run.errors.length} errors\n${run.stderr.slice(-4_000)}`,
        ),
      );
    }, 1_000);

    const onLine = (line: string): void => {
      const parts = line.split(' ');
      if (parts[0] === 'ACK') {
        const [, type, id, eventId, seq, flag] = parts;
        expect(type).toBe(ENTITY_TYPE);
        run.acks.push({
          round,
          id: id!,
          eventId: eventId!,
          seq: Number(seq),
          dup: flag === 'dup',
        });
        lastAnswerAt = Date.now();
        if (firstAckAt === undefined && killAfterMs !== undefined) {
          firstAckAt = Date.now();
          killTimer = setTimeout(() => {
            killedAt = Date.now();
            child.kill('SIGKILL');
          }, killAfterMs);
        }
      } else if (parts[0] === 'ERR') {
        run.errors.push(line);
        lastAnswerAt = Date.now();
      } else if (parts[0] === 'DONE') {
        run.finished = true;
      }
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        onLine(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
      // A partial last line (cut by the kill) is never an answered send.
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      run.stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearInterval(watchdog);
      clearTimeout(killTimer);
      if (signal === 'SIGKILL' && killedAt !== undefined) {
        run.killedAfterMs = killedAt - (firstAckAt ?? killedAt);
        resolve(run);
      } else if (code === 0 && run.finished) {
        resolve(run);
      } else {
        reject(
          new Error(
            `worker round ${round} exited by itself (code ${code}, signal ${signal})\n${run.stderr.slice(-4_000)}`,
          ),
        );
      }
    });
  });
}

/** Round and index of one of our event ids. */
function parseEventId(eventId: string): { round: number; index: number } {
  const m = /^s\d+-r(\d+)-(\d+)$/.exec(eventId);
  expect(m, `event id ${eventId}`).not.toBeNull();
  return { round: Number(m![1]), index: Number(m![2]) };
}

async function verify(
  dir: string,
  seed: number,
  acks: readonly Ack[],
): Promise<{ events: number; timers: number; resent: number }> {
  // LRU passivation is the workers' business; the verifier keeps every
  // entity it reads in memory.
  const system = await createActorSystem({
    ...systemOptions(dir),
    liveEntitiesMax: 10_000,
  });
  try {
    const seen = new Map<string, { id: string; seq: number }>();
    let events = 0;
    let timers = 0;
    const journals = new Map<string, JournalEntry[]>();

    for (let e = 0; e < ENTITY_COUNT; e++) {
      const id = `c-${e}`;
      const ref = system.entity(ENTITY_TYPE, id);
      // A blink pending at the crash must fire after recovery (at once,
      // being overdue), so every entity settles with the blinker off.
      const state = await ref.waitFor(
        (s) => (s.value as { blinker: string }).blinker === 'off',
        { timeoutMs: 10_000 },
      );
      const ctx: CounterContext = state.context;
      const entries: JournalEntry[] = [];
      for await (const entry of ref.journal()) entries.push(entry);
      journals.set(id, entries);

      entries.forEach((entry, k) =>
        expect(entry.seq, `${id}: journal gap or reorder at ${k}`).toBe(k + 1),
      );
      expect(state.seq, `${id}: state seq vs journal`).toBe(entries.length);

      const applied: number[] = [];
      let addsSinceTimer = 0;
      let ticks = 0;
      for (const entry of entries) {
        if (entry.event.type === 'ADD') {
          const eventId = entry.eventId;
          expect(
            eventId,
            `${id}: ADD at seq ${entry.seq} has no event id`,
          ).toBeTypeOf('string');
          const earlier = seen.get(eventId!);
          expect(
            earlier,
            `${id}: event ${eventId} applied twice (seq ${entry.seq}, before at ${earlier?.id} seq ${earlier?.seq})`,
          ).toBeUndefined();
          seen.set(eventId!, { id, seq: entry.seq });
          const n = entry.event.n as number;
          expect(nOfEventId(eventId!), `${id}: payload of ${eventId}`).toBe(n);
          const { round, index } = parseEventId(eventId!);
          expect(plannedEvent(seed, round, index).id, `${eventId} entity`).toBe(
            id,
          );
          applied.push(n);
          addsSinceTimer++;
        } else {
          expect(entry.event.type, `${id}: seq ${entry.seq}`).toMatch(
            /^xstate\.after\./,
          );
          // The blinker is switched on only by an ADD, so two timer entries
          // without an ADD between them mean a timer fired twice.
          expect(
            addsSinceTimer,
            `${id}: timer at seq ${entry.seq} fired twice (no ADD since the last one)`,
          ).toBeGreaterThan(0);
          addsSinceTimer = 0;
          ticks++;
        }
      }
      expect(ctx.applied, `${id}: context.applied vs journal`).toEqual(applied);
      expect(new Set(ctx.applied).size, `${id}: a value applied twice`).toBe(
        ctx.applied.length,
      );
      expect(ctx.sum).toBe(applied.reduce((a, b) => a + b, 0));
      expect(ctx.ticks, `${id}: ticks vs journaled timers`).toBe(ticks);

      // Replay from the journal agrees with the recovered live state.
      const replayed = await ref.stateAt(state.seq);
      expect({ value: replayed.value, context: replayed.context }).toEqual({
        value: state.value,
        context: state.context,
      });
      events += applied.length;
      timers += ticks;
    }

    // Every answered send is in the recovered state, where it was answered.
    const answeredNew = new Map<string, Ack>();
    for (const ack of acks) {
      const at = seen.get(ack.eventId);
      expect(
        at,
        `acknowledged ${ack.eventId} (round ${ack.round}, ${ack.id} seq ${ack.seq}) lost`,
      ).toBeDefined();
      expect(at!.id).toBe(ack.id);
      if (ack.dup) {
        expect(
          at!.seq,
          `${ack.eventId}: dup answer before its entry`,
        ).toBeLessThanOrEqual(ack.seq);
      } else {
        expect(at!.seq, `${ack.eventId}: answered seq vs journal`).toBe(
          ack.seq,
        );
        const prior = answeredNew.get(ack.eventId);
        expect(
          prior,
          `${ack.eventId} answered as new twice (rounds ${prior?.round} and ${ack.round})`,
        ).toBeUndefined();
        answeredNew.set(ack.eventId, ack);
      }
    }
    // An event answered in an earlier round must come back as a duplicate.
    const firstAnswer = new Map<string, Ack>();
    for (const ack of acks) {
      const first = firstAnswer.get(ack.eventId);
      if (first === undefined) firstAnswer.set(ack.eventId, ack);
      else
        expect(ack.dup, `${ack.eventId} re-applied after an answer`).toBe(true);
    }

    // Order: one worker's new events to one entity are applied in send order.
    for (const round of new Set(acks.map((a) => a.round))) {
      const lastIndex = new Map<string, { index: number; seq: number }>();
      const ordered = acks
        .filter((a) => a.round === round && !a.dup)
        .map((a) => ({ a, ...parseEventId(a.eventId) }))
        .filter((x) => x.round === round)
        .sort((x, y) => x.index - y.index);
      for (const { a, index } of ordered) {
        const prev = lastIndex.get(a.id);
        if (prev) {
          expect(
            a.seq,
            `${a.id}: ${a.eventId} applied before an event sent earlier (index ${prev.index})`,
          ).toBeGreaterThan(prev.seq);
        }
        lastIndex.set(a.id, { index, seq: a.seq });
      }
    }

    // Re-sending answered events now changes nothing.
    const rand = prng(seed * 7919);
    const sample = [...firstAnswer.values()]
      .filter(() => rand() < 0.2)
      .slice(0, 200);
    for (const ack of sample) {
      const { round, index } = parseEventId(ack.eventId);
      const planned = plannedEvent(seed, round, index);
      const ref = system.entity(ENTITY_TYPE, planned.id);
      const r = await ref.send(planned.event, { eventId: planned.eventId });
      expect(r.duplicate, `${ack.eventId}: re-send after recovery`).toBe(true);
      expect(r.seq).toBe(journals.get(planned.id)!.length);
    }
    return { events, timers, resent: sample.length };
  } finally {
    await system.stop();
  }
}

describe.sequential('crash safety - kill -9 during sends on LMDB', () => {
  for (const seed of seeds) {
    it(`crash - seed ${seed}: every acknowledged send survives, nothing applies twice`, async () => {
      const dir = await mkdtemp(join(tmpdir(), `shardchart-crash-${seed}-`));
      tempDirs.push(dir);
      const rand = prng(seed);
      const acks: Ack[] = [];
      const prevMax: number[] = [];
      const report: string[] = [];
      for (let round = 1; round <= KILL_ROUNDS; round++) {
        const killAfterMs =
          KILL_AFTER_MS_MIN +
          Math.floor(rand() * (KILL_AFTER_MS_MAX - KILL_AFTER_MS_MIN));
        const run = await runWorker(dir, seed, round, prevMax, killAfterMs);
        expect.soft(run.errors, `round ${round} send errors`).toEqual([]);
        acks.push(...run.acks);
        // The highest index this round may have sent: answered ones plus
        // those still in flight.
        let maxIndex = -1;
        for (const a of run.acks) {
          const p = parseEventId(a.eventId);
          if (p.round === round) maxIndex = Math.max(maxIndex, p.index);
        }
        prevMax.push(Math.min(EVENTS_PER_ROUND - 1, maxIndex + CONCURRENCY));
        const dups = run.acks.filter((a) => a.dup).length;
        report.push(
          `round ${round}: ${run.acks.length} acks (${dups} dup), ` +
            (run.killedAfterMs === undefined
              ? 'finished before the kill'
              : `killed ${run.killedAfterMs} ms after the first ack (planned ${killAfterMs})`),
        );
      }
      // A last worker, not killed: it sends a bounded batch (new events and
      // re-sends of both killed rounds) and must finish by itself, so a
      // send that never resolves or a failing write cannot hide behind a
      // kill.
      const finalRound = KILL_ROUNDS + 1;
      const final = await runWorker(
        dir,
        seed,
        finalRound,
        prevMax,
        undefined,
        FINAL_EVENTS,
      );
      expect.soft(final.errors, `round ${finalRound} send errors`).toEqual([]);
      expect(final.finished).toBe(true);
      acks.push(...final.acks);
      report.push(
        `round ${finalRound}: ${final.acks.length} acks (${final.acks.filter((a) => a.dup).length} dup), ran to the end`,
      );
      const result = await verify(dir, seed, acks);
      const line =
        `crash seed ${seed}: ${report.join('; ')}; recovered ` +
        `${result.events} events and ${result.timers} timer firings over ` +
        `${ENTITY_COUNT} entities; ${result.resent} re-sends were duplicates`;
      console.log(line);
    }, 400_000);
  }
});
