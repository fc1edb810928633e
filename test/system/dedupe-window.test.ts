import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eventIdsOf, hashEventId, hasEventId, rememberEventId, toEventIdWindow } from '../../src/system/dedupe.js';

const runs = Number(process.env.SHARDCHART_PROPERTY_RUNS ?? 100);

describe('dedupe window', () => {
  it('dedupe window - "Aa" and "BB" share a hash and are still told apart', () => {
    expect(hashEventId('Aa')).toBe(hashEventId('BB'));
    const window = toEventIdWindow(['Aa'], 4);
    expect(hasEventId(window, 'Aa', hashEventId('Aa'))).toBe(true);
    expect(hasEventId(window, 'BB', hashEventId('BB'))).toBe(false);
  });

  it('dedupe window - membership and order match a plain list of the last max ids', () => {
    // A small alphabet with a colliding pair, so hits, misses and collisions all occur.
    const id = fc.constantFrom('Aa', 'BB', 'e-1', 'e-2', 'e-3', 'x', 'a-much-longer-event-id-0001');
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(id, { maxLength: 40 }), fc.array(id, { maxLength: 6 }), (max, sent, stored) => {
        let window = toEventIdWindow(stored, max);
        let model = stored.slice(-max);
        for (const next of sent) {
          expect(hasEventId(window, next, hashEventId(next))).toBe(model.includes(next));
          window = rememberEventId(window, next, hashEventId(next), max);
          model = [...model, next].slice(-max);
          expect(eventIdsOf(window)).toEqual(model);
        }
      }),
      { numRuns: runs },
    );
  });
});
