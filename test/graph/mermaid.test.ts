/**
 * toMermaid, checked by Mermaid itself: every diagram is rendered with
 * `mermaid.render` in headless Chromium (one browser for the file), must
 * render without error, and must show every state, the transition labels,
 * and with a snapshot the active states styled. A property test renders
 * random machines with hostile names the same way.
 */
import { test as propertyTest } from '@fast-check/vitest';
import { createActor, createMachine } from 'xstate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderMachine } from '../../src/cli/order-machine.js';
import { toGraph, toMermaid, type GraphModel } from '../../src/graph/index.js';
import { safeIds } from '../../src/graph/shared.js';
import { mermaidText } from '../../src/graph/mermaid.js';
import { arbitraryMachine } from './arbitrary.js';
import { openBrowserPage, renderMermaid, type BrowserPage } from './browser.js';
import { hostile, kitchenSink } from './fixtures.js';

const envRuns = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? '');
const runs =
  Number.isInteger(envRuns) && envRuns > 0
    ? Math.max(1, Math.round(envRuns / 2))
    : 6;

let browser: BrowserPage;
beforeAll(async () => {
  browser = await openBrowserPage();
});
afterAll(async () => {
  await browser?.close();
});

function labelOf(node: GraphModel['nodes'][number]): string {
  return node.type === 'history'
    ? node.history === 'deep'
      ? 'H*'
      : 'H'
    : node.key;
}

/** Renders and checks every state is drawn; returns the texts and the SVG. */
async function expectRendered(text: string, graph: GraphModel) {
  const result = await renderMermaid(browser.page, text);
  expect(result.error, text).toBeUndefined();
  for (const node of graph.nodes) {
    expect(result.texts, `state ${node.id}`).toContain(labelOf(node));
  }
  return { texts: result.texts!, svg: result.svg! };
}

