/**
 * Determinism (DESIGN.md guarantee 7, issue 3 item 8): a Shardchart entity
 * behaves exactly like a plain XState actor running the same machine.
 *
 * Method: a differential property test. fast-check generates command lists
 * (send an event with a random payload, resend an event id, advance the
 * clock, passivate an entity, restart the whole system on the same store,
 * reopen the LMDB environment). Each command runs against Shardchart and
 * against plain XState actors that never persist anything; after every step
 * `value`, `context`, `status` (and `output`) must agree. Both sides run on
 * their own simulated clock and both clocks advance by the same amounts, so
 * delayed transitions fire at the same instants. The machine has parallel
 * regions, deep and shallow history, guards, `assign` from context and
 * event, eventless transitions, a `raise`, delayed transitions with equal
 * deadlines in two regions, and a final state.
 *
 * A second test rebuilds the state at every seq with `stateAt(n)` and checks
 * it against the plain actor's state after its n-th applied event.
 *
 * Default runs are small (100 on memory, 20 on LMDB);
 * `SHARDCHART_PROPERTY_RUNS=N` runs N on memory and max(1, round(N * 0.3))
 * on LMDB.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createActor, type Actor, type SnapshotFrom } from 'xstate';

import {
  eventArb,
  machine,
  type DetMachine,
  type Ev,
  type EventSpec,
} from './det-machine.js';

import { createActorSystem, createSimulatedClock } from '../../src/index.js';
import type { EntityRef, EntityState } from '../../src/system/types.js';
import type { JournalEntry, Store } from '../../src/persistence/types.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { lmdbStore } from '../../adapters/lmdb/index.js';

// ---------------------------------------------------------------------------
// The machine under test and its event generator: ./det-machine.ts.

const ENTITY_TYPE = 'det';
const ENTITY_IDS = ['d-0', 'd-1'] as const;

// ---------------------------------------------------------------------------
// Commands.

type Command =
  | { kind: 'send'; entity: number; events: EventSpec[]; withId: boolean }
  | { kind: 'resend'; entity: number; pick: number }
  | { kind: 'advance'; ms: number; check: boolean }
  | {
      kind: 'passivate';
      entity: number;
      check: boolean;
      /** Advance both clocks while the passivation is in flight (0: no). */
      advanceMs: number;
      /** Microtask turns to let the passivation start before advancing. */
      turns: number;
    }
  | { kind: 'restart'; check: boolean }
  | { kind: 'reopen'; check: boolean };

function commandArb(withReopen: boolean): fc.Arbitrary<Command> {
  // Mostly one entity, so its history gets deep; the other one checks that
  // entities sharing a system, clock and store stay independent.
  const entity = fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.constant(1) },
  );
  const arbs: { weight: number; arbitrary: fc.Arbitrary<Command> }[] = [
    {
      weight: 10,
      arbitrary: fc.record({
        kind: fc.constant('send' as const),
        entity,
        events: fc.oneof(
          { weight: 4, arbitrary: eventArb.map((e) => [e]) },
          {
            weight: 1,
            arbitrary: fc.array(eventArb, { minLength: 2, maxLength: 4 }),
          },
        ),
        withId: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('resend' as const),
        entity,
        pick: fc.nat(),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('advance' as const),
        ms: fc.constantFrom(1, 250, 999, 1000, 1500, 3000, 5000),
        // Unchecked, the next command meets entities woken by their timers.
        check: fc.boolean(),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('passivate' as const),
        entity,
        check: fc.boolean(),
        advanceMs: fc.constantFrom(0, 0, 1000, 3000),
        turns: fc.nat({ max: 4 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('restart' as const),
        check: fc.boolean(),
      }),
    },
  ];
  if (withReopen) {
    arbs.push({
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('reopen' as const),
        check: fc.boolean(),
      }),
    });
  }
  return fc.oneof(...arbs);
}

// ---------------------------------------------------------------------------
// Harness.

interface StoreKind {
  name: 'memory' | 'lmdb';
  /** A fresh, empty store location. */
  create(): Promise<StoreLocation>;
}

interface StoreLocation {
  /** The store to use for the first system. */
  first: Store;
  /** A store for the next system after `stop()`: same data. */
  again(reopen: boolean): Store;
  dispose(): Promise<void>;
}

const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(
    tempDirs.map((d) => rm(d, { recursive: true, force: true })),
  );
});

const memoryKind: StoreKind = {
  name: 'memory',
  create: () => {
    const store = memoryStore();
    return Promise.resolve({
      first: store,
      // The memory store keeps its data across stop(): the same object
      // reopens with everything in it.
      again: () => store,
      dispose: () => Promise.resolve(),
    });
  },
};

