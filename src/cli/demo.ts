import { mkdir, readdir, rm } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import { pino } from 'pino';
import { createActorSystem, isShardchartError } from '../index.js';
import type { ActorSystem, ActorSystemOptions, EntityState } from '../index.js';
// The CLI is the one part of src/ that is an application rather than the
// library: like any user program, it composes the engine with a store.
import { lmdbStore } from '../../adapters/lmdb/index.js';
import { orderMachine, orderStates, type OrderEvent } from './order-machine.js';
import { createProgress, type ProgressOutput } from './progress.js';
import { createSeededRandom as createRandom } from '../system/random.js';

export interface DemoOptions {
  /** Order workflows to create. */
  entities: number;
  /** LMDB directory; wiped at start. */
  dir: string;
  /** Time budget for driving the workflows; unfinished ones stay where they are. */
  seconds: number;
  /** Concurrent senders. Default 64. */
  sendersMax?: number;
  /** Default: process.stdout. */
  output?: ProgressOutput;
}

/** A problem the user can fix (a --dir holding other files); printed without a stack. */
export class DemoError extends Error {
  override readonly name = 'DemoError';
}

/** What the demo measured; `ok` is false when any check failed. */
export interface DemoReport {
  ok: boolean;
  eventsSent: number;
  survived: number;
  entities: number;
}

type OrderState = EntityState<typeof orderMachine>;

/** One scripted send. */
interface Step {
  event: OrderEvent;
  /** Resent (with a new event id) until accepted: a timer has to open the way. */
  untilAccepted: boolean;
  /** Sent right after the previous step, by the same sender. */
  immediate?: boolean;
}

/** Per-order driver state. */
interface Order {
  id: string;
  script: Step[];
  step: number;
  attempt: number;
}

/** A retried step polls this often while it waits for a timer. */
const retryDelayMs = 120;
/** Attempts before a step that is never accepted is skipped (a lost race). */
const stepAttemptsMax = 25;
/** Share of accepted sends repeated with the same event id. */
const duplicateShare = 0.05;
const skus = ['tea', 'mug', 'kettle', 'spoon', 'filter', 'honey'];

/**
 * `shardchart demo`: thousands of order workflows on LMDB, driven by
 * concurrent senders, then a summary and a survival proof (stop, re-open the
 * store in a new system, compare every entity with what the first run saw).
 *
 * @example
 * ```ts
 * const report = await runDemo({ entities: 3_000, dir: '.shardchart/demo', seconds: 20 });
 * process.exitCode = report.ok ? 0 : 1;
 * ```
 */
