/**
 * The plain-data check: decides, before anything is persisted or sent,
 * whether a value will survive a msgpack round trip unchanged. It runs on
 * every event sent and every context an event changes, so a clean value is
 * checked in a single walk that allocates nothing: the walk state is reused
 * between calls, objects are walked with for-in (no key array), and a path
 * string is built only when there is something to report.
 */

/** Bounds for {@link checkPlainData}: estimated encoded bytes and nesting. */
export interface PlainDataLimits {
  /** Largest estimated msgpack size, in bytes, that is accepted. */
  bytesMax: number;
  /** Deepest nesting of arrays and objects accepted; `[]` has depth 1. */
  depthMax: number;
}

/**
 * Why a value was refused, where (`$.items[3].sku`) and what to do about it,
 * in a full sentence.
 */
export type PlainDataProblem = {
  kind: 'not-serializable' | 'cycle' | 'too-large' | 'too-deep';
  path: string;
  reason: string;
};

/** The state of one walk. */
interface Walk {
  bytes: number;
  bytesMax: number;
  depthMax: number;
  /** Containers on the current path; a linear scan beats a Set at the depths events have. */
  readonly ancestors: object[];
}

/**
 * The walk state not in use, kept for the next call. A call made while
 * another walk runs (a getter that itself checks a value) finds it taken
 * and makes its own, so walks never share state.
 */
let spareWalk: Walk | undefined = { bytes: 0, bytesMax: 0, depthMax: 0, ancestors: [] };

function startWalk(limits: PlainDataLimits): Walk {
  const walk = spareWalk ?? { bytes: 0, bytesMax: 0, depthMax: 0, ancestors: [] };
  spareWalk = undefined;
  walk.bytes = 0;
  walk.bytesMax = limits.bytesMax;
  walk.depthMax = limits.depthMax;
  return walk;
}

function endWalk(walk: Walk): void {
  // A walk that stopped at a problem leaves its path in `ancestors`. The
  // test matters: setting length 0 frees the array's store, and the next
  // walk would allocate a new one.
  if (walk.ancestors.length !== 0) walk.ancestors.length = 0;
  spareWalk = walk;
}

/**
 * Called as `hasOwn.call(value, key)` inside for-in, a pattern V8 compiles
 * to a check of the object's shape; `Object.hasOwn` measured 4x slower.
 */
// eslint-disable-next-line @typescript-eslint/unbound-method
const hasOwn = Object.prototype.hasOwnProperty;

const identifier = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * Checks that `value` is plain data that msgpack restores faithfully, and
 * estimates its encoded size. Accepted: null, undefined, booleans, finite
 * numbers, strings, arrays and plain objects (prototype `Object.prototype`
 * or `null`). Everything else is reported as the first problem found, with
 * its path; the walk stops there, and stops early once `bytesMax` is passed.
 *
 * `bytes` estimates the msgpack size: it is exact while strings are ASCII,
 * and counts one byte per UTF-16 unit otherwise, so other text is
 * undercounted by up to 3x; encoders and decoders enforce the exact size.
 *
 * @example
 * ```ts
 * const { bytes, problem } = checkPlainData(
 *   { type: 'ADD', at: new Date() },
 *   { bytesMax: 65_536, depthMax: 32 },
 * );
 * // problem: { kind: 'not-serializable', path: '$.at', reason: 'A Date ...' }
 * ```
 */
export function checkPlainData(
  value: unknown,
  limits: PlainDataLimits,
): { bytes: number; problem?: PlainDataProblem } {
  const walk = startWalk(limits);
  const problem = walkValue(value, walk);
  const bytes = walk.bytes;
  endWalk(walk);
  return problem === undefined ? { bytes } : { bytes, problem };
}

/**
 * {@link checkPlainData} without the byte count: the problem, or undefined
 * for plain data within `limits`. Allocates nothing for a clean value; the
 * engine calls it on every send.
 *
 * @internal
 * @example
 * ```ts
 * plainDataProblem({ type: 'ADD', qty: 1 }, { bytesMax: 65_536, depthMax: 64 }); // undefined
 * ```
 */
export function plainDataProblem(
  value: unknown,
  limits: PlainDataLimits,
): PlainDataProblem | undefined {
  const walk = startWalk(limits);
  const problem = walkValue(value, walk);
  endWalk(walk);
  return problem;
}

