import type { GraphEdge, GraphModel, GraphNode } from './types.js';

/**
 * What every renderer draws the same way: safe identifiers for node ids
 * that may hold dots, spaces or quotes, the lines inside a state, history
 * markers, and quick lookups over a graph.
 */

/** Colours of the DOT and SVG formats, so both read the same. @internal */
export const palette = {
  ink: '#1f2937',
  line: '#4b5563',
  muted: '#6b7280',
  state: '#ffffff',
  group: '#f9fafb',
  region: '#ffffff',
  history: '#f3f4f6',
  active: '#fde68a',
  activeLine: '#b45309',
  activeGroup: '#fffbeb',
} as const;

/**
 * Maps each node id to an identifier made of `[A-Za-z0-9_]` only, readable
 * (`s_order_processing`) and unique: a clash (`a.b` and `a_b`) gets a
 * numeric suffix in document order, so output is stable.
 *
 * @internal
 */
export function safeIds(
  graph: GraphModel,
  prefix: string,
): ReadonlyMap<string, string> {
  const ids = new Map<string, string>();
  const taken = new Set<string>();
  for (const node of graph.nodes) {
    const base = `${prefix}${node.id.replace(/[^A-Za-z0-9_]/g, '_')}`;
    let id = base;
    for (let n = 2; taken.has(id); n += 1) id = `${base}_${n}`;
    taken.add(id);
    ids.set(node.id, id);
  }
  return ids;
}

/** Nodes by id. @internal */
export function nodeIndex(graph: GraphModel): ReadonlyMap<string, GraphNode> {
  return new Map(graph.nodes.map((n) => [n.id, n]));
}

/** True when the node is drawn as a container (it has children). @internal */
export function isContainer(node: GraphNode): boolean {
  return node.children.length > 0;
}

/**
 * Lines describing what happens inside a state without leaving it: entry
 * and exit actions, invocations and targetless transitions, as UML writes
 * them in the state's own compartment.
 *
 * @internal
 */
export function innerLines(node: GraphNode, edges: readonly GraphEdge[]): string[] {
  const lines: string[] = [];
  if (node.entry.length > 0) lines.push(`entry / ${node.entry.join(', ')}`);
  for (const inv of node.invoke) {
    const name = inv.id === inv.src || inv.src === '(inline)' ? inv.id : `${inv.src} #${inv.id}`;
    lines.push(`invoke ${name}${inv.running ? ' (running)' : ''}`);
  }
  if (node.exit.length > 0) lines.push(`exit / ${node.exit.join(', ')}`);
  for (const edge of edges) {
    if (edge.source === node.id && edge.targets.length === 0) {
      lines.push(edge.label);
    }
  }
  return lines;
}

/** The history marker text: `H` or `H*`. @internal */
export function historyMark(node: GraphNode): string {
  return node.history === 'deep' ? 'H*' : 'H';
}

/** Short names for remembered states: their key, or the id when keys repeat. @internal */
export function rememberedNames(
  node: GraphNode,
  index: ReadonlyMap<string, GraphNode>,
): string[] {
  const ids = node.remembers ?? [];
  const keys = ids.map((id) => index.get(id)?.key ?? id);
  const unique = new Set(keys).size === keys.length;
  return unique ? keys : [...ids];
}

/**
 * Breaks a label into lines of at most `width` characters at spaces, so a
 * long `EVENT [guard] / a, b, c` does not stretch the layout. A word longer
 * than `width` keeps its own line rather than being cut.
 *
 * @internal
 */
export function wrapText(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line === '') line = word;
    else if (line.length + 1 + word.length <= width) line += ` ${word}`;
    else {
      lines.push(line);
      line = word;
    }
  }
  lines.push(line);
  return lines;
}

/**
 * `EVENT [guard]` on the first line(s), `/ actions` after: where a reader
 * looks for them.
 *
 * @internal
 */
export function labelLines(label: string, width: number): string[] {
  const cut = label.indexOf(' / ');
  if (cut < 0) return wrapText(label, width);
  return [
    ...wrapText(label.slice(0, cut), width),
    ...wrapText(label.slice(cut + 1), width),
  ];
}


/** `seq 12 · active` when the snapshot says where the entity is. @internal */
export function liveSummary(graph: GraphModel): string | undefined {
  const live = graph.live;
  if (live === undefined) return undefined;
  const parts: string[] = [];
  if (live.seq !== undefined) parts.push(`seq ${live.seq}`);
  if (live.status !== undefined) parts.push(live.status);
  return parts.length > 0 ? parts.join(' · ') : undefined;
}
