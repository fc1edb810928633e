/**
 * toGraph: the JSON every format is drawn from. Checks the static shape of
 * real machines (node kinds, initial and history markers, transition
 * triggers, guards, delays, actions) and the live overlay computed from
 * each snapshot form a user may hold, including a stored snapshot written
 * by a real actor system with durable timers.
 */
import { pino } from 'pino';
import { createActor, setup } from 'xstate';
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { orderMachine } from '../../src/cli/order-machine.js';
import {
  createActorSystem,
  createSimulatedClock,
  isShardchartError,
  type StoredSnapshot,
} from '../../src/index.js';
import { toGraph, type GraphModel } from '../../src/graph/index.js';
import { describeGuard, formatDelay } from '../../src/graph/labels.js';
import { hostile, kitchenSink } from './fixtures.js';

const input = { entityId: 'o-1', entityType: 'order' };

function edge(graph: GraphModel, source: string, event: string, n = 0) {
  const found = graph.edges.filter((e) => e.source === source && e.event === event)[n];
  if (!found) throw new Error(`no edge ${source} --${event}--> (#${n})`);
  return found;
}

function node(graph: GraphModel, id: string) {
  const found = graph.nodes.find((n) => n.id === id);
  if (!found) throw new Error(`no node ${id}`);
  return found;
}

/** Every node and edge refers to nodes that exist, parents list their children. */
function expectConsistent(graph: GraphModel): void {
  const ids = new Set(graph.nodes.map((n) => n.id));
  expect(ids.size).toBe(graph.nodes.length);
  expect(ids.has(graph.root)).toBe(true);
  for (const n of graph.nodes) {
    if (n.parent !== null) expect(node(graph, n.parent).children).toContain(n.id);
    for (const c of n.children) expect(node(graph, c).parent).toBe(n.id);
    if (n.initial !== undefined) expect(n.children).toContain(n.initial);
  }
  for (const e of graph.edges) {
    expect(ids.has(e.source)).toBe(true);
    for (const t of e.targets) expect(ids.has(t)).toBe(true);
  }
  expect(JSON.parse(JSON.stringify(graph))).toEqual(graph);
}

