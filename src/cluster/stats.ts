/** Counters of a clustered node, in `system.stats().cluster`. */
export interface ClusterStats {
  nodeId: string;
  /** Shards this node consumes now. */
  ownedShards: number;
  /** Malformed, oversized or unexpected messages received and dropped. */
  messagesInvalid: number;
  /** Sends this node routed into the cluster. */
  eventsRouted: number;
  /**
   * Sends published again after twice the lease TTL without an answer (an
   * owner died between its ack and its answer, or the answer was lost).
   */
  eventsResent: number;
  /** Shards this node handed over gracefully. */
  handoffs: number;
  /** Shards this node lost without a handoff (lease lapsed, taken over). */
  shardsLost: number;
}
