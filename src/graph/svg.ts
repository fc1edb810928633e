import type { AnyStateMachine } from 'xstate';
import { GraphError } from '../errors.js';
import { toGraph } from './model.js';
import { palette } from './shared.js';
import {
  layoutGraph,
  sizes,
  type Box,
  type LaidEdge,
  type LaidShape,
  type Layout,
} from './svg-layout.js';
import { fontFamily, textWidth } from './text-metrics.js';
import type { GraphModel, GraphOptions } from './types.js';

/** Options of {@link toSvg}. */
export interface SvgOptions extends GraphOptions {
  /** Flow of transitions: top to bottom (default) or left to right. */
  direction?: 'DOWN' | 'RIGHT';
  /** ELK layout options merged over the defaults (`'elk.spacing.nodeNode': '40'`). */
  layoutOptions?: Readonly<Record<string, string>>;
  /**
   * Refuse graphs with more state nodes than this: layout time grows faster
   * than linearly. Default {@link svgNodesMaxDefault}.
   */
  nodesMax?: number;
}

/**
 * Default limit on state nodes laid out by {@link toSvg}. Hierarchical
 * layout grows faster than linearly: a machine of this size with two
 * transitions per state takes ELK a few seconds, a thousand states about a
 * minute.
 *
 * @example
 * ```ts
 * await toSvg(bigMachine, { nodesMax: svgNodesMaxDefault * 2 });
 * ```
 */
export const svgNodesMaxDefault = 300;

/**
 * A self-contained SVG picture of the machine, laid out with ELK (elkjs):
 * compound states are rounded containers with their name in a header,
 * each region of a parallel state is a dashed box, initial states are
 * pointed at from a black dot, history states are circles reading `H` or
 * `H*`, final states have a double border, and transitions are labelled
 * `EVENT [guard] / actions` or `after 5s`. With `{ snapshot }` the active
 * states are filled, pending delayed transitions are drawn bold with their
 * deadline, and dotted arrows lead from history states to what they
 * remember. Each state's group carries `data-state-id` with its XState id.
 *
 * @throws DefinitionError `MACHINE_INVALID` when `machine` is not an XState v5 machine.
 * @throws GraphError `GRAPH_FAILED` when the layout fails or the machine has more than `nodesMax` states.
 *
 * @example
 * ```ts
 * import { writeFile } from 'node:fs/promises';
 * import { toSvg } from 'shardchart/graph';
 * await writeFile('order.svg', await toSvg(orderMachine));
 * await writeFile('o-1.svg', await toSvg(orderMachine, { snapshot: actor.getPersistedSnapshot() }));
 * ```
 */
export async function toSvg(
  machine: AnyStateMachine,
  options: SvgOptions = {},
): Promise<string> {
  return renderSvg(toGraph(machine, options), options);
}

/**
 * SVG for a graph made by {@link toGraph}.
 *
 * @example
 * ```ts
 * const svg = await renderSvg(toGraph(orderMachine), { direction: 'RIGHT' });
 * ```
 */
export async function renderSvg(
  graph: GraphModel,
  options: Omit<SvgOptions, keyof GraphOptions> = {},
): Promise<string> {
  const nodesMax = options.nodesMax ?? svgNodesMaxDefault;
  if (graph.nodes.length > nodesMax) {
    throw new GraphError(
      `Machine "${graph.id}" has ${graph.nodes.length} state nodes, more than nodesMax ${nodesMax} for an SVG layout. Raise nodesMax, or export DOT or Mermaid, which need no layout here.`,
      { details: { machine: graph.id, nodes: graph.nodes.length, nodesMax } },
    );
  }
  const layout = await layoutGraph(graph, {
    direction: options.direction ?? 'DOWN',
    layoutOptions: options.layoutOptions ?? {},
  });
  return writeSvg(graph, layout);
}

