/**
 * What the parts of the coordinator (membership.ts, ownership.ts) share
 * with the coordinator that drives them (coordinator.ts).
 * @internal
 */
import type { Logger } from 'pino';

import type { Clock } from '../system/clock.js';
import type {
  CoordinatorOptions,
  CoordinatorStatus,
  ResolvedCoordinatorOptions,
} from './coordinator-options.js';
import type { ClusterKv } from './kv.js';
import type { ClusterView, NodeView } from './view.js';

/** @internal */
export type Phase = CoordinatorStatus['phase'];

/** @internal */
export interface CoordinatorContext {
  readonly cfg: ResolvedCoordinatorOptions;
  readonly options: CoordinatorOptions;
  readonly kv: ClusterKv;
  readonly clock: Clock;
  readonly log: Logger;
  readonly view: ClusterView;
  phase(): Phase;
  /**
   * When `node` counts as dead in this node's view: its lease TTL after it
   * was last seen to change, counted only while the view is healthy.
   * Undefined when it cannot be judged now (view unhealthy, record
   * unreadable).
   */
  deadline(node: NodeView): number | undefined;
  /** True while the view is healthy (watch caught up, heartbeats succeeding). */
  healthy(): boolean;
  /** The live owner of a shard, for error messages. */
  ownerOf(shard: number): string | undefined;
  /** Runs the coordinator's loop soon (coalesced). */
  requestTick(): void;
  /** Logs once per key, for conditions a loop would otherwise repeat. */
  reportOnce(key: string, report: () => void): void;
}
