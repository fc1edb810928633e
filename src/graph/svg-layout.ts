import elkBundle from 'elkjs/lib/elk.bundled.js';
import type {
  ELK,
  ElkExtendedEdge,
  ElkNode,
  ElkPoint,
  LayoutOptions,
} from 'elkjs/lib/elk-api.js';
import { GraphError } from '../errors.js';
import { formatDue } from './labels.js';
import {
  historyMark,
  innerLines,
  isContainer,
  labelLines,
  liveSummary,
  nodeIndex,
  safeIds,
} from './shared.js';
import { textWidth } from './text-metrics.js';
import type { GraphEdge, GraphModel, GraphNode } from './types.js';

/**
 * Lays a graph out with ELK's layered algorithm across the whole hierarchy
 * (`INCLUDE_CHILDREN`), so transitions between states in different
 * containers are routed around the containers rather than through them.
 * Text is measured with `text-metrics.ts`, and every box is sized to hold
 * its text before ELK places it.
 */

/** Text sizes in px; the writer draws with the same ones. @internal */
export const sizes = {
  name: 12,
  line: 10,
  label: 10,
  lineHeight: 1.3,
  historyRadius: 14,
  initialRadius: 5,
} as const;

/** Characters per line in edge labels before wrapping. */
const labelWidth = 30;

/** @internal */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** One drawn shape. @internal */
export interface LaidShape {
  kind: 'state' | 'container' | 'region' | 'initial';
  box: Box;
  /** The state it draws (absent for initial markers and atomic-region frames). */
  node?: GraphNode;
  /** True when the shape is a region of a parallel state (drawn dashed). */
  region: boolean;
  /** Name line, then the smaller inner lines. */
  title?: string;
  /** Containers: small text after the name (the live summary on the root). */
  note?: string;
  lines: string[];
}

/** One drawn arrow. @internal */
export interface LaidEdge {
  kind: 'transition' | 'initial' | 'historyDefault' | 'remembered';
  edge?: GraphEdge;
  points: ElkPoint[];
  label?: { box: Box; lines: string[] };
}

/** @internal */
export interface Layout {
  width: number;
  height: number;
  /** Outer shapes first, so inner ones are drawn on top. */
  shapes: LaidShape[];
  edges: LaidEdge[];
}

/** @internal */
export interface LayoutSettings {
  direction: 'DOWN' | 'RIGHT';
  layoutOptions: Readonly<Record<string, string>>;
}

/**
 * elkjs is a CommonJS bundle whose typings declare an ES default export;
 * Node hands ESM the whole `module.exports`, which elkjs also exposes as
 * `.default`, so reading `.default` works under both views.
 */
const ElkConstructor = elkBundle.default;

/** One ELK for the process: it holds no state between layouts. */
let elk: ELK | undefined;

/** Probe answers per set of graph options (see `minimumTransposed`). */
const transposedByOptions = new Map<string, Promise<boolean>>();

/**
 * Whether ELK reads a container's `elk.nodeSize.minimum` as (height,
 * width) under these graph options. elkjs 0.12 does with
 * `INCLUDE_CHILDREN` and a vertical direction: it rotates the graph to lay
 * it out left to right and leaves the minimum of nested containers
 * unrotated, so a long container name got a tall narrow box. Asking ELK
 * once per set of options, rather than assuming the bug, keeps boxes right
 * on a version that fixes it. An option set ELK rejects answers false; the
 * real layout then reports the rejection.
 */
function minimumTransposed(engine: ELK, options: LayoutOptions): Promise<boolean> {
  const key = JSON.stringify(options);
  let known = transposedByOptions.get(key);
  if (known === undefined) {
    const wide = 300;
    known = engine
      .layout({
        id: 'probe',
        layoutOptions: options,
        children: [
          {
            id: 'container',
            layoutOptions: {
              'elk.nodeSize.constraints': 'MINIMUM_SIZE',
              'elk.nodeSize.minimum': `(${wide},20)`,
            },
            children: [{ id: 'leaf', width: 10, height: 10 }],
          },
        ],
      })
      .then((laid) => {
        const box = laid.children?.[0];
        return (box?.width ?? 0) < wide && (box?.height ?? 0) >= wide;
      })
      .catch(() => false);
    // Options come from the caller; keep the table small all the same.
    if (transposedByOptions.size >= 32) transposedByOptions.clear();
    transposedByOptions.set(key, known);
  }
  return known;
}

/**
 * Runs ELK on the graph and returns absolute boxes and polylines. A layout
 * failure (ELK throws on some option values and unsupported graphs)
 * becomes a `GRAPH_FAILED` GraphError.
 *
 * @internal
 */