export async function runDemo(options: DemoOptions): Promise<DemoReport> {
  const out = options.output ?? process.stdout;
  const print = (line = ''): void => void out.write(`${line}\n`);
  const sendersMax = options.sendersMax ?? 64;
  await wipeDemoDir(options.dir);

  // Warnings go to stderr so they never tear the progress bar or the summary.
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const config = {
    name: 'demo',
    entities: { order: orderMachine },
    logger,
    // Finished and abandoned orders go idle; passivating them after 2 s shows
    // that the next read re-activates them from LMDB transparently.
    passivateAfterMs: 2_000,
  };
  const system = await createActorSystem({
    ...config,
    store: lmdbStore({ path: options.dir }),
  });

  print(
    `shardchart demo: ${fmt(options.entities)} order workflows on LMDB at ${options.dir} (every send durable), ${sendersMax} concurrent senders`,
  );
  const random = createRandom(0x5eed);
  const orders: Order[] = [];
  for (let i = 1; i <= options.entities; i++) {
    const id = `o-${String(i).padStart(5, '0')}`;
    orders.push({ id, script: scriptFor(random), step: 0, attempt: 0 });
  }

  const drive = await driveOrders(system, orders, {
    random,
    sendersMax,
    deadlineMs: options.seconds * 1_000,
    output: out,
  });
  const { counts, errors } = drive;

  // Let pending `after` timers fire, so the recorded states are final and the
  // second system has nothing left to do but load them.
  const recorded = await settle(system, orders);
  const stats = system.stats();
  const sizeBytes = await system.store.sizeBytes();
  const byState = new Map<string, number>(orderStates.map((s) => [s, 0]));
  let timersFired = 0;
  for (const state of recorded.values()) {
    const top =
      typeof state.value === 'string'
        ? state.value
        : Object.keys(state.value)[0]!;
    byState.set(top, (byState.get(top) ?? 0) + 1);
    timersFired += state.context.timersFired;
  }
  const sorted = [...drive.latenciesMs].sort((a, b) => a - b);
  const driveSeconds = drive.driveSeconds;

  print();
  row(
    'events',
    `${fmt(counts.sent)} sends answered in ${driveSeconds.toFixed(1)} s: ${fmt(counts.sent / driveSeconds)} events/s · ${fmt(stats.eventsApplied)} journaled · ${fmt(counts.notAccepted)} not accepted yet, retried`,
  );
  row(
    'send latency',
    `p50 ${quantile(sorted, 0.5).toFixed(2)} ms · p99 ${quantile(sorted, 0.99).toFixed(2)} ms`,
  );
  row(
    'duplicates',
    `${fmt(counts.duplicatesSent)} sent on purpose, ${fmt(counts.duplicatesSuppressed)} suppressed (${fmt(stats.duplicates)} answered duplicate: true, ${fmt(counts.duplicatesAfterFinal)} ENTITY_STOPPED after the order finished)`,
  );
  row(
    'timers fired',
    `${fmt(timersFired)} after-transitions, journaled like events`,
  );
  row('entities', [...byState].map(([s, n]) => `${s} ${fmt(n)}`).join(' · '));
  row(
    'store',
    `${formatBytes(sizeBytes)} on disk · ${fmt(stats.storeWrites)} entity writes`,
  );
  row(
    'lifecycle',
    `${fmt(stats.activations)} activations · ${fmt(stats.passivations)} passivations (idle > 2 s)`,
  );
  if (errors.length > 0) {
    row('errors', `${fmt(errors.length)}, first: ${errors[0]}`);
  }

  const stopAt = performance.now();
  await system.stop();
  print();
  print(
    `stopped in ${ms(performance.now() - stopAt)}; re-opening ${options.dir} in a new system...`,
  );

  const reopenAt = performance.now();
  const mismatches = await proveSurvival(
    {
      ...config,
      name: 'demo-reopened',
      store: lmdbStore({ path: options.dir }),
    },
    orders,
    recorded,
    sendersMax,
  );
  const survived = orders.length - mismatches.length;
  print(
    `survived: ${survived}/${orders.length} entities match (seq, value, context, status; re-activated from LMDB in ${ms(performance.now() - reopenAt)})`,
  );
  for (const line of mismatches.slice(0, 5)) print(`  mismatch ${line}`);

  // An order that paused and resumed through the deep history state is the
  // most interesting one to look at.
  const showcase = orders.find(
    (o) =>
      o.script.some((s) => s.event.type === 'RESUME') &&
      recorded.get(o.id)?.status === 'done',
  );
  print();
  print(
    showcase
      ? `look inside one (it paused and resumed through deep history):`
      : `look inside one:`,
  );
  print(
    `  shardchart inspect order ${(showcase ?? orders[0])?.id ?? 'o-00001'} --dir ${options.dir}`,
  );
  return {
    ok: survived === orders.length && errors.length === 0,
    eventsSent: counts.sent,
    survived,
    entities: orders.length,
  };

  function row(label: string, text: string): void {
    print(`  ${label.padEnd(14)}${text}`);
  }
}

/**
 * Drives every order through its script with `sendersMax` concurrent
 * senders: a queue of orders whose next step can go now; an order waiting on
 * a timer comes back after `retryDelayMs`. Stops when all scripts are done
 * or at the deadline.
 */