describe('graph model', () => {
  it('toGraph - names every state node with its kind, initial child and history kind', () => {
    const graph = toGraph(orderMachine);
    expectConsistent(graph);
    expect(graph.root).toBe('order');
    expect(graph.nodes).toHaveLength(17);
    expect(node(graph, 'order')).toMatchObject({ type: 'compound', parent: null, initial: 'order.cart' });
    expect(node(graph, 'order.processing').type).toBe('parallel');
    expect(node(graph, 'order.processing').children).toEqual([
      'order.processing.payment',
      'order.processing.shipping',
      'order.processing.resume',
    ]);
    expect(node(graph, 'order.processing.payment').initial).toBe('order.processing.payment.authorizing');
    expect(node(graph, 'order.processing.resume')).toMatchObject({ type: 'history', history: 'deep' });
    expect(node(graph, 'order.processing.payment.captured').type).toBe('final');
    expect(node(graph, 'order.cart').type).toBe('atomic');
    expect(graph.live).toBeUndefined();
  });

  it('toGraph - labels transitions EVENT [guard] / actions and after <delay>', () => {
    const graph = toGraph(orderMachine);
    expect(edge(graph, 'order.cart', 'CHECKOUT')).toMatchObject({
      kind: 'event',
      targets: ['order.processing'],
      guard: 'hasItems',
      actions: [],
      label: 'CHECKOUT [hasItems]',
    });
    const addItem = edge(graph, 'order.cart', 'ADD_ITEM');
    expect(addItem.targets).toEqual([]);
    expect(addItem.label).toBe('ADD_ITEM / assign(items, totalCents)');
    const authorizing = 'order.processing.payment.authorizing';
    expect(edge(graph, authorizing, 'PAYMENT_FAILED', 0)).toMatchObject({
      guard: 'canRetryPayment',
      targets: ['order.processing.payment.retrying'],
      label: 'PAYMENT_FAILED [canRetryPayment] / assign(paymentAttempts)',
    });
    expect(edge(graph, authorizing, 'PAYMENT_FAILED', 1)).toMatchObject({
      targets: ['order.cancelled'],
      label: 'PAYMENT_FAILED / assign(cancelReason)',
    });
    expect(edge(graph, authorizing, `xstate.after.400.${authorizing}`)).toMatchObject({
      kind: 'delayed',
      delay: 400,
      actions: ['countTimer'],
      label: 'after 400ms / countTimer',
    });
    expect(edge(graph, 'order.processing', 'xstate.done.state.order.processing')).toMatchObject({
      kind: 'done',
      targets: ['order.completed'],
      label: 'done',
    });
    expect(edge(graph, 'order.paused', 'RESUME').targets).toEqual(['order.processing.resume']);
    // XState schedules `after` timers with entry/exit actions of its own;
    // the graph shows them as delayed transitions only.
    expect(node(graph, authorizing).entry).toEqual([]);
    expect(node(graph, authorizing).exit).toEqual([]);
  });

  it('toGraph - shows invocations, entry/exit, eventless, named delays, combined guards, re-entry and history targets', () => {
    const graph = toGraph(kitchenSink);
    expectConsistent(graph);
    const loading = 'sink.work.fetch.loading';
    expect(node(graph, loading).invoke).toEqual([{ id: 'user', src: 'loadUser' }]);
    expect(edge(graph, loading, 'xstate.done.actor.user')).toMatchObject({
      kind: 'invokeDone',
      label: 'done: user / assign(ok)',
    });
    expect(edge(graph, loading, 'xstate.error.actor.user', 0)).toMatchObject({
      kind: 'invokeError',
      guard: 'canRetry',
      label: 'error: user [canRetry] / assign(tries)',
    });
    expect(edge(graph, loading, 'xstate.error.actor.user', 1).targets).toEqual(['sink.gaveUp']);
    const failed = 'sink.work.fetch.failed';
    expect(edge(graph, failed, `xstate.after.shortDelay.${failed}`)).toMatchObject({
      delay: 'shortDelay',
      label: 'after shortDelay',
    });
    expect(edge(graph, failed, 'RETRY').guard).toBe('canRetry && !isOk');
    expect(edge(graph, 'sink.work.clock.ticking', '')).toMatchObject({
      kind: 'eventless',
      label: 'always [in(#sink.work.fetch.loaded)]',
    });
    expect(edge(graph, 'sink.work.clock.ticking', 'xstate.after.60000.sink.work.clock.ticking').label).toBe('after 1min');
    expect(edge(graph, 'sink.idle', 'START').targets).toEqual([
      'sink.work.fetch.loading',
      'sink.work.clock.ticking',
    ]);
    expect(edge(graph, 'sink.idle', 'RESET')).toMatchObject({ reenter: true, targets: ['sink.idle'] });
    expect(edge(graph, 'sink.away', '*').label).toBe('* / notify');
    expect(node(graph, 'sink.work')).toMatchObject({ entry: ['logEnter'], exit: ['logExit', 'notify'] });
    expect(node(graph, 'sink.work.memo')).toMatchObject({ history: 'shallow', historyTarget: ['sink.work.fetch'] });
    expect(node(graph, 'sink.work.clock.stopped').type).toBe('parallel');
  });

  it('toGraph - keeps ids with dots, quotes and spaces as XState spells them', () => {
    const graph = toGraph(hostile);
    expectConsistent(graph);
    expect(graph.root).toBe('host "ile" <m>');
    expect(node(graph, 'my id #1').key).toBe('a b.c');
    expect(edge(graph, 'host "ile" <m>.say "hi"', 'GO; --> x').targets).toEqual(['my id #1']);
  });

  it('labels - delays read as people write them, combined guards keep their grouping', () => {
    expect([400, 1_000, 1_500, 60_000, 90_000, 7_200_000, 1_234, 'slow'].map(formatDelay)).toEqual([
      '400ms', '1s', '1.5s', '1min', '90s', '2h', '1234ms', 'slow',
    ]);
    const guard = kitchenSink.root.states.work!.states.fetch!.states.failed!.on.RETRY[0]!.guard;
    expect(describeGuard(guard)).toBe('canRetry && !isOk');
    expect(describeGuard({ type: 'isAdmin', params: { level: 2 } })).toBe('isAdmin');
    expect(describeGuard(function namedCheck() { return true; })).toBe('namedCheck');
    expect(describeGuard(() => true)).toBe('(inline)');
  });
});

