import type { PendingTimer } from '../persistence/types.js';

/**
 * The plain-JSON graph of a statechart that every export format is drawn
 * from. Renderers never look at the XState machine again, so the four
 * formats cannot disagree about what the machine contains.
 */

/** The kind of a state node, as XState names it. */
export type GraphNodeType =
  | 'atomic'
  | 'compound'
  | 'parallel'
  | 'history'
  | 'final';

/** One invoked actor declared on a state. */
export interface GraphInvoke {
  /** The invoke id (XState generates one when the machine gives none). */
  readonly id: string;
  /** The actor source name; `(inline)` for logic given inline. */
  readonly src: string;
  /** Live only: true when the snapshot holds a running child with this id. */
  readonly running?: boolean;
}

/** One state node of the machine, the root included. */
export interface GraphNode {
  /** The XState state node id (`order.processing.payment`, or a custom `#id`). Unique. */
  readonly id: string;
  /** The key under its parent; the machine id for the root. */
  readonly key: string;
  /** Id of the parent node; null for the root. */
  readonly parent: string | null;
  readonly type: GraphNodeType;
  /** Ids of the child nodes in document order. */
  readonly children: readonly string[];
  /** Compound nodes: id of the initial child. */
  readonly initial?: string;
  /** History nodes: `shallow` (H) or `deep` (H*). */
  readonly history?: 'shallow' | 'deep';
  /** History nodes: the explicit default target ids, when the machine declares one. */
  readonly historyTarget?: readonly string[];
  readonly entry: readonly string[];
  readonly exit: readonly string[];
  readonly invoke: readonly GraphInvoke[];
  readonly tags: readonly string[];
  readonly description?: string;
  /** Live only: true when the node is in the active configuration. */
  readonly active?: boolean;
  /** Live only, history nodes: the state ids the history remembers. */
  readonly remembers?: readonly string[];
}

/** What triggers a transition. */
export type GraphEdgeKind =
  | 'event'
  | 'delayed'
  | 'eventless'
  | 'done'
  | 'invokeDone'
  | 'invokeError'
  | 'invokeSnapshot';

/** A pending delayed event that will take this transition when it fires. */
export interface GraphPendingTimer {
  /** Absolute deadline, ms since the epoch (entity clock). */
  readonly dueAt: number;
  readonly delayMs: number;
}

/** One transition. A transition with several targets is one edge. */
export interface GraphEdge {
  /** `e0`, `e1`, ... in document order; stable for a given machine. */
  readonly id: string;
  /** Id of the node that declares the transition. */
  readonly source: string;
  /** Target node ids; empty for a targetless transition (actions only). */
  readonly targets: readonly string[];
  /** The XState event descriptor (`CHECKOUT`, `xstate.after.400.order.x`, `*`). */
  readonly event: string;
  readonly kind: GraphEdgeKind;
  /** The guard as text (`hasItems`, `!isPaid`, `a && b`), when there is one. */
  readonly guard?: string;
  /** Delayed transitions: the delay in ms, or the name of a configured delay. */
  readonly delay?: number | string;
  readonly actions: readonly string[];
  /** True for `reenter: true` (the source is exited and entered again). */
  readonly reenter: boolean;
  readonly description?: string;
  /** The human label: `EVENT [guard] / actions`, `after 5s`, `always [guard]`. */
  readonly label: string;
  /** Live only: the timer that will fire this transition. */
  readonly pending?: GraphPendingTimer;
}

/** What a live graph adds: where the entity is and what it waits for. */
export interface GraphLive {
  /** Ids of the active state nodes (ancestors included), in document order. */
  readonly active: readonly string[];
  /** The snapshot status (`active`, `done`, `error`, `stopped`). */
  readonly status?: string;
  /** Pending delayed events, as the snapshot recorded them. */
  readonly timers: readonly PendingTimer[];
  /** History node id -> remembered state ids. */
  readonly history: Readonly<Record<string, readonly string[]>>;
  /** Journal seq of the snapshot, when it is a Shardchart stored snapshot. */
  readonly seq?: number;
  /** Clock time of the snapshot, when known. */
  readonly at?: number;
}

/** The whole graph: `toGraph(machine)` returns it and every format draws it. */
export interface GraphModel {
  /** Format version of this JSON. */
  readonly v: 1;
  /** The machine id; also the root node's id. */
  readonly id: string;
  readonly root: string;
  /** Nodes in document order (parents before children). */
  readonly nodes: readonly GraphNode[];
  readonly edges: readonly GraphEdge[];
  /** Present when a snapshot was given. */
  readonly live?: GraphLive;
}

/**
 * A snapshot to highlight. Accepted forms: an XState persisted snapshot
 * (`actor.getPersistedSnapshot()`), a live XState snapshot
 * (`actor.getSnapshot()`), a Shardchart stored snapshot
 * (`{ v: 1, seq, at, state, timers }`) or an entity state from
 * `ref.snapshot()` (value only: no history, no timers).
 */
export type GraphSnapshot = unknown;

/** Options shared by every format. */
export interface GraphOptions {
  /** Highlight this snapshot: active states, pending timers, history values. */
  snapshot?: GraphSnapshot;
  /**
   * Pending timers to show, overriding those found in the snapshot (XState
   * snapshots carry none; Shardchart stored snapshots do).
   */
  timers?: readonly PendingTimer[];
}
