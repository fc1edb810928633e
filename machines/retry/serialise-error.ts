/**
 * An error as plain data: what the machines keep in context and output.
 * Entities persist context and the events that produced it, and an Error
 * instance does not survive a msgpack round trip, so every error crossing
 * into a machine is reduced to these fields first.
 */
export interface SerializedError {
  name: string;
  message: string;
  /** The error's `code` when it has a string or number one (Node's `ECONNRESET`, ours `TIMEOUT`). */
  code?: string | number;
}

/** Longest message kept, in UTF-16 units; the rest is cut with an ellipsis. */
const messageLengthMax = 2_000;

/**
 * Reduces any thrown value to a {@link SerializedError}.
 *
 * @example
 * ```ts
 * serialiseError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }));
 * // { name: 'Error', message: 'reset', code: 'ECONNRESET' }
 * serialiseError('oops'); // { name: 'Error', message: 'oops' }
 * ```
 */
export function serialiseError(err: unknown): SerializedError {
  if (isSerializedError(err)) return copy(err);
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const out: SerializedError = {
      name: err.name || 'Error',
      message: cut(err.message),
    };
    if (
      typeof code === 'string' ||
      (typeof code === 'number' && Number.isFinite(code))
    )
      out.code = code;
    return out;
  }
  let message: string;
  try {
    message =
      typeof err === 'string' ? err : (JSON.stringify(err) ?? String(err));
  } catch {
    message = String(err);
  }
  return { name: 'Error', message: cut(message) };
}

/**
 * True when `value` already has the shape of a {@link SerializedError}
 * (a plain object with a string name and message).
 *
 * @example
 * ```ts
 * isSerializedError({ name: 'Error', message: 'boom' }); // true
 * isSerializedError(new Error('boom')); // false: an Error instance is not plain data
 * ```
 */
export function isSerializedError(value: unknown): value is SerializedError {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.name === 'string' && typeof v.message === 'string';
}

function copy(err: SerializedError): SerializedError {
  const out: SerializedError = { name: err.name, message: cut(err.message) };
  if (
    typeof err.code === 'string' ||
    (typeof err.code === 'number' && Number.isFinite(err.code))
  )
    out.code = err.code;
  return out;
}

function cut(message: string): string {
  return message.length <= messageLengthMax
    ? message
    : `${message.slice(0, messageLengthMax - 1)}…`;
}
