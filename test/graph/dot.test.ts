/**
 * toDot, checked by Graphviz itself: the output must be accepted by
 * `dot -Tsvg` without warnings, and the drawing must show every state and
 * transition label, the live highlight and the pending deadlines. A
 * property test feeds random machines with hostile names through the same
 * check.
 */
import { test as propertyTest } from '@fast-check/vitest';
import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { orderMachine } from '../../src/cli/order-machine.js';
import { toDot, toGraph } from '../../src/graph/index.js';
import { palette, safeIds } from '../../src/graph/shared.js';
import { arbitraryMachine } from './arbitrary.js';
import { hostile, kitchenSink } from './fixtures.js';
import { nodeFill, runDot, svgTexts } from './graphviz.js';

const envRuns = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? '');
const runs = Number.isInteger(envRuns) && envRuns > 0 ? envRuns : 15;

/** Renders with dot and checks it drew every state. Returns the SVG. */
function expectDrawn(machine: Parameters<typeof toDot>[0], options: Parameters<typeof toDot>[1] = {}): string {
  const result = runDot(toDot(machine, options));
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const texts = svgTexts(result.svg);
  const graph = toGraph(machine, options);
  for (const node of graph.nodes) {
    const label = node.type === 'history' ? (node.history === 'deep' ? 'H*' : 'H') : node.key;
    expect(texts, `state ${node.id}`).toContain(label);
  }
  return result.svg;
}

function liveOrder() {
  const actor = createActor(orderMachine, { input: { entityId: 'o-1', entityType: 'order' } }).start();
  actor.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
  actor.send({ type: 'CHECKOUT' });
  actor.send({ type: 'PICKED' });
  const snapshot = actor.getPersistedSnapshot();
  actor.stop();
  return snapshot;
}

describe('dot', () => {
  it('toDot - Graphviz draws every state and every transition label of the order machine', () => {
    const svg = expectDrawn(orderMachine);
    const text = svgTexts(svg).join('\n');
    for (const line of ['CHECKOUT [hasItems]', 'after 400ms', '/ countTimer', '[canRetryPayment]', 'RESUME', 'done', 'ADD_ITEM / assign(items, totalCents)']) {
      expect(text).toContain(line);
    }
  });

  it('toDot - draws compound states as clusters, regions dashed, history as circles, finals doubled', () => {
    const dot = toDot(orderMachine);
    expect(dot).toMatch(/subgraph "cluster_s_order_processing" \{\n\s+graph \[[^\]]*style="rounded,filled"/);
    expect(dot).toMatch(/subgraph "cluster_s_order_processing_payment" \{\n\s+graph \[[^\]]*style="dashed,rounded,filled"/);
    expect(dot).toMatch(/s_order_processing_resume \[[^\]]*shape=circle[^\]]*<B>H\*<\/B>/);
    expect(dot).toMatch(/s_order_completed \[[^\]]*peripheries=2/);
    expect(dot).toMatch(/s_order__initial -> s_order_cart;/);
    // An edge into a compound state stops at its border.
    expect(dot).toMatch(/s_order_cart -> s_order_processing__anchor \[.*lhead="cluster_s_order_processing"/);
  });

  it('toDot - fills the active states and shows pending deadlines and remembered history', () => {
    const snapshot = liveOrder();
    const stored = {
      v: 1, seq: 3, at: 0, eventIds: [], state: snapshot,
      timers: [{
        id: 'xstate.after.400.order.processing.payment.authorizing',
        event: { type: 'xstate.after.400.order.processing.payment.authorizing' },
        source: '', target: '', delayMs: 400, dueAt: 400,
      }],
    };
    const svg = expectDrawn(orderMachine, { snapshot: stored });
    const ids = safeIds(toGraph(orderMachine), 's_');
    expect(nodeFill(svg, ids.get('order.processing.payment.authorizing')!)).toBe(palette.active);
    expect(nodeFill(svg, ids.get('order.processing.shipping.packing')!)).toBe(palette.active);
    expect(nodeFill(svg, ids.get('order.cart')!)).toBe(palette.state);
    expect(svgTexts(svg)).toContain('due 00:00:00.400Z');
    expect(svgTexts(svg).join(' ')).toContain('seq 3');

    const actor = createActor(orderMachine, { input: { entityId: 'o-1', entityType: 'order' } }).start();
    actor.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 1 });
    actor.send({ type: 'CHECKOUT' });
    actor.send({ type: 'PAUSE' });
    const dot = toDot(orderMachine, { snapshot: actor.getPersistedSnapshot() });
    actor.stop();
    expect(runDot(dot).code).toBe(0);
    expect(dot).toMatch(/s_order_processing_resume -> s_order_processing_payment_authorizing \[style=dotted/);
    expect(dot).toMatch(/s_order_processing_resume -> s_order_processing_shipping_picking \[style=dotted/);
  });

  it('toDot - shows invocations, entry/exit and eventless transitions of the kitchen-sink machine', () => {
    const svg = expectDrawn(kitchenSink);
    const texts = svgTexts(svg);
    expect(texts).toContain('invoke loadUser #user');
    expect(texts).toContain('entry / logEnter');
    expect(texts).toContain('exit / logExit, notify');
    expect(texts).toContain('TICK / notify');
    expect(texts.join(' ')).toContain('always [in(#sink.work.fetch.loaded)]');
    expect(texts).toContain('default');
  });

  it('toDot - escapes ids and labels with quotes, dots, HTML and DOT syntax', () => {
    const svg = expectDrawn(hostile);
    const texts = svgTexts(svg);
    for (const label of ['GO; --> x', 'A&B <b>', 'x:y', '#35;']) expect(texts).toContain(label);
  });

  propertyTest.prop([arbitraryMachine], { numRuns: runs })(
    'toDot - Graphviz accepts any machine and draws every state',
    ({ machine, keys }) => {
      const result = runDot(toDot(machine));
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const texts = new Set(svgTexts(result.svg));
      for (const key of keys) expect(texts.has(key), `state "${key}"`).toBe(true);
    },
  );
});