async function driveOrders(
  system: ActorSystem<{ order: typeof orderMachine }>,
  orders: readonly Order[],
  options: {
    random: () => number;
    sendersMax: number;
    deadlineMs: number;
    output: ProgressOutput;
  },
) {
  const random = options.random;
  const queue: Order[] = shuffle([...orders], random);
  let waiting = 0;
  let finished = 0;
  const latenciesMs: number[] = [];
  const counts = {
    sent: 0,
    duplicatesSent: 0,
    duplicatesSuppressed: 0,
    duplicatesAfterFinal: 0,
    notAccepted: 0,
  };
  const errors: string[] = [];
  const progress = createProgress({
    total: orders.length,
    label: 'orders',
    output: options.output,
  });
  const startedAt = performance.now();
  const deadline = startedAt + options.deadlineMs;
  const finish = (): void => void finished++;

  const send = async (
    order: Order,
    event: OrderEvent,
    eventId: string,
  ): Promise<OrderState> => {
    const t0 = performance.now();
    const state = await system
      .entity('order', order.id)
      .send(event, { eventId });
    latenciesMs.push(performance.now() - t0);
    counts.sent++;
    return state;
  };

  const advance = async (order: Order): Promise<void> => {
    const step = order.script[order.step];
    if (!step) return finish();
    const eventId = `${order.id}:${order.step}:${order.attempt}`;
    let state: OrderState;
    try {
      state = await send(order, step.event, eventId);
    } catch (err) {
      // A timer can finish an order between two of our sends.
      if (isShardchartError(err, 'ENTITY_STOPPED')) return finish();
      errors.push(`${order.id} ${step.event.type}: ${String(err)}`);
      return finish();
    }
    if (state.changed && random() < duplicateShare) {
      // A client retrying after a lost answer: same event, same event id.
      counts.duplicatesSent++;
      const again = await send(order, step.event, eventId).catch(
        (err: unknown) => err,
      );
      if (isShardchartError(again, 'ENTITY_STOPPED')) {
        // The original send finished the order; the engine answers a repeat
        // of it with ENTITY_STOPPED rather than `duplicate: true`. Either
        // way it was not applied again.
        counts.duplicatesSuppressed++;
        counts.duplicatesAfterFinal++;
      } else if ((again as Partial<OrderState>).duplicate === true) {
        counts.duplicatesSuppressed++;
      } else
        errors.push(
          `${order.id}: repeated ${eventId} was not answered as a duplicate: ${describeAnswer(again)}`,
        );
    }
    if (state.status === 'done') return finish();
    if (
      !state.changed &&
      step.untilAccepted &&
      ++order.attempt < stepAttemptsMax
    ) {
      // Come back later without holding up this sender, and then first in
      // line: the state may accept the event only for a short while.
      counts.notAccepted++;
      waiting++;
      setTimeout(() => {
        waiting--;
        queue.unshift(order);
      }, retryDelayMs);
      return;
    }
    order.step++;
    order.attempt = 0;
    const next = order.script[order.step];
    if (!next) return finish();
    if (next.immediate) return advance(order);
    queue.push(order);
  };

  const sender = async (): Promise<void> => {
    while (performance.now() < deadline && finished < orders.length) {
      const order = queue.shift();
      if (!order) {
        // Everything left is waiting on a timer (or on another sender).
        await sleep(waiting > 0 ? 5 : 1);
        continue;
      }
      await advance(order);
      const seconds = (performance.now() - startedAt) / 1_000;
      progress.update(
        finished,
        `${fmt(counts.sent)} events, ${fmt(counts.sent / seconds)}/s`,
      );
    }
  };
  await Promise.all(Array.from({ length: options.sendersMax }, sender));
  const driveSeconds = (performance.now() - startedAt) / 1_000;
  progress.finish(
    finished,
    `${fmt(counts.sent)} events, ${fmt(counts.sent / driveSeconds)}/s`,
  );

  return { counts, errors, latenciesMs, driveSeconds };
}

/**
 * Opens the store in a new system and compares every order with the state
 * the first system recorded; returns one line per mismatch.
 */
async function proveSurvival(
  options: ActorSystemOptions<{ order: typeof orderMachine }>,
  orders: readonly Order[],
  recorded: ReadonlyMap<string, OrderState>,
  sendersMax: number,
): Promise<string[]> {
  const second = await createActorSystem(options);
  const mismatches: string[] = [];
  try {
    await forEachConcurrently(orders, sendersMax, async (order) => {
      const before = recorded.get(order.id);
      const after = await second.entity('order', order.id).snapshot();
      if (!before || !sameState(before, after)) {
        mismatches.push(
          `${order.id}: before ${describe(before)}, after ${describe(after)}`,
        );
      }
    });
  } finally {
    await second.stop();
  }
  return mismatches;
}

