/**
 * Shard allocation by rendezvous (highest random weight) hashing.
 *
 * Every node computes the target owner of every shard from the same input
 * (the shard count and the set of live node ids with their weights), with no
 * coordinator and no shared state: for each shard, each node gets a
 * pseudo-random score from (node id, shard), and the highest score wins.
 * Because a shard's winner depends only on the scores of the nodes present:
 *
 * - adding a node moves exactly the shards the new node wins, and only to it
 *   (about `shardCount / n` of them with `n` equal nodes after the join);
 * - removing a node moves exactly the shards it owned, spread over the
 *   others in proportion to their weights;
 * - the result does not depend on the order in which nodes are listed.
 *
 * Balance is statistical, not exact: with equal weights each node's count
 * follows Binomial(shardCount, 1/n), so with 256 shards and 3 nodes a node
 * holds 85 ± 7.5 (one standard deviation). The property tests check every
 * node within 6 standard deviations of its expected share; use more shards
 * than nodes by two orders of magnitude for an even spread. Exact balance
 * would need moves beyond the joining node's own shards (Akka's
 * least-shard strategy does this), which is the trade this module declines.
 *
 * Weights use the logarithmic method (score = -weight / ln(u) with u uniform
 * in (0, 1)), so a node of weight 2 wins twice as many shards as one of
 * weight 1, and changing one node's weight moves shards only to or from it.
 *
 * The scores are part of the cluster protocol: nodes that computed them
 * differently would disagree on targets and hand shards back and forth
 * (never unsafely: ownership changes by compare-and-set only, see
 * coordinator.ts). They are fixed as murmur3-derived 53-bit values below.
 */
import { ConfigError } from '../errors.js';
import { assertShardCount, fmix32, murmur3String } from './shard.js';

/** A node taking part in allocation: its id and an optional weight. */
export interface AllocationNode {
  readonly id: string;
  /** Relative capacity, a finite number > 0. Default 1. */
  readonly weight?: number;
}

interface PreparedNode {
  readonly id: string;
  readonly weight: number;
  readonly h1: number;
  readonly h2: number;
}

const TWO_POW_21 = 2_097_152;
const TWO_POW_53 = 9_007_199_254_740_992;

function prepare(nodes: readonly (string | AllocationNode)[]): PreparedNode[] {
  const seen = new Set<string>();
  const prepared: PreparedNode[] = [];
  for (const node of nodes) {
    const id = typeof node === 'string' ? node : node.id;
    const weight = typeof node === 'string' ? 1 : (node.weight ?? 1);
    if (typeof id !== 'string' || id === '') {
      throw new ConfigError(
        `Allocation node ids must be non-empty strings, got ${JSON.stringify(id)}.`,
      );
    }
    if (seen.has(id)) {
      throw new ConfigError(
        `Node "${id}" is listed twice: pass each live node once.`,
        { details: { id } },
      );
    }
    if (!(weight > 0) || !Number.isFinite(weight)) {
      throw new ConfigError(
        `Node "${id}" has weight ${String(weight)}: a weight must be a finite number greater than 0.`,
        { details: { id, weight } },
      );
    }
    seen.add(id);
    prepared.push({
      id,
      weight,
      h1: murmur3String(id, 0x2545f491),
      h2: murmur3String(id, 0x9e3779b9),
    });
  }
  return prepared;
}

/**
 * A uniform number in (0, 1) for (node, shard), with 53 random bits: two
 * independently seeded 32-bit mixes of the node's hashes with the shard.
 */
function uniform(node: PreparedNode, shard: number): number {
  const hi = fmix32(node.h1 ^ fmix32(shard ^ 0x85ebca6b));
  const lo = fmix32(node.h2 ^ fmix32(shard ^ 0xc2b2ae35));
  return (hi * TWO_POW_21 + (lo >>> 11) + 0.5) / TWO_POW_53;
}

/**
 * The rendezvous score of a node for a shard: the highest score wins.
 * @internal
 */
function score(node: PreparedNode, shard: number): number {
  return -node.weight / Math.log(uniform(node, shard));
}

function better(
  a: PreparedNode,
  aScore: number,
  b: PreparedNode,
  bScore: number,
): boolean {
  // Ties have probability ~2^-53; breaking them by id keeps the result
  // independent of the order of the input.
  return aScore > bScore || (aScore === bScore && a.id < b.id);
}

/**
 * The target owner of every shard: element `s` of the result is the id of
 * the node that should own shard `s`. Deterministic in its inputs and
 * independent of the order of `nodes`; see the module comment for the move
 * and balance guarantees. Throws `ConfigError` for an empty or duplicated
 * node list or a bad weight.
 *
 * @example
 * ```ts
 * const owners = allocate(256, ['n1', 'n2', { id: 'n3', weight: 2 }]);
 * owners[17]; // 'n3', on every node that sees the same three members
 * ```
 */
export function allocate(
  shardCount: number,
  nodes: readonly (string | AllocationNode)[],
): string[] {
  assertShardCount(shardCount);
  const prepared = prepare(nodes);
  if (prepared.length === 0) {
    throw new ConfigError(
      'allocate needs at least one node: with no live node no shard has a target.',
    );
  }
  const owners = new Array<string>(shardCount);
  for (let shard = 0; shard < shardCount; shard++) {
    let best = prepared[0] as PreparedNode;
    let bestScore = score(best, shard);
    for (let i = 1; i < prepared.length; i++) {
      const node = prepared[i] as PreparedNode;
      const s = score(node, shard);
      if (better(node, s, best, bestScore)) {
        best = node;
        bestScore = s;
      }
    }
    owners[shard] = best.id;
  }
  return owners;
}

/**
 * The shards whose owner differs between two allocations of the same shard
 * count, with the owner before and after.
 *
 * @example
 * ```ts
 * const moves = allocationMoves(allocate(256, ['a', 'b']), allocate(256, ['a', 'b', 'c']));
 * moves.every((m) => m.to === 'c'); // true: a join moves shards only to the new node
 * ```
 */
export function allocationMoves(
  before: readonly string[],
  after: readonly string[],
): { shard: number; from: string; to: string }[] {
  if (before.length !== after.length) {
    throw new ConfigError(
      `Allocations of ${before.length} and ${after.length} shards cannot be compared: the shard count is fixed for a system.`,
    );
  }
  const moves: { shard: number; from: string; to: string }[] = [];
  for (let shard = 0; shard < before.length; shard++) {
    const from = before[shard] as string;
    const to = after[shard] as string;
    if (from !== to) moves.push({ shard, from, to });
  }
  return moves;
}
