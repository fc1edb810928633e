import type { AnyStateMachine } from 'xstate';
import { formatDue } from './labels.js';
import { toGraph } from './model.js';
import {
  historyMark,
  innerLines,
  isContainer,
  nodeIndex,
  rememberedNames,
  safeIds,
} from './shared.js';
import type {
  GraphEdge,
  GraphModel,
  GraphNode,
  GraphOptions,
} from './types.js';

/**
 * Mermaid `stateDiagram-v2` text: compound states are composite states,
 * parallel regions are separated by `--`, `[*]` marks initial and final
 * states, history states read `H` / `H*`, and with `{ snapshot }` the active
 * configuration is styled with `classDef`. Mermaid cannot style single
 * transitions in state diagrams, so a pending timer shows as text on its
 * transition (`after 400ms (due 12:00:00.400Z)`) and a history state lists
 * what it remembers (`↺ authorizing, packing`).
 *
 * What happens inside a simple state (entry, exit, invoke, targetless
 * transitions) is listed in the state's description; Mermaid gives
 * composite states no description, so there a targetless transition is
 * drawn as a self-loop and entry/exit actions are left out (the JSON, DOT
 * and SVG formats keep them). Mermaid cannot draw every arrow between a
 * state and its own ancestor either, so those transitions are loops on
 * their source labelled `EVENT → target`.
 *
 * @throws DefinitionError `MACHINE_INVALID` when `machine` is not an XState v5 machine.
 *
 * @example
 * ```ts
 * import { toMermaid } from 'shardchart/graph';
 * const text = toMermaid(orderMachine);
 * // stateDiagram-v2 ... state "processing" as s_order_processing { ... -- ... }
 * const live = toMermaid(orderMachine, { snapshot: await store.snapshots.load(key) });
 * ```
 */
export function toMermaid(
  machine: AnyStateMachine,
  options: GraphOptions = {},
): string {
  return renderMermaid(toGraph(machine, options));
}

/**
 * Mermaid text for a graph made by {@link toGraph}.
 *
 * @example
 * ```ts
 * const graph = toGraph(orderMachine);
 * const text = renderMermaid(graph);
 * ```
 */
