import type { AnyStateMachine } from 'xstate';
import { formatDue } from './labels.js';
import { toGraph } from './model.js';
import {
  historyMark,
  innerLines,
  isContainer,
  labelLines,
  liveSummary,
  nodeIndex,
  palette,
  safeIds,
} from './shared.js';
import type { GraphEdge, GraphModel, GraphNode, GraphOptions } from './types.js';

/** Characters per line in edge labels before wrapping. */
const labelWidth = 30;

const font = 'Helvetica,Arial,sans-serif';

/**
 * Graphviz DOT text. Compound states are clusters (rounded boxes that hold
 * their children), each region of a parallel state is a dashed box of its
 * own, an initial state is pointed at from a black dot, history states are
 * circles reading `H` or `H*`, final states have a double border, and
 * transitions read `EVENT [guard] / actions` or `after 5s`. With
 * `{ snapshot }` active states are filled, pending delayed transitions are
 * drawn bold with their deadline, and dotted arrows lead from each history
 * state to the states it remembers. Render it with `dot -Tsvg`.
 *
 * @throws DefinitionError `MACHINE_INVALID` when `machine` is not an XState v5 machine.
 *
 * @example
 * ```ts
 * import { execFileSync } from 'node:child_process';
 * import { toDot } from 'shardchart/graph';
 * const svg = execFileSync('dot', ['-Tsvg'], { input: toDot(orderMachine) });
 * ```
 */
export function toDot(machine: AnyStateMachine, options: GraphOptions = {}): string {
  return renderDot(toGraph(machine, options));
}

/**
 * DOT text for a graph made by {@link toGraph}.
 *
 * @example
 * ```ts
 * const dot = renderDot(toGraph(orderMachine, { snapshot }));
 * ```
 */
export function renderDot(graph: GraphModel): string {
  const ids = safeIds(graph, 's_');
  const index = nodeIndex(graph);
  const sid = (id: string): string => ids.get(id) ?? 's_unknown';
  // An edge to or from a cluster attaches to a node inside it (the initial
  // dot, or an invisible point in a parallel state) and is clipped at the
  // cluster's border with lhead/ltail.
  const anchor = (node: GraphNode): string =>
    node.type === 'parallel' ? `${sid(node.id)}__anchor` : `${sid(node.id)}__initial`;
  const out: string[] = [
    `digraph ${quote(graph.id)} {`,
    `  graph [compound=true, newrank=true, rankdir=TB, nodesep=0.35, ranksep=0.45, fontname="${font}", fontsize=12, fontcolor="${palette.ink}", labeljust=l];`,
    `  node [shape=box, style="rounded,filled", fillcolor="${palette.state}", color="${palette.line}", fontname="${font}", fontsize=11, fontcolor="${palette.ink}", margin="0.14,0.06", penwidth=1.2];`,
    `  edge [fontname="${font}", fontsize=9, color="${palette.line}", fontcolor="${palette.ink}", arrowsize=0.7, penwidth=1.1];`,
  ];

  const declare = (node: GraphNode, depth: number, region: boolean): void => {
    const pad = '  '.repeat(depth);
    if (!isContainer(node)) {
      if (region) {
        // An atomic region still gets its dashed box, so regions read alike.
        out.push(`${pad}subgraph ${quote(`cluster_${sid(node.id)}__region`)} {`);
        out.push(`${pad}  graph [label="", style="dashed,rounded", color="${palette.muted}", fillcolor="${palette.region}"];`);
        out.push(`${pad}  ${leaf(node, graph, sid)}`);
        out.push(`${pad}}`);
      } else {
        out.push(`${pad}${leaf(node, graph, sid)}`);
      }
      return;
    }
    const active = node.active === true && node.id !== graph.root;
    const style = region ? 'dashed,rounded,filled' : 'rounded,filled';
    const fill = active ? palette.activeGroup : region ? palette.region : palette.group;
    const color = active ? palette.activeLine : region ? palette.muted : palette.line;
    const title = `<B>${html(node.key)}</B>${node.id === graph.root ? liveNote(graph) : ''}`;
    out.push(`${pad}subgraph ${quote(`cluster_${sid(node.id)}`)} {`);
    out.push(
      `${pad}  graph [label=<${title}${compartment(innerLines(node, graph.edges), true)}>, style="${style}", fillcolor="${fill}", color="${color}", penwidth=${active ? 2 : 1.2}];`,
    );
    if (node.type === 'parallel') {
      out.push(`${pad}  ${anchor(node)} [shape=point, style=invis, width=0.01, label=""];`);
      for (const child of node.children) declare(index.get(child)!, depth + 1, true);
    } else {
      out.push(`${pad}  ${anchor(node)} [shape=point, width=0.13, color="${palette.ink}", fillcolor="${palette.ink}", label=""];`);
      if (node.initial !== undefined) {
        const initial = index.get(node.initial)!;
        out.push(`${pad}  ${anchor(node)} -> ${endpoint(initial)};`);
      }
      for (const child of node.children) declare(index.get(child)!, depth + 1, false);
    }
    out.push(`${pad}}`);
  };

  /** True when `node` is `ancestor` or lies anywhere inside it. */
  const isInside = (node: GraphNode, ancestor: GraphNode): boolean => {
    for (let cur: GraphNode | undefined = node; cur; cur = cur.parent === null ? undefined : index.get(cur.parent)) {
      if (cur === ancestor) return true;
    }
    return false;
  };
  /** The DOT node an edge attaches to; for a cluster, its anchor. */
  const endpoint = (node: GraphNode): string =>
    isContainer(node) ? anchor(node) : sid(node.id);
  const clip = (node: GraphNode, end: 'head' | 'tail'): string[] =>
    isContainer(node) ? [`${end === 'head' ? 'lhead' : 'ltail'}=${quote(`cluster_${sid(node.id)}`)}`] : [];

  declare(index.get(graph.root)!, 1, false);

  for (const edge of graph.edges) {
    const source = index.get(edge.source)!;
    for (const targetId of edge.targets) {
      const target = index.get(targetId)!;
      const attrs = [`label=<${edgeLabel(edge)}>`];
      const self = source === target;
      // Graphviz clips at a cluster only when the other end lies outside
      // it: a loop on a cluster, or an edge between a state and its own
      // descendant, stays on the anchor at the inner end.
      if (!self && !isInside(target, source)) attrs.push(...clip(source, 'tail'));
      if (!self && !isInside(source, target)) attrs.push(...clip(target, 'head'));
      if (edge.pending) {
        attrs.push(`color="${palette.activeLine}"`, `fontcolor="${palette.activeLine}"`, 'penwidth=2');
      }
      if (edge.kind === 'eventless') attrs.push('style=dashed');
      out.push(`  ${endpoint(source)} -> ${endpoint(target)} [${attrs.join(', ')}];`);
    }
  }
  for (const node of graph.nodes) {
    if (node.type !== 'history') continue;
    for (const targetId of node.historyTarget ?? []) {
      const target = index.get(targetId)!;
      out.push(`  ${sid(node.id)} -> ${endpoint(target)} [style=dashed, label=<default>${(isInside(node, target) ? [] : clip(target, 'head')).map((c) => `, ${c}`).join('')}];`);
    }
    for (const rememberedId of node.remembers ?? []) {
      const target = index.get(rememberedId);
      if (!target) continue;
      out.push(`  ${sid(node.id)} -> ${endpoint(target)} [style=dotted, color="${palette.activeLine}", arrowhead=open, constraint=false${(isInside(node, target) ? [] : clip(target, 'head')).map((c) => `, ${c}`).join('')}];`);
    }
  }
  out.push('}');
  return `${out.join('\n')}\n`;
}

