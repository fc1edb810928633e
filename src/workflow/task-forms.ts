import {
  Ajv,
  type AnySchema,
  type ErrorObject,
  type ValidateFunction,
} from 'ajv';
import { InvalidInputError } from '../errors.js';
import type { ParamsIssue } from './schema.js';
import { taskDefaults } from './task-machines.js';

/**
 * Checks of human-task input: assignees, and the JSON schema of a task's
 * form, compiled once per distinct schema and applied to the form data a
 * completion brings.
 */

// eslint-disable-next-line no-control-regex
const controlChars = /[\u0000-\u001f\u007f]/;

/** The assignee, or EVENT_INVALID saying what one is. @internal */
export function checkAssignee(assignee: unknown, where: string): string {
  if (
    typeof assignee !== 'string' ||
    assignee.length === 0 ||
    assignee.length > taskDefaults.assigneeLengthMax ||
    controlChars.test(assignee)
  ) {
    throw new InvalidInputError(
      'EVENT_INVALID',
      `${where}: "assignee" must be a non-empty string of at most ${taskDefaults.assigneeLengthMax} characters without control characters; got ${JSON.stringify(assignee)}.`,
    );
  }
  return assignee;
}

/** Forms may carry UI hints (unknown keywords), so Ajv is not strict here. */
let ajv: Ajv | undefined;
const compiled = new Map<string, ValidateFunction>();
/** Compiled form schemas kept; the oldest is dropped beyond it. */
const compiledMax = 256;

/** The compiled check of `form` (Ajv throws for a schema it cannot compile). @internal */
export function compileForm(form: unknown): ValidateFunction {
  const key = JSON.stringify(form);
  let validate = compiled.get(key);
  if (validate !== undefined) return validate;
  ajv ??= new Ajv({ allErrors: true, strict: false });
  validate = ajv.compile(form as AnySchema);
  compiled.set(key, validate);
  if (compiled.size > compiledMax)
    compiled.delete(compiled.keys().next().value!);
  return validate;
}

/** The failed fields of the last check, as JSON pointers. @internal */
export function issuesOf(validate: ValidateFunction): ParamsIssue[] {
  return (validate.errors ?? []).slice(0, 20).map((e: ErrorObject) => {
    // Ajv names a missing or extra property on its parent; people want the field.
    const p = e.params as {
      missingProperty?: string;
      additionalProperty?: string;
    };
    const child = p.missingProperty ?? p.additionalProperty;
    const path =
      child === undefined
        ? e.instancePath
        : `${e.instancePath}/${child.replaceAll('~', '~0').replaceAll('/', '~1')}`;
    return { path, message: e.message ?? e.keyword };
  });
}
