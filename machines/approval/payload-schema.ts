import { Ajv, type AnySchema, type ErrorObject } from 'ajv';
import { ConfigError } from '../../src/errors.js';

/** Field errors kept per refused payload; a huge invalid payload must not make a huge context. @internal */
export const fieldErrorsMax = 20;

/** One failed check of a payload: the field as a JSON pointer (`''` is the payload itself). */
export interface FieldError {
  field: string;
  message: string;
  keyword: string;
}

/** Checks one payload; returns the field errors, empty when it is valid. */
export type PayloadCheck = (payload: unknown) => FieldError[];

/**
 * Compiles `schema` once, at factory time, into a payload check. Ajv v8 in
 * strict mode (an unknown keyword is a programmer error) with `allErrors`,
 * so one refusal lists every bad field at once. The schema is trusted
 * (it comes from the program); payloads are not, hence the cap on the
 * errors kept.
 * @internal
 */
export function compilePayloadSchema(
  factory: string,
  schema: AnySchema,
): PayloadCheck {
  let validate: ReturnType<Ajv['compile']>;
  try {
    validate = new Ajv({ allErrors: true, strict: true }).compile(schema);
  } catch (err) {
    throw new ConfigError(
      `${factory}: schema is not a valid JSON schema for Ajv v8 (draft-07): ${err instanceof Error ? err.message : String(err)}.`,
      { cause: err, details: { option: 'schema' } },
    );
  }
  return (payload) => {
    if (validate(payload)) return [];
    return (validate.errors ?? []).slice(0, fieldErrorsMax).map(toFieldError);
  };
}

function toFieldError(e: ErrorObject): FieldError {
  // Ajv reports a missing or extra property on its parent object; the
  // caller wants the field itself.
  const params = e.params as {
    missingProperty?: string;
    additionalProperty?: string;
  };
  const child = params.missingProperty ?? params.additionalProperty;
  const field =
    child === undefined
      ? e.instancePath
      : `${e.instancePath}/${escapePointer(child)}`;
  return { field, message: e.message ?? e.keyword, keyword: e.keyword };
}

/** RFC 6901: `~` and `/` inside a property name. */
function escapePointer(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}