const lmdbKind: StoreKind = {
  name: 'lmdb',
  create: async () => {
    const path = await mkdtemp(join(tmpdir(), 'shardchart-det-'));
    tempDirs.push(path);
    return {
      first: lmdbStore({ path }),
      // Restart and reopen both build a new store on the same directory:
      // the environment is closed by stop() and opened again from disk.
      again: () => lmdbStore({ path }),
      dispose: () => rm(path, { recursive: true, force: true }),
    };
  },
};

interface Comparable {
  value: unknown;
  context: unknown;
  status: string;
  output?: unknown;
}

function plainView(s: SnapshotFrom<DetMachine>): Comparable {
  const view: Comparable = {
    value: s.value,
    context: s.context,
    status: s.status,
  };
  if (s.status === 'done') view.output = s.output;
  return view;
}

function engineView(s: EntityState): Comparable {
  const view: Comparable = {
    value: s.value,
    context: s.context,
    status: s.status,
  };
  if (s.status === 'done') view.output = s.output;
  return view;
}

/** What the plain side recorded for one entity. */
interface PlainEntity {
  actor: Actor<DetMachine>;
  /** Every event the plain actor processed, with its resulting state. */
  steps: { event: Ev; state: Comparable }[];
  /** Events sent with an id, for `resend`; `applied`: journaled. */
  sent: { eventId: string; event: EventSpec; applied: boolean }[];
  errors: unknown[];
}

interface RunOptions {
  snapshotEvery: number;
}

const START_MS = 1_000_000;

/**
 * Every engine call here answers within milliseconds; one that does not
 * answer at all is a hang, reported as a failure of its step (with the
 * step in the counterexample) instead of a test timeout.
 */
const STEP_DEADLINE_MS = 5_000;

function withDeadline<T>(p: Promise<T>, where: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `${where}: no answer from the engine within ${STEP_DEADLINE_MS} ms (hung)`,
          ),
        ),
      STEP_DEADLINE_MS,
    );
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: Error) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/**
 * Runs one command list against Shardchart and plain XState, comparing
 * after every step, then checks time travel over the whole journal.
 */
