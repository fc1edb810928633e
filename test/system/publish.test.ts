/**
 * Publishing domain events (issue 5, item 5): `publish(...)` in a machine,
 * delivered only after the step that ran it is durable, in order per entity,
 * with stable message ids, retried while the publisher fails, and delivered
 * again after a crash. Most tests run on the memory store; the crash test
 * kills a child process on LMDB with SIGKILL.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import {
  assign,
  createActor,
  createMachine,
  sendTo,
  setup,
  transition,
} from 'xstate';

import {
  createActorSystem,
  publish,
  publishEventType,
  ShardchartError,
  type PublishedMessage,
  type PublishInput,
  type Store,
} from '../../src/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { lmdbStore } from '../../adapters/lmdb/index.js';
import { Publishing } from '../../src/system/outbox.js';
import { systemClock } from '../../src/system/clock.js';
import { memoryLogger, quietLogger } from './fixtures.js';
import { expectedIds, ORDERS, SYSTEM } from './publish-worker.js';

type OrderEvent =
  | { type: 'PAY'; amount: number }
  | { type: 'NOTE' }
  | { type: 'PUBLISH'; subject: unknown; data?: unknown; headers?: unknown }
  | { type: 'PUBLISH_DATE' }
  | { type: 'PUBLISH_FN' }
  | { type: 'PUBLISH_EXTRA' }
  | { type: 'PUBLISH_BIG' }
  | { type: 'PUBLISH_NOTHING' };

/** An order: publishes when created, twice per payment, never on a note. */
const orderMachine = setup({
  types: {
    context: {} as { id: string; paid: number; notes: number },
    events: {} as OrderEvent,
    input: {} as { entityId: string },
  },
}).createMachine({
  context: ({ input }) => ({ id: input.entityId, paid: 0, notes: 0 }),
  entry: publish(({ context }) => ({
    subject: 'orders.created',
    data: { id: context.id },
  })),
  on: {
    PAY: {
      actions: [
        assign({ paid: ({ context, event }) => context.paid + event.amount }),
        publish(({ context }) => ({
          subject: 'orders.paid',
          data: { id: context.id, paid: context.paid },
        })),
        publish({
          subject: 'audit.payments',
          data: { kind: 'pay' },
          headers: { 'x-kind': 'pay' },
        }),
      ],
    },
    NOTE: { actions: assign({ notes: ({ context }) => context.notes + 1 }) },
    PUBLISH: {
      actions: publish(
        ({ event }) =>
          ({
            subject: event.subject,
            data: event.data,
            headers: event.headers,
          }) as PublishInput,
      ),
    },
    PUBLISH_DATE: {
      actions: publish({ subject: 'x.y', data: { at: new Date(0) } }),
    },
    PUBLISH_FN: {
      actions: publish(() => ({ subject: 'x.y', data: { f: () => 1 } })),
    },
    PUBLISH_EXTRA: {
      actions: publish(
        () => ({ subject: 'x.y', payload: 1 }) as unknown as PublishInput,
      ),
    },
    PUBLISH_BIG: {
      actions: publish(() => ({ subject: 'x.y', data: 'x'.repeat(70_000) })),
    },
    PUBLISH_NOTHING: {
      actions: publish(() => undefined as unknown as PublishInput),
    },
  },
});

/** Waits for `cond`; the bound only catches a hang, never a slow machine. */
async function until(
  cond: () => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Lets queued microtasks and immediate callbacks run. */
async function ticks(n = 30): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

/** A publisher that records what it delivers; `down` makes it fail. */
function recorder() {
  const delivered: PublishedMessage[] = [];
  const attempts: string[] = [];
  const state = { down: false };
  const publisher = (m: PublishedMessage): Promise<void> => {
    attempts.push(m.id);
    if (state.down) return Promise.reject(new Error('broker down'));
    delivered.push(m);
    return Promise.resolve();
  };
  return {
    delivered,
    attempts,
    state,
    publisher,
    ids: () => delivered.map((m) => m.id),
  };
}

/** A memory store whose writes wait while the gate is closed. */
function gatedStore() {
  const base = memoryStore();
  let open = true;
  const waiting: (() => void)[] = [];
  const store: Store = {
    ...base,
    async write(w) {
      while (!open) await new Promise<void>((r) => waiting.push(r));
      return base.write(w);
    },
  };
  return {
    store,
    base,
    close: () => {
      open = false;
    },
    open: () => {
      open = true;
      for (const w of waiting.splice(0)) w();
    },
  };
}

const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(
    tempDirs.map((d) => rm(d, { recursive: true, force: true })),
  );
});