function walkValue(value: unknown, walk: Walk): PlainDataProblem | undefined {
  try {
    return check(value, 0, walk);
  } catch (err) {
    // A getter or proxy trap threw, or a configured depthMax is so large that
    // the walk ran out of stack. Either way the value cannot be persisted as
    // it stands; report it rather than let an unrelated exception escape.
    const overflow =
      err instanceof RangeError && /call stack/i.test(err.message);
    return overflow
      ? {
          kind: 'too-deep',
          path: '$',
          reason:
            'The value is nested too deeply to check; flatten it or lower depthMax.',
        }
      : {
          kind: 'not-serializable',
          path: '$',
          reason: `Reading the value threw (${String(err)}); send plain data without getters or proxies.`,
        };
  }
}

/**
 * Checks one value at nesting `depth` (the number of containers around it).
 * Returns the first problem with a path relative to this value; callers
 * prepend their own segment as the recursion unwinds, so paths cost nothing
 * on the common, clean path.
 */
function check(
  value: unknown,
  depth: number,
  walk: Walk,
): PlainDataProblem | undefined {
  switch (typeof value) {
    case 'string':
      walk.bytes += strBytes(value.length);
      return walk.bytes > walk.bytesMax ? tooLarge(walk) : undefined;
    case 'number':
      if (!Number.isFinite(value)) return nonFinite(value);
      walk.bytes += numberBytes(value);
      return walk.bytes > walk.bytesMax ? tooLarge(walk) : undefined;
    case 'boolean':
      walk.bytes += 1;
      return walk.bytes > walk.bytesMax ? tooLarge(walk) : undefined;
    case 'undefined':
      // msgpackr writes undefined as the 3-byte fixext `d4 00 00`.
      walk.bytes += 3;
      return walk.bytes > walk.bytesMax ? tooLarge(walk) : undefined;
    case 'object':
      if (value === null) {
        walk.bytes += 1;
        return walk.bytes > walk.bytesMax ? tooLarge(walk) : undefined;
      }
      return checkContainer(value, depth + 1, walk);
    case 'function':
      return refuse(
        'Functions cannot be persisted; send plain data (strings, numbers, arrays, plain objects) instead.',
      );
    case 'symbol':
      return refuse('Symbols cannot be persisted; use a string instead.');
    case 'bigint':
      return refuse(
        'BigInt values cannot be persisted; send the number as a string, or as a number within Number.MAX_SAFE_INTEGER.',
      );
  }
  return refuse(
    `Values of type ${typeof value} cannot be persisted; send plain data instead.`,
  );
}

function checkContainer(
  value: object,
  depth: number,
  walk: Walk,
): PlainDataProblem | undefined {
  const ancestors = walk.ancestors;
  for (let i = 0; i < ancestors.length; i++) {
    if (ancestors[i] === value) {
      return {
        kind: 'cycle',
        path: '$',
        reason:
          'The value refers back to one of its own ancestors (a cycle); msgpack cannot encode cycles, so send a tree of plain data, using ids to refer to other parts.',
      };
    }
  }
  if (depth > walk.depthMax) {
    return {
      kind: 'too-deep',
      path: '$',
      reason: `The value is nested deeper than depthMax ${walk.depthMax}; flatten it or raise the limit.`,
    };
  }

  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype) {
      return refuse(
        `An instance of ${className(value)} (an Array subclass) cannot be persisted faithfully; send a plain array instead.`,
      );
    }
    const length = value.length;
    walk.bytes += containerBytes(length);
    if (walk.bytes > walk.bytesMax) return tooLarge(walk);
    ancestors.push(value);
    for (let i = 0; i < length; i++) {
      const problem = check(value[i], depth, walk);
      if (problem !== undefined) {
        problem.path = `$[${i}]${problem.path.slice(1)}`;
        return problem;
      }
    }
    ancestors.pop();
    return undefined;
  }

  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return refuseObject(value);

  // The own enumerable string keys are exactly the key set msgpackr encodes
  // (Object.keys, with variableMapSize), so what is checked is what is
  // written. for-in with an own-key test visits the same keys in the same
  // order without allocating a key array; it is walked twice because the
  // map header (its size depends on the count) comes before the entries.
  let count = 0;
  for (const key in value) if (hasOwn.call(value, key)) count++;
  walk.bytes += containerBytes(count);
  if (walk.bytes > walk.bytesMax) return tooLarge(walk);
  ancestors.push(value);
  for (const key in value) {
    if (!hasOwn.call(value, key)) continue;
    if (key === '__proto__' || key === 'constructor') {
      return {
        kind: 'not-serializable',
        path: keyPath(key),
        reason: `The own key "${key}" is refused because it enables prototype pollution when decoded; rename the key.`,
      };
    }
    walk.bytes += strBytes(key.length);
    const problem =
      walk.bytes > walk.bytesMax
        ? tooLarge(walk)
        : check((value as Record<string, unknown>)[key], depth, walk);
    if (problem !== undefined) {
      problem.path = keyPath(key) + problem.path.slice(1);
      return problem;
    }
  }
  ancestors.pop();
  return undefined;
}