export async function layoutGraph(
  graph: GraphModel,
  settings: LayoutSettings,
): Promise<Layout> {
  const ids = safeIds(graph, 'n_');
  const index = nodeIndex(graph);
  const sid = (id: string): string => ids.get(id) ?? 'n_unknown';
  const shapes = new Map<string, LaidShape>();
  const graphOptions: LayoutOptions = {
    'elk.algorithm': 'layered',
    'elk.direction': settings.direction,
    'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
    'elk.edgeRouting': 'ORTHOGONAL',
    'elk.layered.spacing.nodeNodeBetweenLayers': '36',
    'elk.layered.spacing.edgeNodeBetweenLayers': '14',
    'elk.spacing.nodeNode': '28',
    'elk.spacing.edgeNode': '14',
    'elk.spacing.edgeEdge': '10',
    'elk.spacing.edgeLabel': '4',
    'elk.edgeLabels.placement': 'CENTER',
    'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
    'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
    'elk.json.edgeCoords': 'ROOT',
    'elk.json.shapeCoords': 'ROOT',
    'elk.padding': '[top=8,left=8,bottom=8,right=8]',
    ...settings.layoutOptions,
  };
  elk ??= new ElkConstructor();
  const engine = elk;
  const transposed = await minimumTransposed(engine, graphOptions);
  const pendingEdges: { elk: ElkExtendedEdge; laid: LaidEdge }[] = [];

  const addEdge = (
    laid: LaidEdge,
    source: string,
    target: string,
    labelText?: string[],
    priority = 0,
  ): void => {
    const elkEdge: ElkExtendedEdge = {
      id: `edge${pendingEdges.length}`,
      sources: [source],
      targets: [target],
    };
    if (priority > 0) {
      elkEdge.layoutOptions = { 'elk.layered.priority.direction': String(priority) };
    }
    if (labelText && labelText.length > 0) {
      elkEdge.labels = [{ id: `${elkEdge.id}_label`, text: labelText.join('\n'), ...labelSize(labelText) }];
    }
    pendingEdges.push({ elk: elkEdge, laid });
  };

  const build = (node: GraphNode, region: boolean): ElkNode => {
    const id = sid(node.id);
    if (!isContainer(node)) {
      const shape = leafShape(node, graph, region);
      const elkNode: ElkNode = { id, width: shape.box.width, height: shape.box.height };
      shapes.set(id, shape);
      if (!region) return elkNode;
      // An atomic region gets a dashed frame like any other region.
      const frameId = `${id}__region`;
      shapes.set(frameId, { kind: 'region', box: zero(), region: true, lines: [] });
      return { id: frameId, layoutOptions: padding(10, 10), children: [{ ...elkNode }] };
    }
    const lines = innerLines(node, graph.edges).concat(selfLoops(node, graph.edges));
    const note = node.id === graph.root ? liveSummary(graph) : undefined;
    const title = node.key;
    const headerHeight = 8 + sizes.name * sizes.lineHeight + lines.length * sizes.line * sizes.lineHeight + 6;
    const headerWidth = Math.max(
      textWidth(title, sizes.name, true) + (note === undefined ? 0 : 10 + textWidth(note, sizes.line)),
      ...lines.map((l) => textWidth(l, sizes.line)),
    );
    shapes.set(id, {
      kind: 'container',
      box: zero(),
      node,
      region,
      title,
      ...(note === undefined ? {} : { note }),
      lines,
    });
    const children: ElkNode[] = [];
    if (node.type !== 'parallel' && node.initial !== undefined) {
      const initialId = `${id}__initial`;
      const d = sizes.initialRadius * 2;
      shapes.set(initialId, { kind: 'initial', box: zero(), region: false, lines: [] });
      children.push({ id: initialId, width: d, height: d });
      addEdge({ kind: 'initial', points: [] }, initialId, sid(node.initial), undefined, 10);
    }
    for (const childId of node.children) {
      children.push(build(index.get(childId)!, node.type === 'parallel'));
    }
    const minWidth = Math.ceil(headerWidth + 28);
    const minHeight = Math.ceil(headerHeight + 20);
    const layoutOptions: LayoutOptions = {
      ...padding(headerHeight + 6, 14),
      'elk.nodeSize.constraints': 'MINIMUM_SIZE',
      'elk.nodeSize.minimum': transposed ? `(${minHeight},${minWidth})` : `(${minWidth},${minHeight})`,
    };
    if (node.type === 'parallel') {
      // Regions side by side, with room for the dashed frames between them.
      layoutOptions['elk.spacing.nodeNode'] = '16';
    }
    return { id, layoutOptions, children };
  };

  const root = build(index.get(graph.root)!, false);

  // ELK breaks cycles by reversing some edges; left alone it may draw a
  // retry loop above the state it retries. Edges that go forward in the
  // machine's document order are asked to point down, so the picture
  // follows the order the author wrote the states in.
  const order = new Map(graph.nodes.map((node, i) => [node.id, i]));
  for (const edge of graph.edges) {
    for (const target of edge.targets) {
      // A loop on a container is listed in its header instead (see selfLoops).
      if (target === edge.source && isContainer(index.get(target)!)) continue;
      const forward = order.get(target)! > order.get(edge.source)!;
      addEdge({ kind: 'transition', edge, points: [] }, sid(edge.source), sid(target), edgeLines(edge), forward ? 1 : 0);
    }
  }
  for (const node of graph.nodes) {
    if (node.type !== 'history') continue;
    for (const target of node.historyTarget ?? []) {
      addEdge({ kind: 'historyDefault', points: [] }, sid(node.id), sid(target), ['default']);
    }
    for (const target of node.remembers ?? []) {
      if (index.has(target)) addEdge({ kind: 'remembered', points: [] }, sid(node.id), sid(target));
    }
  }

  const elkGraph: ElkNode = {
    id: 'graph',
    layoutOptions: graphOptions,
    children: [root],
    edges: pendingEdges.map((e) => e.elk),
  };

  let result: ElkNode;
  try {
    result = await engine.layout(elkGraph);
  } catch (cause) {
    throw new GraphError(
      `Laying out machine "${graph.id}" failed: ${cause instanceof Error ? cause.message : String(cause)}. Check the layoutOptions passed to toSvg, or export DOT or Mermaid instead.`,
      { cause, details: { machine: graph.id, nodes: graph.nodes.length } },
    );
  }

  const ordered: LaidShape[] = [];
  const collect = (n: ElkNode): void => {
    const shape = shapes.get(n.id);
    if (shape) {
      shape.box = { x: n.x ?? 0, y: n.y ?? 0, width: n.width ?? 0, height: n.height ?? 0 };
      ordered.push(shape);
    }
    for (const child of n.children ?? []) collect(child);
  };
  collect(result);

  const byId = new Map((result.edges ?? []).map((e) => [e.id, e]));
  const edges = pendingEdges.map(({ elk: asked, laid }) => {
    const done = byId.get(asked.id);
    const points: ElkPoint[] = [];
    for (const section of done?.sections ?? []) {
      points.push(section.startPoint, ...(section.bendPoints ?? []), section.endPoint);
    }
    const label = done?.labels?.[0];
    return {
      ...laid,
      points,
      ...(label
        ? {
            label: {
              box: { x: label.x ?? 0, y: label.y ?? 0, width: label.width ?? 0, height: label.height ?? 0 },
              lines: (label.text ?? '').split('\n'),
            },
          }
        : {}),
    };
  });
  return { width: result.width ?? 0, height: result.height ?? 0, shapes: ordered, edges };
}