describe('publish', () => {
  it('publish - nothing is delivered before the step that published it is durable', async () => {
    const g = gatedStore();
    const durableAtDelivery: boolean[] = [];
    const delivered: PublishedMessage[] = [];
    let hold: Promise<void> | undefined;
    const system = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      store: g.store,
      logger: quietLogger(),
      publisher: async (m) => {
        if (hold !== undefined) await hold;
        // The store must already hold what the message came from: the
        // journal entry, or for the initial state the snapshot.
        const durable =
          m.seq === 0
            ? (await g.base.snapshots.load(m.entity)) !== undefined
            : (await g.base.journal.lastSeq(m.entity)) >= m.seq;
        durableAtDelivery.push(durable);
        delivered.push(m);
      },
    });
    const ref = system.entity('order', 'o-1');

    g.close();
    const read = ref.snapshot();
    await ticks();
    expect(delivered).toHaveLength(0); // the initial state's message waits for its snapshot
    g.open();
    await read;
    await until(() => delivered.length === 1, 'the initial message');

    g.close();
    let answered = false;
    const sent = ref.send({ type: 'PAY', amount: 5 }).then((r) => {
      answered = true;
      return r;
    });
    await ticks(100);
    expect(answered).toBe(false);
    expect(delivered).toHaveLength(1);
    g.open();
    const r = await sent;
    expect(r.seq).toBe(1);
    await until(() => delivered.length === 3, 'the messages of PAY');
    expect(durableAtDelivery).toEqual([true, true, true]);
    expect(delivered.map((m) => [m.subject, m.data, m.headers])).toEqual([
      ['orders.created', { id: 'o-1' }, undefined],
      ['orders.paid', { id: 'o-1', paid: 5 }, undefined],
      ['audit.payments', { kind: 'pay' }, { 'x-kind': 'pay' }],
    ]);
    // The journal keeps the messages with their entry; a note publishes nothing.
    await ref.send({ type: 'NOTE' });
    const entries = [];
    for await (const e of ref.journal()) entries.push(e);
    expect(entries.map((e) => e.outbox?.length ?? 0)).toEqual([2, 0]);
    expect(entries[1]).not.toHaveProperty('outbox');

    // A delivery that finishes while a later entry is being written does
    // not run ahead of that write.
    let release!: () => void;
    hold = new Promise<void>((r) => (release = r));
    await ref.send({ type: 'PAY', amount: 1 });
    g.close();
    const later = ref.send({ type: 'PAY', amount: 1 });
    await ticks();
    hold = undefined;
    release();
    await until(() => delivered.length === 5, 'the messages of seq 3');
    await ticks(100);
    expect(delivered.map((m) => m.seq)).toEqual([0, 1, 1, 3, 3]);
    g.open();
    expect((await later).seq).toBe(4);
    await until(() => delivered.length === 7, 'the messages of seq 4');
    expect(durableAtDelivery).toEqual(Array(7).fill(true));
    expect(system.stats().published).toBe(7);
    await system.stop();
  });

  it('publish - message ids are <system>/<type>/<id>/<seq>/<index>, unique, and the same on every retry', async () => {
    const rec = recorder();
    let failuresLeft = 3;
    const system = await createActorSystem({
      name: 'shop',
      entities: { order: orderMachine },
      logger: quietLogger(),
      publishBackoffMs: 1,
      publisher: (m) => {
        rec.attempts.push(m.id);
        if (failuresLeft-- > 0) return Promise.reject(new Error('flaky'));
        rec.delivered.push(m);
      },
    });
    for (const id of ['o-1', 'a/b%c']) {
      const ref = system.entity('order', id);
      for (let i = 0; i < 3; i++) await ref.send({ type: 'PAY', amount: 1 });
    }
    await until(() => rec.delivered.length === 14, 'every message');
    const ids = rec.ids();
    expect(new Set(ids).size).toBe(ids.length);
    // Three attempts failed and were retried with the same id: per entity,
    // the attempts are the deliveries with some repeated in place.
    expect(rec.attempts).toHaveLength(ids.length + 3);
    for (const prefix of ['shop/order/o-1/', 'shop/order/a%2Fb%25c/']) {
      const attempts = rec.attempts.filter((id) => id.startsWith(prefix));
      const collapsed = attempts.filter((id, i) => id !== attempts[i - 1]);
      expect(collapsed).toEqual(ids.filter((id) => id.startsWith(prefix)));
    }
    const expected: string[] = [];
    for (const [id, escaped] of [
      ['o-1', 'o-1'],
      ['a/b%c', 'a%2Fb%25c'],
    ] as const) {
      expected.push(`shop/order/${escaped}/0/0`);
      const ref = system.entity('order', id);
      for await (const entry of ref.journal()) {
        entry.outbox?.forEach((_, i) =>
          expected.push(`shop/order/${escaped}/${entry.seq}/${i}`),
        );
      }
    }
    expect([...ids].sort()).toEqual([...expected].sort());
    for (const m of rec.delivered) {
      expect(m.id).toBe(
        `shop/order/${m.entity.id.replace(/%/g, '%25').replace(/\//g, '%2F')}/${m.seq}/${m.index}`,
      );
    }
    await system.stop();
  });

  it('publish - passivation, activation, time travel and a restart do not deliver a message again', async () => {
    const store = memoryStore();
    const rec = recorder();
    const options = {
      name: 't',
      entities: { order: orderMachine },
      store,
      logger: quietLogger(),
      snapshotEvery: 2,
    };
    const system = await createActorSystem({
      ...options,
      publisher: rec.publisher,
    });
    const ref = system.entity('order', 'o-1');
    for (let i = 0; i < 3; i++) await ref.send({ type: 'PAY', amount: 1 });
    await until(() => rec.delivered.length === 7, 'the first messages');
    expect(await ref.passivate()).toBe(true);
    expect(ref.isLive()).toBe(false);
    expect((await ref.snapshot()).seq).toBe(3); // activates again
    expect((await ref.stateAt(2)).context).toMatchObject({ paid: 2 });
    await ref.send({ type: 'PAY', amount: 1 });
    await until(
      () => rec.delivered.length === 9,
      'the messages of the last PAY',
    );
    await ticks();
    expect(rec.ids()).toHaveLength(new Set(rec.ids()).size);
    await system.stop();

    const again = recorder();
    const restarted = await createActorSystem({
      ...options,
      publisher: again.publisher,
    });
    // Nothing is due: the timer index holds no wake-up for the order.
    expect(restarted.stats().pendingWakeups).toBe(0);
    await restarted.entity('order', 'o-1').send({ type: 'NOTE' });
    await new Promise((r) => setTimeout(r, 20));
    expect(again.delivered).toHaveLength(0);
    await restarted.stop();
  });

  it('publish - a crash after the write and before delivery delivers after recovery (memory store, same process)', async () => {
    const store = memoryStore();
    // The first system delivers the initial message, then its publisher
    // hangs; it is abandoned without stop(), as a crash would leave it.
    const firstDelivered: string[] = [];
    const crashed = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      store,
      logger: quietLogger(),
      passivateAfterMs: 0,
      publishTimeoutMs: 600_000,
      publisher: (m) => {
        if (firstDelivered.length > 0)
          return new Promise<void>(() => undefined);
        firstDelivered.push(m.id);
      },
    });
    await crashed.entity('order', 'o-1').send({ type: 'PAY', amount: 1 });
    await crashed.entity('order', 'o-1').send({ type: 'PAY', amount: 2 });
    expect(firstDelivered).toEqual(['t/order/o-1/0/0']);

    const rec = recorder();
    const recovered = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      store,
      logger: quietLogger(),
      publisher: rec.publisher,
    });
    // No event is sent: the timer index wakes the order to deliver.
    const all = [
      't/order/o-1/0/0',
      't/order/o-1/1/0',
      't/order/o-1/1/1',
      't/order/o-1/2/0',
      't/order/o-1/2/1',
    ];
    await until(
      () => all.slice(1).every((id) => rec.ids().includes(id)),
      'redelivery',
    );
    // Only what the first system delivered may come twice, and order holds.
    const ids = rec.ids();
    expect(
      ids
        .filter((id) => !all.slice(1).includes(id))
        .every((id) => firstDelivered.includes(id)),
    ).toBe(true);
    expect(ids).toEqual(all.filter((id) => ids.includes(id)));
    await recovered.stop();
  });

  it('publish - kill -9 between the durable write and delivery: a restarted process delivers every message (lmdb)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shardchart-publish-'));
    tempDirs.push(dir);
    const worker = fileURLToPath(
      new URL('./publish-worker.ts', import.meta.url),
    );
    const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--conditions=shardchart-source', worker, dir],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<void>((resolve) =>
      child.on('exit', () => resolve()),
    );
    await until(
      () => out.includes('SENT') || child.exitCode !== null,
      'the worker to send',
      60_000,
    );
    child.kill('SIGKILL');
    await exited;
    expect(err).toBe('');
    const acks = out.split('\n').filter((l) => l.startsWith('ACK '));
    expect(acks).toHaveLength(9);
    // The worker's publisher saw the first message of each order and hung.
    const attempted = out
      .split('\n')
      .filter((l) => l.startsWith('ATTEMPT '))
      .map((l) => l.slice(8));
    expect([...attempted].sort()).toEqual(
      ORDERS.map((id) => `${SYSTEM}/order/${id}/0/0`).sort(),
    );

    const rec = recorder();
    const { crashOrderMachine } = await import('./publish-worker.js');
    const system = await createActorSystem({
      name: SYSTEM,
      entities: { order: crashOrderMachine },
      store: lmdbStore({ path: dir }),
      logger: quietLogger(),
      publisher: rec.publisher,
    });
    await until(
      () => rec.delivered.length >= ORDERS.length * expectedIds('x').length,
      'every message after the crash',
    );
    for (const id of ORDERS) {
      expect(
        rec.ids().filter((m) => m.startsWith(`${SYSTEM}/order/${id}/`)),
      ).toEqual(expectedIds(id));
    }
    expect(
      rec.delivered.find((m) => m.id === `${SYSTEM}/order/o-2/3/0`)?.data,
    ).toEqual({ id: 'o-2', paid: 30 });
    await system.stop();
  }, 90_000);

  it('publish - messages of one entity are delivered one at a time, in journal order', async () => {
    const delivered = new Map<string, PublishedMessage[]>();
    const inFlight = new Map<string, number>();
    let overlaps = 0;
    let seed = 7;
    const random = (): number => (seed = (seed * 16807) % 2147483647) % 4;
    const system = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      logger: quietLogger(),
      publisher: async (m) => {
        const n = (inFlight.get(m.entity.id) ?? 0) + 1;
        inFlight.set(m.entity.id, n);
        if (n > 1) overlaps++;
        await new Promise((r) => setTimeout(r, random()));
        inFlight.set(m.entity.id, n - 1);
        delivered.set(m.entity.id, [...(delivered.get(m.entity.id) ?? []), m]);
      },
    });
    const ids = ['o-1', 'o-2', 'o-3'];
    await Promise.all(
      ids.flatMap((id) =>
        Array.from({ length: 20 }, (_, i) =>
          system.entity('order', id).send({ type: 'PAY', amount: i + 1 }),
        ),
      ),
    );
    await until(
      () => ids.every((id) => (delivered.get(id)?.length ?? 0) === 41),
      'every message',
    );
    expect(overlaps).toBe(0);
    for (const id of ids) {
      const got = delivered.get(id)!;
      const positions = got.map((m) => [m.seq, m.index]);
      const sorted = [...positions].sort(
        (a, b) => a[0]! - b[0]! || a[1]! - b[1]!,
      );
      expect(positions).toEqual(sorted);
      const paid = got
        .filter((m) => m.subject === 'orders.paid')
        .map((m) => (m.data as { paid: number }).paid);
      expect(paid).toEqual(
        Array.from({ length: 20 }, (_, i) => ((i + 1) * (i + 2)) / 2),
      );
    }
    await system.stop();
  });

  it('publish - a failing publisher (rejects, throws, hangs) is retried with backoff while events keep being applied', async () => {
    const delivered: PublishedMessage[] = [];
    const failures: string[] = [];
    let down = true;
    let call = 0;
    const system = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      logger: quietLogger(),
      publishBackoffMs: 1,
      publishTimeoutMs: 20,
      publisher: (m) => {
        if (down) {
          switch (call++ % 3) {
            case 0:
              failures.push('reject');
              return Promise.reject(new Error('broker down'));
            case 1:
              failures.push('throw');
              throw new Error('no connection');
            default:
              failures.push('hang');
              return new Promise<void>(() => undefined);
          }
        }
        delivered.push(m);
      },
    });
    const ref = system.entity('order', 'o-1');
    for (let i = 0; i < 5; i++) {
      expect((await ref.send({ type: 'PAY', amount: 1 })).seq).toBe(i + 1);
    }
    await until(() => failures.length >= 4, 'retries');
    expect(failures.slice(0, 4)).toEqual(['reject', 'throw', 'hang', 'reject']);
    expect(delivered).toHaveLength(0);
    expect(system.stats().publishFailures).toBeGreaterThanOrEqual(4);
    down = false;
    await until(
      () => delivered.length === 11,
      'delivery once the publisher is back',
    );
    expect(delivered.map((m) => `${m.seq}/${m.index}`)).toEqual([
      '0/0',
      ...Array.from({ length: 5 }, (_, i) => [
        `${i + 1}/0`,
        `${i + 1}/1`,
      ]).flat(),
    ]);
    await system.stop();
  });

  it('publish - entities with undelivered messages are not passivated when idle; a forced passivation keeps them and wakes the entity to retry', async () => {
    const rec = recorder();
    rec.state.down = true;
    const system = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      logger: quietLogger(),
      publishBackoffMs: 5,
      publisher: rec.publisher,
    });
    const ref = system.entity('order', 'o-1');
    await ref.send({ type: 'PAY', amount: 1 });
    await until(() => rec.attempts.length >= 1, 'a failed attempt');
    expect(await ref.passivate()).toBe(false);
    expect(ref.isLive()).toBe(true);
    expect(await ref.passivate({ force: true })).toBe(true);
    expect(ref.isLive()).toBe(false);
    rec.state.down = false;
    // Nothing is sent: the wake-up at the next retry brings the order back.
    await until(() => rec.delivered.length === 3, 'delivery after the wake-up');
    expect(rec.ids()).toEqual([
      't/order/o-1/0/0',
      't/order/o-1/1/0',
      't/order/o-1/1/1',
    ]);
    await system.stop();
  });

  it('publish - stop() with messages the publisher refuses keeps them; the next start delivers them', async () => {
    const store = memoryStore();
    const first = recorder();
    first.state.down = true;
    const options = {
      name: 't',
      entities: { order: orderMachine },
      store,
      logger: quietLogger(),
      publishBackoffMs: 1,
    };
    const system = await createActorSystem({
      ...options,
      publisher: first.publisher,
    });
    await system.entity('order', 'o-1').send({ type: 'PAY', amount: 1 });
    await until(() => first.attempts.length >= 1, 'a failed attempt');
    await system.stop();
    const attemptsAtStop = first.attempts.length;
    await new Promise((r) => setTimeout(r, 20));
    expect(first.attempts).toHaveLength(attemptsAtStop); // a stopped system retries nothing

    const rec = recorder();
    const restarted = await createActorSystem({
      ...options,
      publisher: rec.publisher,
    });
    await until(() => rec.delivered.length === 3, 'delivery after the restart');
    expect(rec.ids()).toEqual([
      't/order/o-1/0/0',
      't/order/o-1/1/0',
      't/order/o-1/1/1',
    ]);
    await restarted.stop();
  });

  it('publish - sends are refused with a retryable OUTBOX_FULL once publishPendingMax messages wait', async () => {
    const rec = recorder();
    rec.state.down = true;
    const system = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      logger: quietLogger(),
      publishBackoffMs: 1,
      publishPendingMax: 3,
      publisher: rec.publisher,
    });
    const ref = system.entity('order', 'o-1');
    await ref.send({ type: 'PAY', amount: 1 }); // 1 + 2 messages wait
    const err = await ref.send({ type: 'PAY', amount: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ShardchartError);
    expect((err as ShardchartError).code).toBe('OUTBOX_FULL');
    expect((err as ShardchartError).retryable).toBe(true);
    expect((err as Error).message).toContain('publishPendingMax');
    rec.state.down = false;
    await until(() => rec.delivered.length === 3, 'delivery');
    expect((await ref.send({ type: 'PAY', amount: 1 })).seq).toBe(2);
    await system.stop();
  });

  it('publish - a bad subject, header or data fails the event with EVENT_FAILED and keeps nothing of it', async () => {
    const rec = recorder();
    const system = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      logger: quietLogger(),
      restart: { attemptsMax: 100, backoffMs: 1 },
      publisher: rec.publisher,
    });
    const ref = system.entity('order', 'o-1');
    await ref.send({ type: 'PAY', amount: 1 });
    const bad: [OrderEvent, string][] = [
      [{ type: 'PUBLISH', subject: '' }, 'non-empty string subject'],
      [{ type: 'PUBLISH', subject: 42 }, 'non-empty string subject'],
      [{ type: 'PUBLISH', subject: 'orders.*' }, 'wildcards'],
      [{ type: 'PUBLISH', subject: 'orders..paid' }, 'dot-separated'],
      [{ type: 'PUBLISH', subject: 'orders paid' }, 'without spaces'],
      [{ type: 'PUBLISH', subject: 'shardchart.t.in.order.o-2' }, 'reserved'],
      [{ type: 'PUBLISH', subject: '$JS.API.INFO' }, 'reserved'],
      [
        { type: 'PUBLISH', subject: 'a.b', headers: { 'Nats-Msg-Id': 'x' } },
        'Nats-Msg-Id',
      ],
      [
        { type: 'PUBLISH', subject: 'a.b', headers: { 'bad:name': 'v' } },
        'header name',
      ],
      [{ type: 'PUBLISH', subject: 'a.b', headers: { k: 1 } }, 'header "k"'],
      [{ type: 'PUBLISH', subject: 'a.b', headers: 'k' }, 'object of strings'],
      [{ type: 'PUBLISH_DATE' }, 'data.at'],
      [{ type: 'PUBLISH_FN' }, 'data.f'],
      [{ type: 'PUBLISH_EXTRA' }, 'unknown field "payload"'],
      [{ type: 'PUBLISH_BIG' }, 'cannot be delivered'],
      [{ type: 'PUBLISH_NOTHING' }, 'expects { subject'],
    ];
    for (const [event, hint] of bad) {
      const err = await ref.send(event).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, JSON.stringify(event)).toBeInstanceOf(ShardchartError);
      expect((err as ShardchartError).code).toBe('EVENT_FAILED');
      expect((err as Error).message).toContain(hint);
      expect((err as Error).message).toContain('publish');
      // An applied event ends the run of failures (and its growing backoff).
      await ref.send({ type: 'NOTE' });
    }
    const entries = [];
    for await (const e of ref.journal()) entries.push(e);
    expect(entries.map((e) => e.event.type)).toEqual([
      'PAY',
      ...bad.map(() => 'NOTE'),
    ]);
    expect(await system.deadLetters()).toHaveLength(bad.length);
    const ok = await ref.send({
      type: 'PUBLISH',
      subject: 'orders.noted',
      data: null,
      headers: { 'x-a': 'b' },
    });
    expect(ok.seq).toBe(bad.length + 2);
    await until(() => rec.delivered.length === 4, 'the valid messages');
    expect(rec.delivered.map((m) => m.subject)).toEqual([
      'orders.created',
      'orders.paid',
      'audit.payments',
      'orders.noted',
    ]);
    expect(rec.delivered[3]!.data).toBeNull();
    await system.stop();
  });

  it('publish - a plain XState actor runs the same machine unchanged; publish is an emit nobody needs to handle', async () => {
    const rec = recorder();
    const system = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      logger: quietLogger(),
      publisher: rec.publisher,
    });
    const events: OrderEvent[] = [
      { type: 'PAY', amount: 2 },
      { type: 'NOTE' },
      { type: 'PAY', amount: 3 },
    ];
    let state;
    for (const e of events) state = await system.entity('order', 'o-1').send(e);
    await system.stop();

    const plain = createActor(orderMachine, {
      input: { entityId: 'o-1' },
    }).start();
    for (const e of events) plain.send(e);
    expect(plain.getSnapshot().context).toEqual(state?.context);
    expect(plain.getSnapshot().status).toBe('active');

    const emitted: unknown[] = [];
    const listened = createActor(orderMachine, { input: { entityId: 'o-2' } });
    listened.on(publishEventType, (e) => emitted.push(e));
    listened.start();
    listened.send({ type: 'PAY', amount: 4 });
    expect(emitted).toEqual([
      {
        type: 'shardchart.publish',
        message: { subject: 'orders.created', data: { id: 'o-2' } },
      },
      {
        type: 'shardchart.publish',
        message: { subject: 'orders.paid', data: { id: 'o-2', paid: 4 } },
      },
      {
        type: 'shardchart.publish',
        message: {
          subject: 'audit.payments',
          data: { kind: 'pay' },
          headers: { 'x-kind': 'pay' },
        },
      },
    ]);
    // A pure transition (what recovery replays with) returns the emit as an
    // action and runs nothing.
    const [next, actions] = transition(orderMachine, listened.getSnapshot(), {
      type: 'PAY',
      amount: 1,
    });
    expect(next.context.paid).toBe(5);
    expect(
      actions.filter((a) => (a.type as string) === 'xstate.emit'),
    ).toHaveLength(2);
    expect(emitted).toHaveLength(3);
  });

  it('publish - without a publisher option the messages stay in the journal and a warning is logged once', async () => {
    const { logger, lines } = memoryLogger('warn');
    const system = await createActorSystem({
      name: 't',
      entities: { order: orderMachine },
      logger,
    });
    const ref = system.entity('order', 'o-1');
    await ref.send({ type: 'PAY', amount: 1 });
    await ref.send({ type: 'PAY', amount: 1 });
    await ticks();
    const warnings = lines.filter((l) =>
      String(l.msg).includes('no `publisher` option'),
    );
    expect(warnings).toHaveLength(1);
    const entries = [];
    for await (const e of ref.journal()) entries.push(e);
    expect(entries.map((e) => e.outbox?.map((m) => m.subject))).toEqual([
      ['orders.paid', 'audit.payments'],
      ['orders.paid', 'audit.payments'],
    ]);
    expect(await ref.passivate()).toBe(true);
    await system.stop();
  });

  it('publish - a child machine cannot publish: the message is dropped with an error log', async () => {
    const { logger, lines } = memoryLogger('error');
    const rec = recorder();
    const child = createMachine({
      on: { POKE: { actions: publish({ subject: 'child.poked' }) } },
    });
    const parent = setup({ actors: { child } }).createMachine({
      initial: 'idle',
      states: {
        idle: { on: { GO: 'running' } },
        running: {
          invoke: { id: 'c', src: 'child' },
          on: { POKE: { actions: sendTo('c', { type: 'POKE' }) } },
        },
      },
    });
    const system = await createActorSystem({
      name: 't',
      entities: { parent },
      logger,
      publisher: rec.publisher,
    });
    expect(
      (await system.entity('parent', 'p-1').send({ type: 'GO' })).value,
    ).toBe('running');
    await system.entity('parent', 'p-1').send({ type: 'POKE' });
    await until(
      () =>
        lines.some((l) => String(l.msg).includes('child machine ran publish')),
      'the error log',
    );
    expect(rec.delivered).toHaveLength(0);
    await system.stop();
  });

  it('publish - a cluster node sets the publisher unless the option gave one; messages wait until it does', async () => {
    const stats = { published: 0, publishFailures: 0 };
    const options = { timeoutMs: 1_000, backoffMs: 1, pendingMax: 10 };
    const message: PublishedMessage = {
      id: 's/order/o-1/1/0',
      subject: 'a.b',
      data: 1,
      headers: undefined,
      entity: { type: 'order', id: 'o-1' },
      seq: 1,
      index: 0,
      at: 0,
    };
    const log = pino({ level: 'silent' });
    const waiting = new Publishing(
      's',
      systemClock,
      log,
      options,
      stats,
      undefined,
      true,
    );
    await expect(waiting.deliver(message)).rejects.toThrow(
      /not set its publisher/,
    );
    const viaNode: string[] = [];
    waiting.setPublisher((m) => void viaNode.push(m.id));
    await waiting.deliver(message);
    expect(viaNode).toEqual(['s/order/o-1/1/0']);

    const own: string[] = [];
    const explicit = new Publishing(
      's',
      systemClock,
      log,
      options,
      stats,
      (m) => void own.push(m.id),
      true,
    );
    explicit.setPublisher(() => {
      throw new Error('the node publisher must not replace the option');
    });
    await explicit.deliver(message);
    expect(own).toEqual(['s/order/o-1/1/0']);
  });
});
