/**
 * Names of the nats adapter: how an entity key becomes subject tokens and
 * KV keys, and back.
 *
 * An entity is two tokens, `<type>.<id>`, so one entity is one subject
 * (`<prefix>.journal.<type>.<id>`) and the entities of a type share the
 * filter `<prefix>.journal.<type>.*`. A type or id made only of letters,
 * digits, `_` and `-` is its own token, which keeps subjects readable in
 * `nats stream view`; anything else (dots, spaces, wildcards, unicode, the
 * empty string) is written as `=` followed by its UTF-8 bytes in base64url.
 * Plain tokens never start with `=`, so the two forms cannot collide, and
 * both are valid subject tokens and KV key parts.
 */
import { InvalidInputError } from '../../src/errors.js';
import type { EntityKey } from '../../src/persistence/types.js';
import {
  assertFor,
  describeValue as describe,
  isAssertionError,
  quote,
  type Assert,
} from '../../src/persistence/contract.js';

const PLAIN_TOKEN = /^[A-Za-z0-9_-]+$/;
const ENCODED_TOKEN = /^=[A-Za-z0-9_-]*$/;

/**
 * Bytes the two tokens of an entity may take together. A NATS message's
 * subject travels in the protocol's control line (4 KiB by default) beside
 * the reply subject and sizes, so the limit leaves room for both.
 */
const ENTITY_TOKENS_BYTES_MAX = 2_048;

/** An entity key with its subject tokens, computed once per operation. */
export interface EncodedEntity {
  readonly key: EntityKey;
  /** `<type token>.<id token>`: the KV key and the tail of its subjects. */
  readonly tokens: string;
}

/** Encodes one string as a subject token. */
export function encodeToken(value: string): string {
  return PLAIN_TOKEN.test(value)
    ? value
    : `=${Buffer.from(value, 'utf8').toString('base64url')}`;
}

/** Inverse of {@link encodeToken}; `undefined` when `token` is not one. */
function decodeToken(token: string): string | undefined {
  if (PLAIN_TOKEN.test(token)) return token;
  if (!ENCODED_TOKEN.test(token)) return undefined;
  const value = Buffer.from(token.slice(1), 'base64url').toString('utf8');
  // Only the canonical form is accepted: bytes that are not valid UTF-8, or
  // padding variants, would otherwise name the same entity twice.
  return encodeToken(value) === token ? value : undefined;
}

/** Encodes an entity key; refuses one whose tokens exceed the limit. */
export function encodeEntity(key: EntityKey): EncodedEntity {
  assert(
    typeof key === 'object' &&
      key !== null &&
      typeof key.type === 'string' &&
      typeof key.id === 'string',
    () =>
      `entity key must be { type: string, id: string }, got ${describe(key)}`,
  );
  const tokens = `${encodeToken(key.type)}.${encodeToken(key.id)}`;
  if (tokens.length > ENTITY_TOKENS_BYTES_MAX) {
    throw new InvalidInputError(
      'ENTITY_ID_INVALID',
      `The entity key ${quote(key)} takes ${tokens.length} bytes as NATS subject tokens, more than the ${ENTITY_TOKENS_BYTES_MAX} the nats store allows. Use a shorter entity type and id.`,
      {
        details: {
          key,
          bytes: tokens.length,
          bytesMax: ENTITY_TOKENS_BYTES_MAX,
        },
      },
    );
  }
  return { key, tokens };
}

/**
 * Reads the entity back from the last two tokens of a subject or KV key.
 * `undefined` when they do not parse, which callers report as corruption.
 */
export function decodeEntityTokens(tail: string): EntityKey | undefined {
  const dot = tail.indexOf('.');
  if (dot < 0 || tail.indexOf('.', dot + 1) >= 0) return undefined;
  const type = decodeToken(tail.slice(0, dot));
  const id = decodeToken(tail.slice(dot + 1));
  return type === undefined || id === undefined ? undefined : { type, id };
}

/** Programmer-error check: a broken invariant fails loudly with its values. */
export const assert: Assert = assertFor('nats');

export { isAssertionError, describe, quote };
