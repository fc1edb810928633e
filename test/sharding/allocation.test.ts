// Rendezvous allocation (src/sharding/allocation.ts), by property: a single
// owner per shard among the given nodes, independence from list order, moves
// on a join only to the newcomer and bounded, moves on a leave only of the
// leaver's shards, weights respected, and balance within a binomial bound.
//
// The move and balance bounds are statistical. Under ideal hashing the
// number of shards a newcomer wins is Binomial(S, p) with p = w_new / W, and
// a node's share is Binomial(S, w_i / W). Each check allows the mean plus
// 6 standard deviations plus 2 (the +2 covers tiny S): a correct
// implementation exceeds that with probability below 1e-8 per check, so a
// failure means the hash is biased, not bad luck.
import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';

import { ConfigError } from '../../src/errors.js';
import {
  allocate,
  allocationMoves,
  type AllocationNode,
} from '../../src/sharding/allocation.js';

const nodeId = fc.stringMatching(/^[A-Za-z0-9_-]{1,24}$/);
const nodeSet = (min: number, max: number): fc.Arbitrary<string[]> =>
  fc.uniqueArray(nodeId, { minLength: min, maxLength: max });
const shardCount = fc.integer({ min: 64, max: 1_024 });

function upperBound(n: number, p: number): number {
  return n * p + 6 * Math.sqrt(n * p * (1 - p)) + 2;
}

function counts(owners: readonly string[]): Map<string, number> {
  const result = new Map<string, number>();
  for (const owner of owners) result.set(owner, (result.get(owner) ?? 0) + 1);
  return result;
}

describe('allocation - rendezvous hashing', () => {
  test.prop([fc.integer({ min: 1, max: 2_048 }), nodeSet(1, 12)])(
    'allocation - every shard has exactly one owner, and it is one of the nodes',
    (shards, nodes) => {
      const owners = allocate(shards, nodes);
      expect(owners).toHaveLength(shards);
      const ids = new Set(nodes);
      expect(owners.every((owner) => ids.has(owner))).toBe(true);
    },
  );

  test.prop([shardCount, nodeSet(1, 12), fc.nat()])(
    'allocation - the result does not depend on the order of the nodes',
    (shards, nodes, seed) => {
      const shuffled = [...nodes].sort(
        (a, b) =>
          ((a.length * 31 + seed) % 7) - ((b.length * 31 + seed) % 7) ||
          (a < b ? 1 : -1),
      );
      expect(allocate(shards, shuffled)).toEqual(allocate(shards, nodes));
    },
  );

  test.prop([shardCount, nodeSet(2, 13)])(
    'allocation - a join moves shards only to the new node, about shardCount / n of them',
    (shards, all) => {
      const newcomer = all[all.length - 1] as string;
      const before = allocate(shards, all.slice(0, -1));
      const after = allocate(shards, all);
      const moves = allocationMoves(before, after);
      expect(moves.every((m) => m.to === newcomer)).toBe(true);
      // Exactly the shards the newcomer wins move.
      expect(moves.length).toBe(after.filter((o) => o === newcomer).length);
      expect(moves.length).toBeLessThanOrEqual(
        upperBound(shards, 1 / all.length),
      );
    },
  );

  test.prop([shardCount, nodeSet(2, 13), fc.nat()])(
    'allocation - a leave moves only the leaver’s shards',
    (shards, all, pick) => {
      const leaver = all[pick % all.length] as string;
      const before = allocate(shards, all);
      const after = allocate(
        shards,
        all.filter((id) => id !== leaver),
      );
      for (const move of allocationMoves(before, after))
        expect(move.from).toBe(leaver);
      expect(after.includes(leaver)).toBe(false);
    },
  );

  test.prop([shardCount, nodeSet(1, 12)])(
    'allocation - every node’s share is within the binomial bound of shardCount / n',
    (shards, nodes) => {
      const share = counts(allocate(shards, nodes));
      const p = 1 / nodes.length;
      const slack = 6 * Math.sqrt(shards * p * (1 - p)) + 2;
      for (const id of nodes) {
        expect(Math.abs((share.get(id) ?? 0) - shards * p)).toBeLessThanOrEqual(
          slack,
        );
      }
    },
  );

  test.prop([
    fc.integer({ min: 512, max: 2_048 }),
    fc.uniqueArray(nodeId, { minLength: 2, maxLength: 6 }),
    fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 6, maxLength: 6 }),
  ])(
    'allocation - weights: a node’s share follows its weight, and a weight change moves shards only to or from it',
    (shards, ids, weights) => {
      const nodes: AllocationNode[] = ids.map((id, i) => ({
        id,
        weight: weights[i] as number,
      }));
      const total = nodes.reduce((sum, n) => sum + (n.weight as number), 0);
      const share = counts(allocate(shards, nodes));
      for (const node of nodes) {
        const p = (node.weight as number) / total;
        const slack = 6 * Math.sqrt(shards * p * (1 - p)) + 2;
        expect(
          Math.abs((share.get(node.id) ?? 0) - shards * p),
        ).toBeLessThanOrEqual(slack);
      }
      const changed = {
        ...nodes[0]!,
        weight: (nodes[0]!.weight as number) + 2,
      };
      const after = allocate(shards, [changed, ...nodes.slice(1)]);
      for (const move of allocationMoves(allocate(shards, nodes), after)) {
        expect(move.to).toBe(changed.id);
      }
    },
  );

  test('allocation - pinned assignments (the scores are part of the protocol)', () => {
    // Nodes of different releases must agree on targets; these values may
    // only change with a protocol version bump.
    expect(allocate(8, ['n1', 'n2', 'n3'])).toEqual(
      allocate(8, ['n3', 'n1', 'n2']),
    );
    expect(allocate(12, ['n1', 'n2', 'n3']).join(',')).toMatchInlineSnapshot(
      `"n1,n2,n2,n1,n3,n3,n3,n1,n3,n3,n1,n2"`,
    );
    expect(
      allocate(6, [
        { id: 'a', weight: 1 },
        { id: 'b', weight: 3 },
      ]).join(','),
    ).toMatchInlineSnapshot(`"b,b,b,b,b,a"`);
  });

  test('allocation - refuses no nodes, duplicates, bad weights and bad shard counts', () => {
    expect(() => allocate(8, [])).toThrow(ConfigError);
    expect(() => allocate(8, ['a', 'a'])).toThrow(ConfigError);
    expect(() => allocate(8, [{ id: 'a', weight: 0 }])).toThrow(ConfigError);
    expect(() => allocate(8, [{ id: 'a', weight: Number.NaN }])).toThrow(
      ConfigError,
    );
    expect(() => allocate(0, ['a'])).toThrow(ConfigError);
    expect(() => allocate(1.5, ['a'])).toThrow(ConfigError);
    expect(() => allocationMoves(['a'], ['a', 'b'])).toThrow(ConfigError);
  });
});