async function runCommands(
  kind: StoreKind,
  commands: readonly Command[],
  options: RunOptions,
): Promise<void> {
  const location = await kind.create();
  const engineClock = createSimulatedClock(START_MS);
  const plainClock = createSimulatedClock(START_MS);
  const open = (store: Store) =>
    createActorSystem({
      name: `det-${kind.name}`,
      entities: { det: machine },
      store,
      snapshotEvery: options.snapshotEvery,
      // Passivation is driven by the commands only: an idle timer on the
      // simulated clock would make passivation depend on `advance` amounts.
      passivateAfterMs: 0,
      clock: engineClock,
      // Only errors: the memory store warns on every start that it is not
      // durable, which is the point here.
      logger: pino({ level: 'error' }),
    });
  let system = await open(location.first);

  const plains: PlainEntity[] = ENTITY_IDS.map((id) => {
    const errors: unknown[] = [];
    const steps: PlainEntity['steps'] = [];
    const actor = createActor(machine, {
      input: { entityId: id, entityType: ENTITY_TYPE },
      clock: plainClock,
      // The machine invokes and spawns nothing: every snapshot inspected
      // belongs to this root actor.
      inspect: (ev) => {
        if (ev.type === '@xstate.snapshot') {
          steps.push({
            event: ev.event as Ev,
            state: plainView(ev.snapshot as SnapshotFrom<DetMachine>),
          });
        }
      },
    });
    actor.subscribe({ error: (err) => errors.push(err) });
    actor.start();
    return { actor, steps, sent: [], errors };
  });

  let nextEventId = 0;
  const lastSeq = ENTITY_IDS.map(() => 0);
  // After an unchecked advance, delayed events may have added journal
  // entries we have not seen: the next seq is then only a lower bound.
  const seqExact = ENTITY_IDS.map(() => true);

  const compare = async (i: number, where: string): Promise<EntityState> => {
    const plain = plains[i]!;
    const state = await system.entity(ENTITY_TYPE, ENTITY_IDS[i]!).snapshot();
    expect(engineView(state), `${where}: entity ${ENTITY_IDS[i]}`).toEqual(
      plainView(plain.actor.getSnapshot()),
    );
    expect(plain.errors).toEqual([]);
    expect(state.seq, `${where}: seq moved backwards`).toBeGreaterThanOrEqual(
      lastSeq[i]!,
    );
    lastSeq[i] = state.seq;
    seqExact[i] = true;
    return state;
  };
  const compareAll = async (where: string): Promise<void> => {
    for (let i = 0; i < ENTITY_IDS.length; i++) await compare(i, where);
  };

  const runStep = async (cmd: Command, where: string): Promise<void> => {
    switch (cmd.kind) {
      case 'send': {
        // All events of the command are sent at once, without waiting for
        // answers: the engine must apply them in order while earlier ones
        // are still being written (pipelining and group commit).
        const plain = plains[cmd.entity]!;
        const ref = system.entity(ENTITY_TYPE, ENTITY_IDS[cmd.entity]!);
        const expected = cmd.events.map((event) => {
          const before = plainView(plain.actor.getSnapshot());
          if (before.status === 'done') {
            return { event, before, after: undefined };
          }
          plain.actor.send(event);
          return {
            event,
            before,
            after: plainView(plain.actor.getSnapshot()),
          };
        });
        const ids = cmd.events.map(() =>
          cmd.withId ? `ev-${nextEventId++}` : undefined,
        );
        const outcomes = await Promise.all(
          cmd.events.map((event, k) =>
            ref.send(event, ids[k] ? { eventId: ids[k] } : {}).then(
              (r) => ({ ok: true as const, r }),
              (err: unknown) => ({ ok: false as const, err }),
            ),
          ),
        );
        for (const [k, exp] of expected.entries()) {
          const outcome = outcomes[k]!;
          const label = `${where}: event ${k} ${JSON.stringify(exp.event)}`;
          if (exp.after === undefined) {
            // A finished entity accepts nothing more: either a typed
            // ENTITY_STOPPED rejection or an unchanged answer is fine.
            if (outcome.ok) {
              expect(outcome.r.changed, label).toBe(false);
              expect(engineView(outcome.r), label).toEqual(exp.before);
            } else {
              expect(outcome.err, label).toMatchObject({
                code: 'ENTITY_STOPPED',
              });
            }
            continue;
          }
          if (!outcome.ok) throw outcome.err;
          const r = outcome.r;
          const eventId = ids[k];
          if (eventId) {
            plain.sent.push({
              eventId,
              event: exp.event,
              // Journaled, so the id is remembered for dedupe.
              applied: seqExact[cmd.entity]
                ? r.seq > lastSeq[cmd.entity]!
                : r.changed,
            });
          }
          expect(engineView(r), `${label}: send answer`).toEqual(exp.after);
          expect(r.duplicate ?? false, label).toBe(false);
          if (!isDeepEqual(exp.after, exp.before)) {
            expect(r.changed, `${label}: changed`).toBe(true);
          }
          if (seqExact[cmd.entity]) {
            expect(r.seq, `${label}: seq`).toBe(
              lastSeq[cmd.entity]! + (r.changed ? 1 : 0),
            );
          } else {
            expect(r.seq, `${label}: seq`).toBeGreaterThanOrEqual(
              lastSeq[cmd.entity]! + (r.changed ? 1 : 0),
            );
          }
          seqExact[cmd.entity] = true;
          lastSeq[cmd.entity] = r.seq;
        }
        await compare(cmd.entity, where);
        break;
      }
      case 'resend': {
        const plain = plains[cmd.entity]!;
        if (plain.sent.length === 0) break;
        const prev = plain.sent[cmd.pick % plain.sent.length]!;
        const ref = system.entity(ENTITY_TYPE, ENTITY_IDS[cmd.entity]!);
        const before = plainView(plain.actor.getSnapshot());
        if (!prev.applied && before.status !== 'done') {
          // The first send changed nothing, so it was not journaled and
          // its id was not remembered: this send is a first application.
          plain.actor.send(prev.event);
        }
        const outcome = await ref
          .send(prev.event, { eventId: prev.eventId })
          .then(
            (r) => ({ ok: true as const, r }),
            (err: unknown) => ({ ok: false as const, err }),
          );
        if (!outcome.ok) {
          // Only a finished entity may refuse instead of answering.
          expect(before.status, where).toBe('done');
          expect(outcome.err, where).toMatchObject({
            code: 'ENTITY_STOPPED',
          });
        } else if (prev.applied) {
          expect(outcome.r.duplicate, `${where}: duplicate`).toBe(true);
          if (seqExact[cmd.entity]) {
            expect(outcome.r.seq, `${where}: duplicate seq`).toBe(
              lastSeq[cmd.entity],
            );
          }
          expect(engineView(outcome.r), where).toEqual(before);
        } else {
          expect(outcome.r.duplicate ?? false, where).toBe(false);
          expect(engineView(outcome.r), where).toEqual(
            plainView(plain.actor.getSnapshot()),
          );
          if (
            seqExact[cmd.entity]
              ? outcome.r.seq > lastSeq[cmd.entity]!
              : outcome.r.changed
          ) {
            prev.applied = true;
          }
        }
        await compare(cmd.entity, where);
        break;
      }
      case 'advance': {
        plainClock.advance(cmd.ms);
        engineClock.advance(cmd.ms);
        if (cmd.check) await compareAll(where);
        else seqExact.fill(false);
        break;
      }
      case 'passivate': {
        const ref = system.entity(ENTITY_TYPE, ENTITY_IDS[cmd.entity]!);
        const passivated = ref.passivate();
        if (cmd.advanceMs > 0) {
          // Time passes while the snapshot is being written: a timer (or
          // a wake-up) may fire in the middle of the passivation.
          for (let t = 0; t < cmd.turns; t++) await Promise.resolve();
          plainClock.advance(cmd.advanceMs);
          engineClock.advance(cmd.advanceMs);
          seqExact.fill(false);
          await passivated;
        } else {
          await passivated;
          expect(ref.isLive(), `${where}: live after passivate()`).toBe(false);
        }
        if (cmd.check) await compareAll(where);
        break;
      }
      case 'restart':
      case 'reopen': {
        await system.stop();
        system = await open(location.again(cmd.kind === 'reopen'));
        if (cmd.check) await compareAll(where);
        break;
      }
    }
  };

  try {
    for (const [step, cmd] of commands.entries()) {
      const where = `step ${step} ${JSON.stringify(cmd)}`;
      await withDeadline(runStep(cmd, where), where);
    }
    await withDeadline(
      (async () => {
        await compareAll('end');
        for (let i = 0; i < ENTITY_IDS.length; i++) {
          const ref = system.entity(ENTITY_TYPE, ENTITY_IDS[i]!);
          await checkTimeTravel(ref, ENTITY_IDS[i]!, plains[i]!);
        }
      })(),
      'end',
    );
  } finally {
    for (const p of plains) p.actor.stop();
    await withDeadline(system.stop(), 'stop').catch(() => undefined);
    await location.dispose();
  }
}

