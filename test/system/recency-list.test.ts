import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecencyList, type RecencyNode } from '../../src/system/recency-list.js';

class Node implements RecencyNode<Node> {
  older: Node | undefined;
  newer: Node | undefined;
  constructor(readonly id: number) {}
}

/** Walks the list both ways and checks the links agree. */
function order(list: RecencyList<Node>): number[] {
  const forward: number[] = [];
  for (let n = list.oldest; n !== undefined; n = n.newer) forward.push(n.id);
  const backward: number[] = [];
  for (let n = list.newest; n !== undefined; n = n.older) backward.push(n.id);
  expect(backward.reverse()).toEqual(forward);
  return forward;
}

const runs = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? 100);

describe('recency list', () => {
  it('recency list - add, touch and remove keep the order a plain array model gives', () => {
    const op = fc.tuple(fc.constantFrom('add', 'touch', 'remove'), fc.nat(7));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const list = new RecencyList<Node>();
        const nodes = Array.from({ length: 8 }, (_, i) => new Node(i));
        let model: number[] = [];
        for (const [kind, id] of ops) {
          const inList = model.includes(id);
          if (kind === 'add' && !inList) {
            list.add(nodes[id]!);
            model.push(id);
          } else if (kind === 'remove' && inList) {
            list.remove(nodes[id]!);
            model = model.filter((m) => m !== id);
          } else if (kind === 'touch') {
            // Touching a node that is not in the list leaves it out.
            list.touch(nodes[id]!);
            if (inList) model = [...model.filter((m) => m !== id), id];
          }
          expect(order(list)).toEqual(model);
        }
      }),
      { numRuns: runs },
    );
  });
});
