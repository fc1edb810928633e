/**
 * `shardchart/graph`: a statechart as plain JSON, Mermaid, Graphviz DOT or
 * SVG, optionally highlighting where a live entity is (active states,
 * pending timers, history values). The public surface is this hand-written
 * list.
 */
export { toGraph, assertMachine } from './model.js';
export { toMermaid, renderMermaid } from './mermaid.js';
export { toDot, renderDot } from './dot.js';
export { toSvg, renderSvg, svgNodesMaxDefault } from './svg.js';
export type { SvgOptions } from './svg.js';
export type {
  GraphEdge,
  GraphEdgeKind,
  GraphInvoke,
  GraphLive,
  GraphModel,
  GraphNode,
  GraphNodeType,
  GraphOptions,
  GraphPendingTimer,
  GraphSnapshot,
} from './types.js';
