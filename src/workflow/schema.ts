import { Ajv, type AnySchema, type ErrorObject } from 'ajv';
import { ConfigError } from '../errors.js';

/**
 * Parameter validation for actions: a JSON schema (compiled once by Ajv at
 * registration) or any Standard Schema validator (zod, valibot, arktype…),
 * recognised by its `~standard` property. Both give the same answer: the
 * value to pass on, or the list of fields that failed.
 */

/**
 * The Standard Schema v1 interface (https://standardschema.dev), copied as
 * its authors ask instead of depended on.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (
      value: unknown,
    ) =>
      | StandardSchemaV1.Result<Output>
      | Promise<StandardSchemaV1.Result<Output>>;
    readonly types?:
      { readonly input: Input; readonly output: Output } | undefined;
  };
}

// eslint-disable-next-line @typescript-eslint/no-namespace
export declare namespace StandardSchemaV1 {
  type Result<Output> =
    | { readonly value: Output; readonly issues?: undefined }
    | { readonly issues: readonly Issue[] };
  interface Issue {
    readonly message: string;
    readonly path?:
      readonly (PropertyKey | { readonly key: PropertyKey })[] | undefined;
  }
}

/** A JSON schema (draft-07, as Ajv v8 reads it). */
export type JsonSchema = Exclude<AnySchema, boolean> | boolean;

/** One field that failed validation: a JSON pointer (`''` is the whole value) and why. */
export interface ParamsIssue {
  path: string;
  message: string;
}

/** Issues kept per refusal: huge invalid params must not make a huge error. */
export const paramsIssuesMax = 20;

/** A compiled check: the validated value, or the issues found. */
export type ParamsCheck = (
  value: unknown,
) =>
  | { ok: true; value: unknown }
  | { ok: false; issues: ParamsIssue[] }
  | Promise<
      { ok: true; value: unknown } | { ok: false; issues: ParamsIssue[] }
    >;

/** True for a Standard Schema validator. */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if (
    value === null ||
    (typeof value !== 'object' && typeof value !== 'function')
  )
    return false;
  const std = (value as { '~standard'?: { validate?: unknown } })['~standard'];
  return (
    typeof std === 'object' &&
    std !== null &&
    typeof std.validate === 'function'
  );
}

/** One Ajv per process: it caches compiled schemas, and actions are registered once. */
let ajv: Ajv | undefined;

/**
 * Compiles the `params` option of action `name`. A schema Ajv refuses is a
 * programmer error, reported at registration rather than at the first call.
 * @internal
 */
export function compileParams(name: string, params: unknown): ParamsCheck {
  if (isStandardSchema(params)) {
    const std = params['~standard'];
    return (value) => {
      const result = std.validate(value);
      return result instanceof Promise
        ? result.then(fromStandard)
        : fromStandard(result);
    };
  }
  if (
    typeof params !== 'boolean' &&
    (typeof params !== 'object' || params === null || Array.isArray(params))
  ) {
    throw new ConfigError(
      `Action "${name}": "params" must be a JSON schema object or a Standard Schema validator (an object with "~standard"); got ${typeof params}.`,
      { details: { action: name } },
    );
  }
  let validate: ReturnType<Ajv['compile']>;
  try {
    ajv ??= new Ajv({ allErrors: true, strict: true });
    validate = ajv.compile(params as AnySchema);
  } catch (cause) {
    throw new ConfigError(
      `Action "${name}": "params" is not a valid JSON schema for Ajv v8 (draft-07): ${cause instanceof Error ? cause.message : String(cause)}.`,
      { cause, details: { action: name } },
    );
  }
  return (value) =>
    validate(value)
      ? { ok: true, value }
      : {
          ok: false,
          issues: (validate.errors ?? [])
            .slice(0, paramsIssuesMax)
            .map(fromAjv),
        };
}

function fromStandard(
  result: StandardSchemaV1.Result<unknown>,
): { ok: true; value: unknown } | { ok: false; issues: ParamsIssue[] } {
  if (result.issues === undefined) return { ok: true, value: result.value };
  return {
    ok: false,
    issues: result.issues.slice(0, paramsIssuesMax).map((issue) => ({
      path: (issue.path ?? [])
        .map(
          (p) => '/' + escapePointer(String(typeof p === 'object' ? p.key : p)),
        )
        .join(''),
      message: issue.message,
    })),
  };
}

function fromAjv(e: ErrorObject): ParamsIssue {
  // Ajv reports a missing or extra property on its parent object; the
  // caller wants the field itself.
  const params = e.params as {
    missingProperty?: string;
    additionalProperty?: string;
  };
  const child = params.missingProperty ?? params.additionalProperty;
  const path =
    child === undefined
      ? e.instancePath
      : `${e.instancePath}/${escapePointer(child)}`;
  return { path, message: e.message ?? e.keyword };
}

/** RFC 6901: `~` and `/` inside a property name. */
function escapePointer(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}