/**
 * `stateAt(n)` for every n equals the plain actor's state after its n-th
 * applied event. The plain actor also processed events the engine did not
 * journal (not accepted by the state): those must have left its state
 * unchanged, and are skipped when lining the two histories up.
 */
async function checkTimeTravel(
  ref: EntityRef,
  id: string,
  plain: PlainEntity,
): Promise<void> {
  const entries: JournalEntry[] = [];
  for await (const entry of ref.journal()) entries.push(entry);
  const label = `entity ${id}`;
  entries.forEach((e, k) => expect(e.seq, `${label}: journal gap`).toBe(k + 1));

  // steps[0] is the initial state (event xstate.init).
  const [init, ...rest] = plain.steps;
  expect(init?.event.type).toBe('xstate.init');
  expect(engineView(await ref.stateAt(0)), `${label}: stateAt(0)`).toEqual(
    init!.state,
  );
  let cursor = 0;
  let prev = init!.state;
  for (const entry of entries) {
    // Skip plain steps the engine did not journal: they must be no-ops.
    for (;;) {
      const candidate = rest[cursor];
      expect(
        candidate,
        `${label}: journal entry ${entry.seq} ${JSON.stringify(entry.event)} has no plain counterpart`,
      ).toBeDefined();
      if (candidate === undefined) return;
      if (sameEvent(candidate.event, entry.event)) break;
      expect(
        candidate.state,
        `${label}: plain event ${JSON.stringify(candidate.event)} changed state but was not journaled`,
      ).toEqual(prev);
      cursor++;
    }
    const matched = rest[cursor]!;
    cursor++;
    expect(
      engineView(await ref.stateAt(entry.seq)),
      `${label}: stateAt(${entry.seq}) after ${JSON.stringify(entry.event)}`,
    ).toEqual(matched.state);
    prev = matched.state;
  }
  for (const leftover of rest.slice(cursor)) {
    expect(
      leftover.state,
      `${label}: plain event ${JSON.stringify(leftover.event)} after the last journal entry changed state`,
    ).toEqual(prev);
  }
}

/** Same event type and payload (delayed events carry XState's own type). */
function sameEvent(
  a: { type: string },
  b: { type: string; [key: string]: unknown },
): boolean {
  return isDeepEqual(a, b);
}

