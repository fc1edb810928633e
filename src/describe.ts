/**
 * How error messages show a value the caller passed: short, never the whole
 * value (it may be large or secret), and never throwing.
 *
 * @example
 * ```ts
 * describe('x'.repeat(100)); // '"xxxx…"' (64 characters and an ellipsis)
 * describe(3);               // 'number 3'
 * describe({ a: 1 });        // 'an object'
 * ```
 *
 * @internal
 */
export function describe(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 64 ? value.slice(0, 64) + '…' : value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'number':
    case 'boolean':
    case 'bigint':
      return `${typeof value} ${String(value)}`;
    case 'undefined':
      return 'undefined';
    case 'object':
      return 'an object';
    default:
      return `a ${typeof value}`;
  }
}
