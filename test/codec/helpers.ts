/**
 * Shared assertions for the codec tests: every decode failure must be a
 * CodecError with code DECODE_FAILED and a known reason, never another
 * exception type.
 */
import { expect } from 'vitest';

import { CodecError } from '../../src/errors.js';

export const decodeReasons = [
  'too-large',
  'too-deep',
  'truncated',
  'trailing-bytes',
  'extension-type',
  'forbidden-key',
  'invalid-key',
  'malformed',
  'checksum',
  'version',
] as const;

export type DecodeReason = (typeof decodeReasons)[number];

/** Runs `fn`, which must throw a DECODE_FAILED CodecError; returns its reason. */
export function decodeFailure(fn: () => unknown): DecodeReason {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a CodecError to be thrown').toBeInstanceOf(
    CodecError,
  );
  const err = thrown as CodecError;
  expect(err.code).toBe('DECODE_FAILED');
  const reason = err.details?.['reason'] as DecodeReason;
  expect(decodeReasons).toContain(reason);
  expect(err.message.length).toBeGreaterThan(20);
  return reason;
}

/**
 * Runs `fn`, which may return or throw a DECODE_FAILED CodecError, but must
 * not throw anything else. Returns true when it returned.
 */
export function decodesOrFails(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (!(err instanceof CodecError) || err.code !== 'DECODE_FAILED') {
      throw new Error(
        `expected a DECODE_FAILED CodecError, got ${String(err)}`,
        {
          cause: err,
        },
      );
    }
    return false;
  }
}

/** Runs `fn`, which must throw an ENCODE_FAILED CodecError; returns it. */
export function encodeFailure(fn: () => unknown): CodecError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a CodecError to be thrown').toBeInstanceOf(
    CodecError,
  );
  expect((thrown as CodecError).code).toBe('ENCODE_FAILED');
  return thrown as CodecError;
}

/** True when any object inside `value` has an own `__proto__` or `constructor` key. */
export function hasForbiddenKey(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return value.some(hasForbiddenKey);
  return Object.keys(value).some(
    (key) =>
      key === '__proto__' ||
      key === 'constructor' ||
      hasForbiddenKey((value as Record<string, unknown>)[key]),
  );
}

/** JSON's view of a value: what a faithful round trip must give back (-0 becomes 0). */
export function viaJson(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/** Bytes from hex, ignoring spaces. */
export function hex(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}

/** A msgpack fixstr or str8 of an ASCII string. */
export function str(text: string): number[] {
  const bytes = [...Buffer.from(text, 'utf8')];
  return bytes.length < 32
    ? [0xa0 | bytes.length, ...bytes]
    : [0xd9, bytes.length, ...bytes];
}