describe('graph model - live', () => {
  it('toGraph - a persisted, a live and an entity snapshot give the same active configuration', () => {
    const actor = createActor(orderMachine, { input }).start();
    actor.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
    actor.send({ type: 'CHECKOUT' });
    actor.send({ type: 'PICKED' });
    const expected = [
      'order',
      'order.processing',
      'order.processing.payment',
      'order.processing.payment.authorizing',
      'order.processing.shipping',
      'order.processing.shipping.packing',
    ];
    const persisted = toGraph(orderMachine, { snapshot: actor.getPersistedSnapshot() });
    const live = toGraph(orderMachine, { snapshot: actor.getSnapshot() });
    const entity = toGraph(orderMachine, {
      snapshot: { seq: 3, value: actor.getSnapshot().value, context: {}, status: 'active', changed: false },
    });
    actor.stop();
    for (const graph of [persisted, live, entity]) {
      expectConsistent(graph);
      expect(graph.live?.active).toEqual(expected);
      expect(graph.nodes.filter((n) => n.active).map((n) => n.id)).toEqual(expected);
      expect(node(graph, 'order.cart').active).toBe(false);
    }
    expect(entity.live?.seq).toBe(3);
  });

  it('toGraph - history nodes list what they remember, from persisted and live snapshots', () => {
    const actor = createActor(orderMachine, { input }).start();
    actor.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
    actor.send({ type: 'CHECKOUT' });
    actor.send({ type: 'PICKED' });
    actor.send({ type: 'PAUSE' });
    const remembered = ['order.processing.payment.authorizing', 'order.processing.shipping.packing'];
    for (const snapshot of [actor.getPersistedSnapshot(), actor.getSnapshot()]) {
      const graph = toGraph(orderMachine, { snapshot });
      expect(graph.live?.active).toEqual(['order', 'order.paused']);
      expect(node(graph, 'order.processing.resume').remembers).toEqual(remembered);
      expect(graph.live?.history).toEqual({ 'order.processing.resume': remembered });
    }
    actor.stop();
  });

  it('toGraph - a stored snapshot from a real system marks pending timers on their transitions', async () => {
    const clock = createSimulatedClock(1_700_000_000_000);
    const store = memoryStore();
    const system = await createActorSystem({
      name: 'graph',
      entities: { order: orderMachine },
      store,
      clock,
      logger: pino({ level: 'silent' }),
      passivateAfterMs: 0,
    });
    try {
      const ref = system.entity('order', 'o-1');
      await ref.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
      await ref.send({ type: 'CHECKOUT' });
      clock.advance(100);
      await ref.send({ type: 'PICKED' });
      expect(await ref.passivate()).toBe(true);
      const stored = (await store.snapshots.load({ type: 'order', id: 'o-1' })) as StoredSnapshot;
      expect(stored.timers).toHaveLength(2);

      const graph = toGraph(orderMachine, { snapshot: stored });
      const authorizing = 'order.processing.payment.authorizing';
      const packing = 'order.processing.shipping.packing';
      expect(edge(graph, authorizing, `xstate.after.400.${authorizing}`).pending).toEqual({
        dueAt: 1_700_000_000_400,
        delayMs: 400,
      });
      expect(edge(graph, packing, `xstate.after.600.${packing}`).pending).toEqual({
        dueAt: 1_700_000_000_700,
        delayMs: 600,
      });
      expect(edge(graph, 'order.processing.payment.retrying', 'xstate.after.300.order.processing.payment.retrying').pending).toBeUndefined();
      expect(graph.live).toMatchObject({ seq: stored.seq, at: stored.at, status: 'active' });
      expect(graph.live?.timers).toEqual(stored.timers);
      // An explicit timers option wins over the snapshot's.
      const none = toGraph(orderMachine, { snapshot: stored, timers: [] });
      expect(none.edges.some((e) => e.pending)).toBe(false);
    } finally {
      await system.stop();
    }
  });

  it('toGraph - a running invocation is marked on its state', () => {
    const actor = createActor(kitchenSink).start();
    actor.send({ type: 'START' });
    const graph = toGraph(kitchenSink, { snapshot: actor.getSnapshot() });
    actor.stop();
    expect(node(graph, 'sink.work.fetch.loading').invoke).toEqual([{ id: 'user', src: 'loadUser', running: true }]);
  });
});

describe('graph model - bad input', () => {
  it('toGraph - refuses what is not a machine with MACHINE_INVALID', () => {
    for (const value of [undefined, null, 42, {}, { transition() {} }, setup({})]) {
      let caught: unknown;
      try {
        toGraph(value as never);
      } catch (err) {
        caught = err;
      }
      expect(isShardchartError(caught, 'MACHINE_INVALID'), typeof value).toBe(true);
      expect((caught as Error).name).toBe('DefinitionError');
    }
  });

  it('toGraph - refuses a snapshot it cannot read, and one from another machine', () => {
    for (const snapshot of [42, 'cart', [], { context: {} }]) {
      expect(() => toGraph(orderMachine, { snapshot })).toThrow(
        expect.objectContaining({ code: 'CONFIG_INVALID', name: 'ConfigError' }),
      );
    }
    expect(() => toGraph(orderMachine, { snapshot: { value: 'nowhere' } })).toThrow(
      expect.objectContaining({ code: 'SNAPSHOT_INVALID' }),
    );
  });
});