function writeSvg(graph: GraphModel, layout: Layout): string {
  const width = Math.ceil(layout.width);
  const height = Math.ceil(layout.height);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${xml(fontFamily)}" role="img" aria-label="${xml(`statechart ${graph.id}`)}">`,
    `<title>${xml(graph.id)}</title>`,
    '<style>',
    `.st rect, .st circle { fill: ${palette.state}; stroke: ${palette.line}; stroke-width: 1.2; }`,
    `.ct > rect { fill: ${palette.group}; stroke: ${palette.line}; stroke-width: 1.2; }`,
    `.rg > rect { fill: ${palette.region}; stroke: ${palette.muted}; stroke-dasharray: 5 3; }`,
    `.hs circle { fill: ${palette.history}; }`,
    `.st.active rect, .st.active circle { fill: ${palette.active}; stroke: ${palette.activeLine}; stroke-width: 2; }`,
    `.ct.active > rect, .rg.active > rect { fill: ${palette.activeGroup}; stroke: ${palette.activeLine}; stroke-width: 2; }`,
    `.name { font-size: ${sizes.name}px; font-weight: bold; fill: ${palette.ink}; }`,
    `.line { font-size: ${sizes.line}px; fill: ${palette.muted}; }`,
    `.sep { stroke: ${palette.line}; stroke-width: 0.8; }`,
    `.tr path { fill: none; stroke: ${palette.line}; stroke-width: 1.1; }`,
    `.tr.pending path { stroke: ${palette.activeLine}; stroke-width: 2; }`,
    `.tr.eventless path, .tr.historyDefault path { stroke-dasharray: 5 3; }`,
    `.tr.remembered path { stroke: ${palette.activeLine}; stroke-dasharray: 2 3; }`,
    `.lbl rect { fill: #ffffff; fill-opacity: 0.88; }`,
    `.lbl text { font-size: ${sizes.label}px; fill: ${palette.ink}; }`,
    `.tr.pending .lbl text { fill: ${palette.activeLine}; font-weight: bold; }`,
    `.init { fill: ${palette.ink}; }`,
    '</style>',
    '<defs>',
    marker('arrow', palette.line),
    marker('arrowActive', palette.activeLine),
    '</defs>',
  ];
  for (const shape of layout.shapes) out.push(drawShape(shape));
  for (const edge of layout.edges) out.push(drawEdge(edge));
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function marker(id: string, color: string): string {
  // Sized in user units, so a bold pending arrow keeps a normal head.
  return `<marker id="${id}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="${color}"/></marker>`;
}

