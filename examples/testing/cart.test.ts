/**
 * How a user tests a machine with shardchart/testing: a differential
 * property check, and graph paths replayed on an entity.
 */
import fc from 'fast-check';
import { createActorSystem, createSimulatedClock, isShardchartError } from 'shardchart';
import { memoryStore } from 'shardchart/adapters/memory';
import { checkMachine, getTestPaths } from 'shardchart/testing';
import { describe, expect, it } from 'vitest';
import { createCart, totalMatchesItems } from './cart.js';

const events = {
  ADD: fc.constantFrom('tea', 'mug').map((sku) => ({ type: 'ADD', sku })),
  REMOVE: fc.constantFrom('tea', 'mug').map((sku) => ({ type: 'REMOVE', sku })),
  CHECKOUT: fc.constant({ type: 'CHECKOUT' }),
  PAY: fc.constant({ type: 'PAY' }),
  BACK: fc.constant({ type: 'BACK' }),
};
const invariants = {
  'total matches the items': totalMatchesItems,
  'a paid cart is not empty': (s: { status: string; context: unknown }) =>
    s.status !== 'done' || (s.context as { total: number }).total > 0,
};

describe('examples/testing - cart', () => {
  it('cart - an entity agrees with plain XState under passivations, restarts and clock jumps', async () => {
    const report = await checkMachine(createCart(), { events, invariants, runs: 30 });
    expect(report.runs).toBe(30);
  });

  it('cart - a cart that forgets the total on REMOVE is caught in two steps', async () => {
    const err = await checkMachine(createCart({ forgetTotalOnRemove: true }), { events, invariants }).catch((e: unknown) => e);
    expect(isShardchartError(err, 'CHECK_FAILED')).toBe(true);
    expect((err as Error).message).toContain('invariant "total matches the items"');
    expect((err as { details: { steps: unknown[] } }).details.steps).toHaveLength(2);
  });

  it('cart - the paths to an expired checkout replay on an entity, timer steps as clock jumps', async () => {
    const cart = createCart();
    const paths = getTestPaths(cart, {
      kind: 'both',
      events: { ADD: [{ type: 'ADD', sku: 'tea' }, { type: 'ADD', sku: 'mug' }], REMOVE: [] },
      depthMax: 4,
      toState: (s) => s.context.expired > 0,
    });
    expect(paths.map((p) => p.description)).toContain('reaches "shopping" via ADD {"sku":"tea"} → CHECKOUT → after 900000 ms');
    for (const path of paths) {
      const clock = createSimulatedClock(0);
      const system = await createActorSystem({ name: 'shop', entities: { cart }, store: memoryStore(), clock });
      const ref = system.entity('cart', 'c-1');
      for (const step of path.steps) {
        if (step.delayMs !== undefined) clock.advance(step.delayMs);
        else await ref.send(step.event);
        const state = await ref.snapshot();
        expect(state.value, path.description).toEqual(step.state.value);
        expect(state.context, path.description).toEqual(step.state.context);
      }
      await system.stop();
    }
  });
});