export function renderMermaid(graph: GraphModel): string {
  const ids = safeIds(graph, 's_');
  const index = nodeIndex(graph);
  const sid = (id: string): string => ids.get(id) ?? 's_unknown';
  const out: string[] = ['stateDiagram-v2'];
  out.push(
    '  classDef active fill:#fde68a,stroke:#b45309,stroke-width:2px,color:#1f2937',
    '  classDef activeGroup fill:#fffbeb,stroke:#b45309,stroke-width:2px',
    '  classDef group fill:#f9fafb,stroke:#6b7280',
    '  classDef history fill:#f3f4f6,stroke:#374151,font-weight:bold',
  );

  const declare = (node: GraphNode, depth: number): void => {
    const pad = '  '.repeat(depth);
    const label = node.type === 'history' ? historyMark(node) : node.key;
    out.push(`${pad}state "${mermaidText(label)}" as ${sid(node.id)}`);
    if (!isContainer(node)) {
      const lines =
        node.type === 'history'
          ? remembered(node, index)
          : innerLines(node, graph.edges);
      for (const line of lines) {
        out.push(`${pad}${sid(node.id)} : ${mermaidText(line)}`);
      }
      return;
    }
    out.push(`${pad}state ${sid(node.id)} {`);
    const children = node.children.map((id) => index.get(id)!);
    if (node.type === 'parallel') {
      children.forEach((child, i) => {
        if (i > 0) out.push(`${pad}  --`);
        declare(child, depth + 1);
      });
    } else {
      if (node.initial !== undefined) {
        out.push(`${pad}  [*] --> ${sid(node.initial)}`);
      }
      for (const child of children) declare(child, depth + 1);
      for (const child of children) {
        if (child.type === 'final')
          out.push(`${pad}  ${sid(child.id)} --> [*]`);
      }
    }
    out.push(`${pad}}`);
  };
  declare(index.get(graph.root)!, 1);

  for (const edge of graph.edges) {
    const source = index.get(edge.source)!;
    const label = mermaidText(edgeText(edge));
    if (edge.targets.length === 0) {
      // Simple states list these in their description (see declare).
      if (isContainer(source)) {
        out.push(`  ${sid(edge.source)} --> ${sid(edge.source)} : ${label}`);
      }
      continue;
    }
    for (const target of edge.targets) {
      const nested =
        isAncestor(edge.source, target, index) ||
        isAncestor(target, edge.source, index);
      if (nested) {
        // Mermaid's layout fails on some arrows between a state and its own
        // ancestor (into a descendant, or out of a parallel region to the
        // parallel state), so every such arrow becomes a loop on the
        // source that names where it leads.
        const into = mermaidText(` → ${index.get(target)!.key}`);
        out.push(
          `  ${sid(edge.source)} --> ${sid(edge.source)} : ${label}${into}`,
        );
      } else {
        out.push(`  ${sid(edge.source)} --> ${sid(target)} : ${label}`);
      }
    }
  }
  for (const node of graph.nodes) {
    if (node.type !== 'history') continue;
    for (const target of node.historyTarget ?? []) {
      out.push(`  ${sid(node.id)} --> ${sid(target)} : default`);
    }
  }

  const history = graph.nodes.filter((n) => n.type === 'history');
  if (history.length > 0) {
    out.push(`  class ${history.map((n) => sid(n.id)).join(',')} history`);
  }
  // The root is always active and already framed; marking it would tint
  // the whole diagram.
  const containers = graph.nodes.filter(
    (n) => isContainer(n) && n.id !== graph.root,
  );
  const idle = containers.filter((n) => n.active !== true);
  if (idle.length > 0) {
    out.push(`  class ${idle.map((n) => sid(n.id)).join(',')} group`);
  }
  const leaves = graph.nodes.filter((n) => n.active && !isContainer(n));
  const groups = containers.filter((n) => n.active === true);
  if (leaves.length > 0) {
    out.push(`  class ${leaves.map((n) => sid(n.id)).join(',')} active`);
  }
  if (groups.length > 0) {
    out.push(`  class ${groups.map((n) => sid(n.id)).join(',')} activeGroup`);
  }
  return `${out.join('\n')}\n`;
}

/** True when `ancestor` contains `id` at any depth. */
function isAncestor(
  ancestor: string,
  id: string,
  index: ReadonlyMap<string, GraphNode>,
): boolean {
  for (let cur = index.get(id)?.parent; cur; cur = index.get(cur)?.parent) {
    if (cur === ancestor) return true;
  }
  return false;
}

function edgeText(edge: GraphEdge): string {
  return edge.pending === undefined
    ? edge.label
    : `${edge.label} (due ${formatDue(edge.pending.dueAt)})`;
}

function remembered(
  node: GraphNode,
  index: ReadonlyMap<string, GraphNode>,
): string[] {
  const names = rememberedNames(node, index);
  return names.length > 0 ? [`↺ ${names.join(', ')}`] : [];
}

/**
 * Text safe inside a Mermaid label: characters outside a small safe set are
 * written as Mermaid entity codes (`#35;`), which Mermaid decodes when it
 * draws. Quotes, `#`, `;`, `:`, braces, angle brackets and `-` would
 * otherwise end a label, start a comment or an arrow, or become HTML;
 * `_`, `*`, `~` and backticks would become Markdown emphasis (Mermaid
 * draws `a_b_c` as "a", italic "b", "c"), and `$$...$$` a formula.
 *
 * @internal
 */
export function mermaidText(text: string): string {
  const chars = [...text.replace(/[\r\n\t]+/g, ' ')];
  const alnum = (ch: string | undefined): boolean =>
    ch !== undefined && /^[A-Za-z0-9]$/.test(ch);
  let out = '';
  for (const [i, ch] of chars.entries()) {
    // An underscore inside a word (ADD_ITEM) cannot open or close emphasis.
    const safe =
      /^[A-Za-z0-9 .,()[\]!?/+=@%^'|]$/.test(ch) ||
      (ch === '_' && alnum(chars[i - 1]) && alnum(chars[i + 1]));
    out += safe ? ch : `#${ch.codePointAt(0)};`;
  }
  return out;
}