/** Reads every order until none is in a state with a pending timer (5 s at most). */
async function settle(
  system: ActorSystem<{ order: typeof orderMachine }>,
  orders: readonly Order[],
): Promise<Map<string, OrderState>> {
  const states = new Map<string, OrderState>();
  const settleBy = performance.now() + 5_000;
  for (;;) {
    let timed = 0;
    await forEachConcurrently(orders, 64, async (order) => {
      const state = await system.entity('order', order.id).snapshot();
      states.set(order.id, state);
      if (hasPendingTimer(state)) timed++;
    });
    if (timed === 0 || performance.now() > settleBy) return states;
    await sleep(200);
  }
}

/** True in the states of {@link orderMachine} that arm an `after` timer. */
function hasPendingTimer(state: OrderState): boolean {
  if (typeof state.value === 'string') return false;
  const processing = (state.value as Record<string, Record<string, string>>)
    .processing;
  return (
    processing?.payment === 'authorizing' ||
    processing?.payment === 'retrying' ||
    processing?.shipping === 'packing'
  );
}

function sameState(a: OrderState, b: OrderState): boolean {
  return (
    a.seq === b.seq &&
    a.status === b.status &&
    isDeepStrictEqual(a.value, b.value) &&
    isDeepStrictEqual(a.context, b.context)
  );
}

function describeAnswer(answer: unknown): string {
  return answer instanceof Error ? String(answer) : JSON.stringify(answer);
}

function describe(state: OrderState | undefined): string {
  return state ? `seq ${state.seq} ${JSON.stringify(state.value)}` : 'nothing';
}

/**
 * The life of one order, drawn from a seeded generator so two runs drive
 * the same workload: a few items, then checkout, and on the way some
 * payment failures (three decline the order), pauses with and without a
 * resume, and cancellations.
 */
function scriptFor(random: () => number): Step[] {
  const once = (event: OrderEvent): Step => ({ event, untilAccepted: false });
  const until = (event: OrderEvent): Step => ({ event, untilAccepted: true });
  const steps: Step[] = [];
  const items = 1 + Math.floor(random() * 4);
  for (let i = 0; i < items; i++) {
    const sku = skus[Math.floor(random() * skus.length)]!;
    steps.push(
      once({
        type: 'ADD_ITEM',
        sku,
        priceCents: 100 + Math.floor(random() * 4_900),
      }),
    );
  }
  // Independent draws, so a payment failure and a pause can meet in one order.
  const [fate, payment, pause] = [random(), random(), random()];
  if (fate < 0.04) {
    return [...steps, once({ type: 'CANCEL', reason: 'changed mind' })];
  }
  steps.push(once({ type: 'CHECKOUT' }));
  // The payment provider answers while the order is authorizing (400 ms,
  // again after each 300 ms retry pause), so failures are sent at once and
  // polled for quickly rather than queued behind thousands of other orders.
  const failed: Step = {
    ...until({ type: 'PAYMENT_FAILED' }),
    immediate: true,
  };
  if (fate < 0.07) {
    // Declined three times: the guard stops retrying and cancels the order.
    return [...steps, failed, failed, failed];
  }
  if (payment < 0.15) steps.push(failed);
  steps.push(once({ type: 'PICKED' }));
  if (pause < 0.03) return [...steps, once({ type: 'PAUSE' })];
  if (pause < 0.2) {
    steps.push(once({ type: 'PAUSE' }), once({ type: 'RESUME' }));
  }
  steps.push(until({ type: 'CAPTURE' }), until({ type: 'SHIP' }));
  return steps;
}

/**
 * Empties the demo directory, refusing to delete anything the demo would not
 * have created: `--dir` is user input, and `rm -r` on the wrong path is not a
 * mistake anyone should be able to make by typo.
 */
async function wipeDemoDir(dir: string): Promise<void> {
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  const foreign = entries.filter((name) => !/^(data|lock)\.mdb$/.test(name));
  if (foreign.length > 0) {
    throw new DemoError(
      `Refusing to wipe ${dir}: it holds files an LMDB store does not (${foreign.slice(0, 3).join(', ')}). Pass --dir with a new or empty directory.`,
    );
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
}

async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}


function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function ms(milliseconds: number): string {
  return milliseconds < 1_000
    ? `${Math.round(milliseconds)} ms`
    : `${(milliseconds / 1_000).toFixed(1)} s`;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
