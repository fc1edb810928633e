import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { checkPlainData, encode } from '../../src/codec/index.js';
import { hasForbiddenKey } from './helpers.js';

const roomy = { bytesMax: 1e9, depthMax: 1_000 };

class Cart {
  items: string[] = [];
}

describe('checkPlainData', () => {
  it('plain-data - arbitrary JSON values pass', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        fc.pre(!hasForbiddenKey(value));
        expect(checkPlainData(value, roomy).problem).toBeUndefined();
      }),
    );
  });

  it('plain-data - the byte estimate equals the encoded size for ASCII data', () => {
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: 'binary-ascii' }), (value) => {
        fc.pre(!hasForbiddenKey(value));
        expect(checkPlainData(value, roomy).bytes).toBe(encode(value).length);
      }),
    );
  });

  it('plain-data - null, undefined, null-prototype objects and shared (acyclic) references pass', () => {
    const shared = { sku: 'A-1' };
    const bare = Object.create(null) as Record<string, unknown>;
    bare['x'] = 1;
    const value = {
      a: null,
      b: undefined,
      c: [undefined],
      d: bare,
      e: [shared, shared],
    };
    expect(checkPlainData(value, roomy).problem).toBeUndefined();
  });

  const refusals: Array<[string, unknown, string, RegExp]> = [
    [
      'a function',
      { items: [0, 1, 2, { sku: () => 1 }] },
      '$.items[3].sku',
      /Functions cannot be persisted/,
    ],
    ['a class instance', { cart: new Cart() }, '$.cart', /instance of Cart/],
    [
      'an anonymous class instance',
      { x: new (class {})() },
      '$.x',
      /instance of/,
    ],
    ['a Date', { at: new Date(0) }, '$.at', /toISOString/],
    ['a Map', { m: new Map([['a', 1]]) }, '$.m', /Object\.fromEntries/],
    ['a Set', { s: new Set([1]) }, '$.s', /array/],
    ['a RegExp', [/x/], '$[0]', /source and flags/],
    ['an Error', { e: new Error('boom') }, '$.e', /message/],
    ['a typed array', { bytes: new Uint8Array(2) }, '$.bytes', /Uint8Array/],
    ['an ArrayBuffer', { buf: new ArrayBuffer(2) }, '$.buf', /ArrayBuffer/],
    ['a Promise', { p: Promise.resolve(1) }, '$.p', /await/],
    [
      'an Array subclass',
      { a: new (class Row extends Array {})() },
      '$.a',
      /Array subclass/,
    ],
    ['a symbol', { tag: Symbol('t') }, '$.tag', /Symbols/],
    [
      'a symbol nested in arrays',
      { a: [[Symbol.iterator]] },
      '$.a[0][0]',
      /Symbols/,
    ],
    ['a bigint', { n: 10n }, '$.n', /BigInt/],
    ['NaN', { total: NaN }, '$.total', /NaN .*finite/],
    ['Infinity', { total: [1, -Infinity] }, '$.total[1]', /-Infinity .*finite/],
    [
      'an own __proto__ key',
      JSON.parse('{"a":{"__proto__":{"x":1}}}'),
      '$.a.__proto__',
      /prototype pollution/,
    ],
    [
      'an own constructor key',
      { a: [{ constructor: 'x' }] },
      '$.a[0].constructor',
      /prototype pollution/,
    ],
    [
      'a key that is not an identifier',
      { 'my key': () => 0 },
      '$["my key"]',
      /Functions/,
    ],
  ];

  for (const [name, value, path, reason] of refusals) {
    it(`plain-data - ${name} is not-serializable at ${path}`, () => {
      const { problem } = checkPlainData(value, roomy);
      expect(problem?.kind).toBe('not-serializable');
      expect(problem?.path).toBe(path);
      expect(problem?.reason).toMatch(reason);
      // Reasons are sentences that say what to do.
      expect(problem?.reason).toMatch(/[.;] .*\.$/);
    });
  }

  it('plain-data - a cycle is reported with the path that closes it', () => {
    const order: Record<string, unknown> = { id: 'o-1', lines: [] };
    (order['lines'] as unknown[]).push({ order });
    const { problem } = checkPlainData(order, roomy);
    expect(problem).toMatchObject({ kind: 'cycle', path: '$.lines[0].order' });
  });

  it('plain-data - an array that contains itself is a cycle', () => {
    const a: unknown[] = [];
    a.push(a);
    expect(checkPlainData(a, roomy).problem).toMatchObject({
      kind: 'cycle',
      path: '$[0]',
    });
  });

  it('plain-data - nesting exactly depthMax passes and one level more is too-deep', () => {
    const nest = (levels: number): unknown => {
      let value: unknown = 'leaf';
      for (let i = 0; i < levels; i++) value = { child: value };
      return value;
    };
    expect(
      checkPlainData(nest(8), { bytesMax: 1e6, depthMax: 8 }).problem,
    ).toBeUndefined();
    const { problem } = checkPlainData(nest(9), { bytesMax: 1e6, depthMax: 8 });
    expect(problem?.kind).toBe('too-deep');
    expect(problem?.path).toBe('$' + '.child'.repeat(8));
    expect(problem?.reason).toMatch(/depthMax 8/);
  });

  it('plain-data - an empty array counts as one level', () => {
    expect(
      checkPlainData([], { bytesMax: 100, depthMax: 0 }).problem?.kind,
    ).toBe('too-deep');
    expect(
      checkPlainData('x', { bytesMax: 100, depthMax: 0 }).problem,
    ).toBeUndefined();
  });

  it('plain-data - a deep value with a large depthMax reports too-deep rather than overflowing the stack', () => {
    let value: unknown = null;
    for (let i = 0; i < 200_000; i++) value = [value];
    const { problem } = checkPlainData(value, { bytesMax: 1e9, depthMax: 1e9 });
    expect(problem?.kind).toBe('too-deep');
  });

  it('plain-data - passing bytesMax gives too-large and stops the walk early', () => {
    const items = Array.from({ length: 10_000 }, (_, i) => ({
      sku: `sku-${i}`,
    }));
    let visited = 0;
    const tail = {
      get late() {
        visited += 1;
        return 1;
      },
    };
    const { bytes, problem } = checkPlainData(
      { items, tail },
      { bytesMax: 1_000, depthMax: 8 },
    );
    expect(problem?.kind).toBe('too-large');
    expect(problem?.path).toMatch(/^\$\.items\[\d+\]/);
    expect(problem?.reason).toMatch(/bytesMax 1000/);
    expect(bytes).toBeGreaterThan(1_000);
    expect(bytes).toBeLessThan(1_100);
    expect(visited).toBe(0);
  });

  it('plain-data - a value exactly at bytesMax passes', () => {
    const value = 'x'.repeat(20); // fixstr: 1 header byte + 20
    expect(checkPlainData(value, { bytesMax: 21, depthMax: 1 })).toEqual({
      bytes: 21,
    });
    expect(
      checkPlainData(value, { bytesMax: 20, depthMax: 1 }).problem?.kind,
    ).toBe('too-large');
  });

  it('plain-data - a getter that throws is reported, not thrown', () => {
    const value = {
      get boom(): never {
        throw new Error('nope');
      },
    };
    const { problem } = checkPlainData(value, roomy);
    expect(problem?.kind).toBe('not-serializable');
    expect(problem?.reason).toMatch(/nope/);
  });
});
