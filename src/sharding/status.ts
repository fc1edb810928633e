/**
 * Snapshots of a coordinator's view for `status()` and `members()`: plain
 * data for `shardchart cluster status`, logs and tests.
 * @internal
 */
import type { MemberStatus, ShardStatus } from './coordinator-options.js';
import { nodeKey, shardKey } from './records.js';
import type { ClusterView, NodeView } from './view.js';

/** Members as `view` shows them, sorted by node id. @internal */
export function describeMembers(
  view: ClusterView,
  now: number,
  isLive: (node: NodeView) => boolean,
  isSelf: (node: NodeView) => boolean,
): MemberStatus[] {
  const owned = new Map<string, number>();
  for (const { record } of view.shards.values()) {
    if (record !== undefined && record.owner !== null) {
      const key = `${record.owner}/${record.incarnation}`;
      owned.set(key, (owned.get(key) ?? 0) + 1);
    }
  }
  const members: MemberStatus[] = [];
  for (const node of view.nodes.values()) {
    const record = node.record;
    if (record === undefined) continue;
    members.push({
      nodeId: node.nodeId,
      incarnation: record.incarnation,
      self: isSelf(node),
      alive: isLive(node),
      status: record.status,
      lastSeenAgoMs: now - node.seenAt,
      leaseTtlMs: record.leaseTtlMs,
      weight: record.weight,
      types: record.types,
      startedAt: record.startedAt,
      load: record.load,
      shardsOwned: owned.get(`${node.nodeId}/${record.incarnation}`) ?? 0,
    });
  }
  return members.sort((a, b) =>
    a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0,
  );
}

/** Every shard's owner, liveness and target as `view` shows them. @internal */
export function describeShards(
  view: ClusterView,
  targets: readonly string[] | undefined,
  ownerOf: (shard: number) => string | undefined,
): ShardStatus[] {
  return Array.from({ length: view.shardCount }, (_, shard) => {
    const current = view.shards.get(shard);
    return {
      shard,
      owner: current?.record?.owner ?? null,
      ownerAlive: ownerOf(shard) !== undefined,
      target: targets?.[shard],
      revision: current?.revision ?? 0,
    };
  });
}

/** Records in `view` that this release cannot read. @internal */
export function describeInvalid(
  view: ClusterView,
): { key: string; reason: string }[] {
  const invalid: { key: string; reason: string }[] = [];
  for (const [shard, current] of view.shards) {
    if (current.invalid !== undefined) {
      invalid.push({ key: shardKey(shard), reason: current.invalid });
    }
  }
  for (const node of view.nodes.values()) {
    if (node.invalid !== undefined) {
      invalid.push({ key: nodeKey(node.nodeId), reason: node.invalid });
    }
  }
  return invalid;
}