/** One state that holds no other states. */
function leaf(
  node: GraphNode,
  graph: GraphModel,
  sid: (id: string) => string,
): string {
  const fill = node.active ? palette.active : node.type === 'history' ? palette.history : palette.state;
  const color = node.active ? palette.activeLine : palette.line;
  const attrs = [`fillcolor="${fill}"`, `color="${color}"`];
  if (node.active) attrs.push('penwidth=2');
  if (node.type === 'history') {
    attrs.push('shape=circle', 'width=0.36', 'fixedsize=true', `label=<<B>${historyMark(node)}</B>>`, 'fontsize=10');
  } else {
    attrs.push(`label=<<B>${html(node.key)}</B>${compartment(innerLines(node, graph.edges))}>`);
    if (node.type === 'final') attrs.push('peripheries=2');
  }
  return `${sid(node.id)} [${attrs.join(', ')}];`;
}

/** `  seq 12 · active` after the machine name when the snapshot says where it is. */
function liveNote(graph: GraphModel): string {
  const summary = liveSummary(graph);
  if (summary === undefined) return '';
  return `<FONT POINT-SIZE="9" COLOR="${palette.muted}">  ${html(summary)}</FONT>`;
}

/**
 * The lines inside a state, under its name, smaller and grey. A cluster's
 * header reads from its left edge, so there each line ends with a
 * left-aligning break (Graphviz aligns a line by the break that ends it).
 */
function compartment(lines: readonly string[], left = false): string {
  if (lines.length === 0) return '';
  const br = left ? '<BR ALIGN="LEFT"/>' : '<BR/>';
  const body = lines
    .map((line) => `${br}<FONT POINT-SIZE="9" COLOR="${palette.muted}">${html(line)}</FONT>`)
    .join('');
  return left ? `${body}${br}` : body;
}

function edgeLabel(edge: GraphEdge): string {
  const lines = labelLines(edge.label, labelWidth).map(html);
  if (edge.pending) lines.push(`<B>due ${html(formatDue(edge.pending.dueAt))}</B>`);
  return lines.join('<BR/>');
}

/** A DOT double-quoted string. */
function quote(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\r?\n/g, '\\n')}"`;
}

/**
 * Text inside a Graphviz HTML-like label. Graphviz still applies its own
 * backslash escapes there (backslash-N is the node name, two backslashes
 * are one), even to a backslash written as an entity, so every backslash
 * is doubled.
 */
function html(text: string): string {
  return text
    .replace(/\\/g, '\\\\')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/[\r\n]+/g, ' ');
}