describe('mermaid', () => {
  it('toMermaid - Mermaid renders the order machine with every state and transition label', async () => {
    const text = toMermaid(orderMachine);
    expect(text.startsWith('stateDiagram-v2\n')).toBe(true);
    const { texts } = await expectRendered(text, toGraph(orderMachine));
    for (const label of [
      'CHECKOUT [hasItems]',
      'after 400ms / countTimer',
      'PAYMENT_FAILED [canRetryPayment] / assign(paymentAttempts)',
      'RESUME',
      'done',
      'ADD_ITEM / assign(items, totalCents)',
    ]) {
      expect(texts).toContain(label);
    }
  });

  it('toMermaid - writes composite states, -- between regions, [*] markers and H* history', () => {
    const text = toMermaid(orderMachine);
    expect(text).toContain(
      'state "processing" as s_order_processing\n    state s_order_processing {',
    );
    // Three regions in the parallel state: two separators.
    const processing = text.slice(text.indexOf('state s_order_processing {'));
    const body = processing.slice(0, processing.indexOf('\n    }\n'));
    expect(body.match(/^ {6}--$/gm)).toHaveLength(2);
    expect(text).toContain('[*] --> s_order_cart');
    expect(text).toContain('s_order_completed --> [*]');
    expect(text).toContain('state "H#42;" as s_order_processing_resume');
  });

  it('toMermaid - styles the active states and writes pending deadlines', async () => {
    const actor = createActor(orderMachine, {
      input: { entityId: 'o-1', entityType: 'order' },
    }).start();
    actor.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
    actor.send({ type: 'CHECKOUT' });
    const stored = {
      v: 1,
      seq: 2,
      at: 0,
      eventIds: [],
      state: actor.getPersistedSnapshot(),
      timers: [
        {
          id: 'xstate.after.400.order.processing.payment.authorizing',
          event: {
            type: 'xstate.after.400.order.processing.payment.authorizing',
          },
          source: '',
          target: '',
          delayMs: 400,
          dueAt: 400,
        },
      ],
    };
    actor.stop();
    const graph = toGraph(orderMachine, { snapshot: stored });
    const { texts, svg } = await expectRendered(
      toMermaid(orderMachine, { snapshot: stored }),
      graph,
    );
    expect(texts).toContain('after 400ms / countTimer (due 00:00:00.400Z)');

    const ids = safeIds(graph, 's_');
    const activeLeaves = [
      ...svg.matchAll(
        /<g class="node active[^"]*" id="[^"]*?-state-(s_[A-Za-z0-9_]+)-\d+"/g,
      ),
    ].map((m) => m[1]);
    expect(activeLeaves.sort()).toEqual(
      [
        'order.processing.payment.authorizing',
        'order.processing.shipping.picking',
      ]
        .map((id) => ids.get(id))
        .sort(),
    );
    const activeGroups = [
      ...svg.matchAll(
        /<g class="activeGroup[^"]*" id="[^"]*" data-id="(s_[A-Za-z0-9_]+)"/g,
      ),
    ].map((m) => m[1]);
    expect(activeGroups.sort()).toEqual(
      [
        'order.processing',
        'order.processing.payment',
        'order.processing.shipping',
      ]
        .map((id) => ids.get(id))
        .sort(),
    );

    actor.stop();
  });

  it('toMermaid - lists what a history state remembers', async () => {
    // Events are sent synchronously, before the 400 ms timer could fire.
    const actor = createActor(orderMachine, {
      input: { entityId: 'o-1', entityType: 'order' },
    }).start();
    actor.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
    actor.send({ type: 'CHECKOUT' });
    actor.send({ type: 'PAUSE' });
    const paused = actor.getPersistedSnapshot();
    actor.stop();
    const { texts } = await expectRendered(
      toMermaid(orderMachine, { snapshot: paused }),
      toGraph(orderMachine, { snapshot: paused }),
    );
    const remembered = texts.filter((t) => t.startsWith('↺ '));
    expect(remembered).toHaveLength(1);
    expect(remembered[0]!.slice(2).split(', ').sort()).toEqual([
      'authorizing',
      'picking',
    ]);
  });

  it('toMermaid - lists entry, invoke and internal transitions of simple states', async () => {
    const actor = createActor(kitchenSink).start();
    actor.send({ type: 'START' });
    const snapshot = actor.getSnapshot();
    actor.stop();
    const { texts } = await expectRendered(
      toMermaid(kitchenSink, { snapshot }),
      toGraph(kitchenSink, { snapshot }),
    );
    expect(texts).toContain('invoke loadUser #user (running)');
    expect(texts).toContain('* / notify');
    expect(texts).toContain('always [in(#sink.work.fetch.loaded)]');
    expect(texts).toContain('RETRY [canRetry && !isOk]');
  });

  it('toMermaid - escapes ids and labels with quotes, dots, arrows, entities and HTML', async () => {
    const { texts } = await expectRendered(
      toMermaid(hostile),
      toGraph(hostile),
    );
    for (const label of ['GO; --> x', 'A&B <b>', 'x:y', '#35;'])
      expect(texts).toContain(label);
    expect(mermaidText('a "b" #1; <c>')).toBe(
      'a #34;b#34; #35;1#59; #60;c#62;',
    );
  });

  it('toMermaid - underscores, stars, tildes and dollars that Markdown or KaTeX would turn into emphasis or formulas are drawn as written', async () => {
    // Mermaid reads labels as Markdown: "a?_a_b" was drawn as "a?", italic
    // "a", "b"; and "$$x^2$$" as a KaTeX formula.
    expect(mermaidText('ADD_ITEM')).toBe('ADD_ITEM');
    expect(mermaidText('a?_a_b *c* ~d~ _e')).toBe(
      'a?#95;a_b #42;c#42; #126;d#126; #95;e',
    );
    const marked = createMachine({
      id: 'md',
      initial: 'a?_a_b',
      states: {
        'a?_a_b': { on: { GO: '**bold**' } },
        '**bold**': { on: { ADD_ITEM: '~~gone~~' } },
        '~~gone~~': { on: { X: '$$x^2$$' } },
        '$$x^2$$': { on: { Y: '[a](b)' } },
        '[a](b)': { on: { Z: '<b>h</b> &amp;' } },
        '<b>h</b> &amp;': {},
      },
    });
    const { texts } = await expectRendered(toMermaid(marked), toGraph(marked));
    for (const label of [
      'a?_a_b',
      '**bold**',
      '~~gone~~',
      'ADD_ITEM',
      '$$x^2$$',
      '[a](b)',
      '<b>h</b> &amp;',
    ])
      expect(texts).toContain(label);
  });

  it('toMermaid - draws transitions between a state and its ancestor as labelled loops Mermaid can lay out', async () => {
    // Mermaid's layout fails on an arrow from a composite into its own
    // child, and on one from a parallel region up to the parallel state.
    const nested = createMachine({
      id: 'nested',
      initial: 'outer',
      states: {
        outer: {
          initial: 'inner',
          on: { DOWN: '.inner' },
          states: { inner: {} },
        },
        both: {
          type: 'parallel',
          states: { left: { on: { UP: '#nested.both' } }, right: {} },
        },
      },
    });
    const text = toMermaid(nested);
    expect(text).toContain(
      's_nested_outer --> s_nested_outer : DOWN #8594; inner',
    );
    expect(text).toContain(
      's_nested_both_left --> s_nested_both_left : UP #8594; both',
    );
    const { texts } = await expectRendered(text, toGraph(nested));
    expect(texts).toContain('DOWN → inner');
    expect(texts).toContain('UP → both');
  });

  propertyTest.prop([arbitraryMachine], { numRuns: runs })(
    'toMermaid - Mermaid renders any machine and shows every state',
    async ({ machine, keys }) => {
      const result = await renderMermaid(browser.page, toMermaid(machine));
      expect(result.error).toBeUndefined();
      for (const key of keys)
        expect(result.texts, `state "${key}"`).toContain(key);
    },
    // Mermaid takes about half a second per diagram; allow for slow ones.
    10_000 + runs * 5_000,
  );
});