/** Names the kind of non-plain object, so the reason says what to send instead. */
function refuseObject(value: object): PlainDataProblem {
  if (value instanceof Date) {
    return refuse(
      'A Date cannot be persisted as plain data; send date.toISOString() or date.getTime() instead.',
    );
  }
  if (value instanceof Map) {
    return refuse(
      'A Map cannot be persisted as plain data; send Object.fromEntries(map) or an array of [key, value] pairs instead.',
    );
  }
  if (value instanceof Set) {
    return refuse(
      'A Set cannot be persisted as plain data; send an array ([...set]) instead.',
    );
  }
  if (value instanceof RegExp) {
    return refuse(
      'A RegExp cannot be persisted as plain data; send its source and flags as strings instead.',
    );
  }
  if (value instanceof Error) {
    return refuse(
      'An Error cannot be persisted as plain data; send { name, message } as strings instead.',
    );
  }
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    return refuse(
      `A ${className(value)} (binary data) cannot be persisted as plain data; send an array of numbers or a base64 string instead.`,
    );
  }
  if (value instanceof Promise) {
    return refuse(
      'A Promise cannot be persisted; await it and send its plain-data result instead.',
    );
  }
  return refuse(
    `An instance of ${className(value)} cannot be persisted: only plain objects (created with {} or Object.create(null)) restore faithfully; copy the fields you need into a plain object.`,
  );
}

function refuse(reason: string): PlainDataProblem {
  return { kind: 'not-serializable', path: '$', reason };
}

function nonFinite(value: number): PlainDataProblem {
  const shown = Number.isNaN(value) ? 'NaN' : String(value);
  return refuse(
    `${shown} cannot be persisted: only finite numbers are plain data; send null or a sentinel string instead.`,
  );
}

function tooLarge(walk: Walk): PlainDataProblem {
  return {
    kind: 'too-large',
    path: '$',
    reason: `The value is estimated at more than bytesMax ${walk.bytesMax} bytes once encoded; send less data (or a reference to it) or raise the limit.`,
  };
}

function className(value: object): string {
  const ctor: unknown = (value as { constructor?: unknown }).constructor;
  return typeof ctor === 'function' && ctor.name !== ''
    ? ctor.name
    : 'an anonymous class';
}

function keyPath(key: string): string {
  return identifier.test(key) ? `$.${key}` : `$[${JSON.stringify(key)}]`;
}

/** msgpack str header plus one byte per UTF-16 unit (exact for ASCII). */
function strBytes(length: number): number {
  return (
    length + (length < 32 ? 1 : length < 256 ? 2 : length < 65_536 ? 3 : 5)
  );
}

/** msgpack array or map header. */
function containerBytes(length: number): number {
  return length < 16 ? 1 : length < 65_536 ? 3 : 5;
}

/** The size msgpackr writes: 1-5 bytes for 32-bit integers, else a float64. */
function numberBytes(value: number): number {
  if (value >>> 0 === value) {
    return value < 0x80 ? 1 : value < 0x100 ? 2 : value < 0x10000 ? 3 : 5;
  }
  if ((value | 0) === value) {
    return value >= -0x20 ? 1 : value >= -0x80 ? 2 : value >= -0x8000 ? 3 : 5;
  }
  return 9;
}