function leafShape(
  node: GraphNode,
  graph: GraphModel,
  region: boolean,
): LaidShape {
  if (node.type === 'history') {
    // What the history remembers is drawn as dotted arrows, not as text.
    const d = sizes.historyRadius * 2;
    return {
      kind: 'state',
      node,
      region,
      title: historyMark(node),
      lines: [],
      box: { x: 0, y: 0, width: d, height: d },
    };
  }
  const lines = innerLines(node, graph.edges);
  const width = Math.max(
    56,
    textWidth(node.key, sizes.name, true) + 24,
    ...lines.map((l) => textWidth(l, sizes.line) + 16),
  );
  const height =
    sizes.name * sizes.lineHeight + 14 +
    (lines.length > 0 ? 6 + lines.length * sizes.line * sizes.lineHeight : 0);
  return {
    kind: 'state',
    node,
    region,
    title: node.key,
    lines,
    box: { x: 0, y: 0, width: Math.ceil(width), height: Math.ceil(height) },
  };
}

/** Self-transitions of a container, which ELK cannot loop around a hierarchy. */
function selfLoops(node: GraphNode, edges: readonly GraphEdge[]): string[] {
  return edges
    .filter((e) => e.source === node.id && e.targets.includes(node.id))
    .map((e) => `${e.label} (re-enter)`);
}

function edgeLines(edge: GraphEdge): string[] {
  const lines = labelLines(edge.label, labelWidth);
  if (edge.pending) lines.push(`due ${formatDue(edge.pending.dueAt)}`);
  return lines;
}

function labelSize(lines: readonly string[]): { width: number; height: number } {
  return {
    width: Math.ceil(Math.max(...lines.map((l) => textWidth(l, sizes.label))) + 6),
    height: Math.ceil(lines.length * sizes.label * sizes.lineHeight + 4),
  };
}

function padding(top: number, side: number): LayoutOptions {
  return { 'elk.padding': `[top=${Math.ceil(top)},left=${side},bottom=${side},right=${side}]` };
}

function zero(): Box {
  return { x: 0, y: 0, width: 0, height: 0 };
}
