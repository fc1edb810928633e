import { ConfigError } from '../../src/errors.js';

/**
 * Option checks shared by the machine factories in this repository. A bad
 * option is a programmer error found at creation time, so it throws a
 * ConfigError naming the factory, the option, the accepted range and the
 * value received.
 * @internal
 */
export function checkInteger(
  factory: string,
  name: string,
  value: unknown,
  min: number,
  max: number,
): void {
  checkRange(factory, name, value, min, max, true);
}

/** Like {@link checkInteger}, for numbers that may have a fraction. @internal */
export function checkNumber(
  factory: string,
  name: string,
  value: unknown,
  min: number,
  max: number,
): void {
  checkRange(factory, name, value, min, max, false);
}

function checkRange(
  factory: string,
  name: string,
  value: unknown,
  min: number,
  max: number,
  integer: boolean,
): void {
  if (
    typeof value !== 'number' ||
    !(integer ? Number.isInteger(value) : Number.isFinite(value)) ||
    value < min ||
    value > max
  ) {
    throw new ConfigError(
      `${factory}: ${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}; got ${JSON.stringify(value) ?? String(value)}.`,
      { details: { option: name, value } },
    );
  }
}

/** Throws unless `value` is a function. @internal */
export function checkFunction(
  factory: string,
  name: string,
  value: unknown,
): void {
  if (typeof value !== 'function') {
    throw new ConfigError(
      `${factory}: ${name} must be a function; got ${typeof value}.`,
      {
        details: { option: name },
      },
    );
  }
}

/**
 * Step ids become state keys, invoke ids and diagram labels, so they are
 * kept to characters that are safe in all three (no `.`, `/` or `#`, which
 * XState reads as paths).
 * @internal
 */
export const stepIdPattern = /^[A-Za-z0-9_-]{1,64}$/;

/** Throws unless `id` is a usable step id. @internal */
export function checkStepId(factory: string, id: unknown): void {
  if (typeof id !== 'string' || !stepIdPattern.test(id)) {
    throw new ConfigError(
      `${factory}: a step id must be 1 to 64 letters, digits, '_' or '-'; got ${JSON.stringify(id) ?? String(id)}.`,
      { details: { option: 'steps', id } },
    );
  }
}

/** Largest delay a JavaScript timer accepts, in ms. @internal */
export const timerMsMax = 2_147_483_647;