function isDeepEqual(a: unknown, b: unknown): boolean {
  try {
    expect(a).toEqual(b);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// The tests.

const scale = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? '');
const memoryRuns = scale > 0 ? scale : 100;
const lmdbRuns = scale > 0 ? Math.max(1, Math.round(scale * 0.3)) : 20;

const send = (event: EventSpec, withId = false): Command => ({
  kind: 'send',
  entity: 0,
  events: [event],
  withId,
});

/**
 * Command lists that found engine bugs before; fast-check runs them first,
 * every time.
 */
const regressions: [Command[], number][] = [
  [
    // A timer (and the wake-up queued at the first passivation) falls due
    // while the second passivation is writing its snapshot; sends right
    // after must reach the one live actor of the entity.
    [
      send({ type: 'START' }),
      send({ type: 'PAUSE' }),
      { kind: 'passivate', entity: 0, check: false, advanceMs: 0, turns: 0 },
      send({ type: 'NOTE', text: 'x' }),
      { kind: 'passivate', entity: 0, check: false, advanceMs: 3000, turns: 1 },
      {
        kind: 'send',
        entity: 0,
        events: [
          { type: 'NOTE', text: 'y' },
          { type: 'NOTE', text: 'z' },
        ],
        withId: true,
      },
    ],
    100,
  ],
  [
    // An overdue timer must fire on activation before queued sends.
    [
      send({ type: 'ADD', amount: 1 }),
      send({ type: 'ADD', amount: 9 }),
      { kind: 'passivate', entity: 0, check: false, advanceMs: 0, turns: 0 },
      { kind: 'advance', ms: 3000, check: false },
      send({ type: 'ADD', amount: 2 }),
    ],
    1,
  ],
];

function propertyFor(kind: StoreKind, numRuns: number): Promise<void> {
  return fc.assert(
    fc.asyncProperty(
      fc.array(commandArb(kind.name === 'lmdb'), {
        minLength: 1,
        maxLength: 40,
        // 'small' (the default) rarely goes past ten commands.
        size: 'medium',
      }),
      fc.constantFrom(1, 2, 3, 5, 100),
      async (commands, snapshotEvery) => {
        await runCommands(kind, commands, { snapshotEvery });
      },
    ),
    { numRuns, examples: regressions },
  );
}

describe('determinism - entity agrees with plain XState', () => {
  it(
    'determinism - memory store: random events, timers, passivations and restarts',
    async () => {
      await propertyFor(memoryKind, memoryRuns);
    },
    120_000 + memoryRuns * 2_000,
  );

  it(
    'determinism - lmdb store: random events, timers, passivations, restarts and reopens',
    async () => {
      await propertyFor(lmdbKind, lmdbRuns);
    },
    120_000 + lmdbRuns * 4_000,
  );

  it('determinism - stateAt(n) equals the plain state after n applied events', async () => {
    // A fixed walk through every feature, with a snapshot every 2 events so
    // stateAt has to combine snapshots and journal tails.
    const e = (entity: number, event: EventSpec): Command => ({
      kind: 'send',
      entity,
      events: [event],
      withId: true,
    });
    const commands: Command[] = [
      e(0, { type: 'START' }),
      e(0, { type: 'NEXT' }),
      e(0, { type: 'NEXT' }),
      e(0, { type: 'ADD', amount: 4 }),
      e(0, { type: 'ADD', amount: 0 }),
      e(0, { type: 'PAUSE' }),
      e(0, { type: 'RESUME_DEEP' }),
      e(0, { type: 'NEXT' }),
      { kind: 'passivate', entity: 0, check: false, advanceMs: 0, turns: 0 },
      { kind: 'advance', ms: 1000, check: true },
      e(0, { type: 'NEXT' }),
      e(0, { type: 'PAUSE' }),
      e(0, { type: 'RESUME_SHALLOW' }),
      e(0, { type: 'ADD', amount: 8 }),
      e(0, { type: 'NOTE', text: 'hello', tag: { level: 2, flags: [true] } }),
      { kind: 'restart', check: false },
      { kind: 'advance', ms: 1000, check: true },
      e(0, { type: 'PAUSE' }),
      { kind: 'advance', ms: 3000, check: true },
      e(0, { type: 'DRAIN' }),
      e(0, { type: 'START' }),
      e(0, { type: 'ADD', amount: 9 }),
      e(0, { type: 'ADD', amount: 9 }),
      e(1, { type: 'ADD', amount: 5 }),
      e(0, { type: 'ADD', amount: 9 }),
      e(0, { type: 'FINISH' }),
      e(0, { type: 'NEXT' }),
    ];
    for (const kind of [memoryKind, lmdbKind]) {
      await runCommands(kind, commands, { snapshotEvery: 2 });
    }
  });
});