function drawShape(shape: LaidShape): string {
  const { x, y, width, height } = shape.box;
  if (shape.kind === 'initial') {
    return `<circle class="init" cx="${n(x + width / 2)}" cy="${n(y + height / 2)}" r="${sizes.initialRadius}"/>`;
  }
  const node = shape.node;
  // The root is always active and already framed; tinting it would tint
  // the whole picture.
  const active = node?.active === true && node.parent !== null ? ' active' : '';
  const data = node ? ` data-state-id="${xml(node.id)}" data-type="${node.type}"` : '';
  if (shape.kind === 'region' && node === undefined) {
    // The dashed frame around an atomic region; its state is drawn inside.
    return `<g class="rg"><rect x="${n(x)}" y="${n(y)}" width="${n(width)}" height="${n(height)}" rx="8"/></g>`;
  }
  if (shape.kind === 'container') {
    const cls = shape.region ? 'rg' : 'ct';
    const parts = [
      `<g class="${cls}${active}"${data}>`,
      `<rect x="${n(x)}" y="${n(y)}" width="${n(width)}" height="${n(height)}" rx="10"/>`,
      text('name', x + 10, y + 8 + sizes.name, shape.title ?? '', 'start'),
    ];
    if (shape.note !== undefined) {
      const after = x + 10 + textWidth(shape.title ?? '', sizes.name, true) + 10;
      parts.push(text('line', after, y + 8 + sizes.name, shape.note, 'start'));
    }
    shape.lines.forEach((line, i) => {
      parts.push(text('line', x + 10, y + 8 + sizes.name * sizes.lineHeight + (i + 1) * sizes.line * sizes.lineHeight, line, 'start'));
    });
    parts.push('</g>');
    return parts.join('');
  }
  if (node?.type === 'history') {
    const tip = node.remembers?.length ? `<title>${xml(`remembers ${node.remembers.join(', ')}`)}</title>` : '';
    return `<g class="st hs${active}"${data}>${tip}<circle cx="${n(x + width / 2)}" cy="${n(y + height / 2)}" r="${n(width / 2)}"/>${text('name', x + width / 2, y + height / 2 + sizes.name * 0.36, shape.title ?? '', 'middle')}</g>`;
  }
  const parts = [
    `<g class="st${active}"${data}>`,
    `<rect x="${n(x)}" y="${n(y)}" width="${n(width)}" height="${n(height)}" rx="7"/>`,
  ];
  if (node?.type === 'final') {
    parts.push(`<rect x="${n(x + 3)}" y="${n(y + 3)}" width="${n(width - 6)}" height="${n(height - 6)}" rx="5" fill="none"/>`);
  }
  const nameY = y + 7 + sizes.name;
  parts.push(text('name', x + width / 2, nameY, shape.title ?? '', 'middle'));
  if (shape.lines.length > 0) {
    const sepY = y + 7 + sizes.name * sizes.lineHeight + 3;
    parts.push(`<line class="sep" x1="${n(x)}" y1="${n(sepY)}" x2="${n(x + width)}" y2="${n(sepY)}"/>`);
    shape.lines.forEach((line, i) => {
      parts.push(text('line', x + 8, sepY + (i + 1) * sizes.line * sizes.lineHeight, line, 'start'));
    });
  }
  parts.push('</g>');
  return parts.join('');
}

function drawEdge(edge: LaidEdge): string {
  if (edge.points.length < 2) return '';
  const pending = edge.edge?.pending !== undefined;
  const kind = edge.edge?.kind === 'eventless' ? ' eventless' : '';
  const cls = `tr ${edge.kind}${pending ? ' pending' : ''}${kind}`;
  const d = edge.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${n(p.x)},${n(p.y)}`).join(' ');
  const data = edge.edge ? ` data-edge-id="${edge.edge.id}" data-event="${xml(edge.edge.event)}"` : '';
  const arrow = pending || edge.kind === 'remembered' ? 'arrowActive' : 'arrow';
  const parts = [`<g class="${cls}"${data}>`, `<path d="${d}" marker-end="url(#${arrow})"/>`];
  if (edge.label) parts.push(drawLabel(edge.label.box, edge.label.lines));
  parts.push('</g>');
  return parts.join('');
}

function drawLabel(box: Box, lines: readonly string[]): string {
  const parts = [
    '<g class="lbl">',
    `<rect x="${n(box.x)}" y="${n(box.y)}" width="${n(box.width)}" height="${n(box.height)}" rx="2"/>`,
  ];
  lines.forEach((line, i) => {
    parts.push(text('', box.x + box.width / 2, box.y + 2 + sizes.label + i * sizes.label * sizes.lineHeight - 1, line, 'middle'));
  });
  parts.push('</g>');
  return parts.join('');
}

function text(cls: string, x: number, y: number, content: string, anchor: 'start' | 'middle'): string {
  const c = cls === '' ? '' : ` class="${cls}"`;
  return `<text${c} x="${n(x)}" y="${n(y)}" text-anchor="${anchor}">${xml(content)}</text>`;
}

/** Coordinates with two decimals: enough for a picture, much shorter. */
function n(value: number): string {
  return String(Math.round(value * 100) / 100);
}

/**
 * Text and attribute values escaped for XML. Characters XML 1.0 forbids
 * (most C0 controls, lone surrogates) are dropped: a state key may hold
 * anything, and one bad character would make the whole document invalid.
 */
function xml(text: string): string {
  return text
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}
