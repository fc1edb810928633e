// The error codes live in one table (`errorCodes` in src/errors.ts) and in
// docs/errors.md; these tests keep the two, the error classes and the package
// exports in step (STYLE.md item 7). The docs table is parsed rather than
// trusted, so a code added in one place and not the other fails here.
import { readFileSync } from 'node:fs';
import { expect, expectTypeOf, test } from 'vitest';
import * as errors from '../src/errors.js';
import {
  CheckFailedError,
  ClusterError,
  CodecError,
  ConfigError,
  DefinitionError,
  EntityError,
  type ErrorCode,
  GraphError,
  errorCodes,
  InvalidInputError,
  ShardchartError,
  StoreError,
  TimeoutError,
  WorkflowError,
} from '../src/errors.js';

interface DocRow {
  readonly code: string;
  readonly className: string;
  readonly meaning: string;
}

/** Rows of the table in docs/errors.md whose first cell is a backticked code. */
function readDocRows(): DocRow[] {
  const markdown = readFileSync(
    new URL('../docs/errors.md', import.meta.url),
    'utf8',
  );
  const rows: DocRow[] = [];
  for (const line of markdown.split('\n')) {
    const cells = line
      .trim()
      .replace(/^\||\|$/g, '')
      .split('|')
      .map((cell) => cell.trim());
    const code = /^`([A-Z][A-Z0-9_]*)`$/.exec(cells[0] ?? '')?.[1];
    if (!line.trim().startsWith('|') || code === undefined) continue;
    expect(cells, `row for ${code} has four cells`).toHaveLength(4);
    rows.push({
      code,
      className: (cells[1] ?? '').replace(/`/g, ''),
      meaning: cells[2] ?? '',
    });
  }
  return rows;
}

/** Every class exported by src/errors.ts that is ShardchartError or extends it. */
function errorClasses(): Map<string, typeof ShardchartError> {
  const classes = new Map<string, typeof ShardchartError>();
  for (const [name, value] of Object.entries(errors)) {
    if (
      typeof value === 'function' &&
      (value === ShardchartError || value.prototype instanceof ShardchartError)
    ) {
      classes.set(name, value as typeof ShardchartError);
    }
  }
  return classes;
}

// The codes each subclass may raise, for checking the docs' class column.
// The constructors narrow `code` to these unions only at the type level, so the
// list is repeated here and tied back to them by expectTypeOf below: a code
// added to a constructor and not here fails `npm run typecheck`.
const codesByClass = {
  ConfigError: ['CONFIG_INVALID'],
  InvalidInputError: [
    'ENTITY_TYPE_UNKNOWN',
    'ENTITY_ID_INVALID',
    'EVENT_INVALID',
    'EVENT_NOT_SERIALIZABLE',
    'EVENT_TOO_LARGE',
    'SEQ_OUT_OF_RANGE',
    'PAYLOAD_INVALID',
  ],
  EntityError: [
    'EVENT_REJECTED',
    'EVENT_FAILED',
    'CONTEXT_NOT_SERIALIZABLE',
    'MAILBOX_FULL',
    'OUTBOX_FULL',
    'ENTITY_FAILED',
    'ENTITY_STOPPED',
    'SYSTEM_STOPPED',
    'SNAPSHOT_INVALID',
    'REPLAY_DIVERGED',
  ],
  TimeoutError: ['TIMEOUT'],
  StoreError: [
    'STORE_CONFLICT',
    'STORE_CORRUPT',
    'STORE_CLOSED',
    'STORE_FAILED',
    'STORE_UNSAFE',
  ],
  CodecError: ['DECODE_FAILED', 'ENCODE_FAILED'],
  DefinitionError: ['DAG_CYCLE', 'DAG_DEPENDENCY_MISSING', 'MACHINE_INVALID'],
  CheckFailedError: ['CHECK_FAILED'],
  GraphError: ['GRAPH_FAILED'],
  ClusterError: [
    'NOT_OWNER',
    'FENCED',
    'CLUSTER_UNAVAILABLE',
    'MESSAGE_INVALID',
    'WATCHES_FULL',
  ],
  WorkflowError: [
    'ACTION_UNKNOWN',
    'ACTION_PARAMS_INVALID',
    'ACTION_TIMEOUT',
    'ACTION_FAILED',
    'WORKFLOW_DIVERGED',
    'WORKFLOW_STEPS_EXCEEDED',
    'TASK_NOT_FOUND',
    'TASK_ALREADY_COMPLETED',
    'TEMPLATE_FIELD_MISSING',
    'TENANT_INVALID',
  ],
} as const satisfies Record<string, readonly ErrorCode[]>;

type Listed<K extends keyof typeof codesByClass> =
  (typeof codesByClass)[K][number];

type Options = ErrorOptions & { details?: Record<string, unknown> };

// How to raise each class with a given code. Classes with a single code
// ignore the argument; the test then checks they set the documented one.
const raise: Record<
  string,
  (code: ErrorCode, message: string, options: Options) => ShardchartError
> = {
  ShardchartError: (code, message, options) =>
    new ShardchartError(code, message, options),
  ConfigError: (_code, message, options) => new ConfigError(message, options),
  InvalidInputError: (code, message, options) =>
    new InvalidInputError(
      code as ConstructorParameters<typeof InvalidInputError>[0],
      message,
      options,
    ),
  EntityError: (code, message, options) =>
    new EntityError(
      code as ConstructorParameters<typeof EntityError>[0],
      message,
      options,
    ),
  TimeoutError: (_code, message, options) => new TimeoutError(message, options),
  StoreError: (code, message, options) =>
    new StoreError(
      code as ConstructorParameters<typeof StoreError>[0],
      message,
      options,
    ),
  CodecError: (code, message, options) =>
    new CodecError(
      code as ConstructorParameters<typeof CodecError>[0],
      message,
      options,
    ),
  DefinitionError: (code, message, options) =>
    new DefinitionError(
      code as ConstructorParameters<typeof DefinitionError>[0],
      message,
      options,
    ),
  CheckFailedError: (_code, message, options) =>
    new CheckFailedError(message, options),
  GraphError: (_code, message, options) => new GraphError(message, options),
  ClusterError: (code, message, options) =>
    new ClusterError(
      code as ConstructorParameters<typeof ClusterError>[0],
      message,
      options,
    ),
  WorkflowError: (code, message, options) =>
    new WorkflowError(
      code as ConstructorParameters<typeof WorkflowError>[0],
      message,
      options,
    ),
};

test('errors - every code in the table is documented in docs/errors.md and vice versa', () => {
  const rows = readDocRows();
  const documented = rows.map((row) => row.code);

  expect(documented).toEqual(Object.keys(errorCodes));
  expect(new Set(documented).size, 'a code is listed twice').toBe(
    documented.length,
  );
  for (const row of rows) {
    expect(row.meaning, `meaning of ${row.code}`).toBe(
      errorCodes[row.code as ErrorCode],
    );
  }
});

test('errors - every error class is exported from the package entry', async () => {
  const entry = (await import('../src/index.js')) as Record<string, unknown>;
  const documentedClasses = new Set(readDocRows().map((row) => row.className));

  for (const [name, errorClass] of errorClasses()) {
    expect(entry[name], `${name} is exported from src/index.ts`).toBe(
      errorClass,
    );
  }
  for (const name of documentedClasses) {
    expect(errorClasses().has(name), `${name} is a class in errors.ts`).toBe(
      true,
    );
  }
  expect(entry.isShardchartError).toBe(errors.isShardchartError);
  expect(entry.errorCodes).toBe(errorCodes);
});

test('errors - each subclass sets name and code and keeps cause', () => {
  expectTypeOf<Listed<'InvalidInputError'>>().toEqualTypeOf<
    ConstructorParameters<typeof InvalidInputError>[0]
  >();
  expectTypeOf<Listed<'DefinitionError'>>().toEqualTypeOf<
    ConstructorParameters<typeof DefinitionError>[0]
  >();
  expectTypeOf<Listed<'EntityError'>>().toEqualTypeOf<
    ConstructorParameters<typeof EntityError>[0]
  >();
  expectTypeOf<Listed<'StoreError'>>().toEqualTypeOf<
    ConstructorParameters<typeof StoreError>[0]
  >();
  expectTypeOf<Listed<'CodecError'>>().toEqualTypeOf<
    ConstructorParameters<typeof CodecError>[0]
  >();
  expectTypeOf<Listed<'ClusterError'>>().toEqualTypeOf<
    ConstructorParameters<typeof ClusterError>[0]
  >();
  expectTypeOf<Listed<'WorkflowError'>>().toEqualTypeOf<
    ConstructorParameters<typeof WorkflowError>[0]
  >();
  for (const name of errorClasses().keys()) {
    expect(raise[name], `the test knows how to raise ${name}`).toBeDefined();
    if (name !== 'ShardchartError') {
      expect(codesByClass, `codes of ${name} are listed`).toHaveProperty(name);
    }
  }

  for (const row of readDocRows()) {
    const code = row.code as ErrorCode;
    const cause = new Error('underlying failure');
    const details = { entity: 'order/42', seq: 7 };
    const raiseAs = raise[row.className];
    expect(raiseAs, `docs name a known class for ${code}`).toBeDefined();
    expect(
      codesByClass[row.className as keyof typeof codesByClass] as
        readonly ErrorCode[] | undefined,
      `docs say ${row.className} raises ${code}`,
    ).toContain(code);

    const err = raiseAs!(code, `failed: ${code}`, { cause, details });

    expect(err.constructor.name, code).toBe(row.className);
    expect(err.name, code).toBe(row.className);
    expect(err.code).toBe(code);
    expect(err.cause, code).toBe(cause);
    expect(err.details, code).toEqual(details);
    expect(err.message).toBe(`failed: ${code}`);
    expect(err).toBeInstanceOf(ShardchartError);
    expect(err).toBeInstanceOf(Error);
    expect(typeof err.retryable).toBe('boolean');
    expect(errors.isShardchartError(err, code)).toBe(true);
    expect(err.stack, code).toContain(row.className);
  }

  expect(new TimeoutError('late').retryable).toBe(true);
  expect(new ConfigError('bad').retryable).toBe(false);
  expect(
    new EntityError('MAILBOX_FULL', 'full', { retryable: true }).retryable,
  ).toBe(true);
  expect(errors.isShardchartError(new Error('plain'))).toBe(false);
});

test('errors - no two codes share a meaning', () => {
  const byMeaning = new Map<string, string>();
  for (const [code, meaning] of Object.entries(errorCodes)) {
    const normalized = meaning.trim().toLowerCase();
    expect(normalized, `${code} has a meaning`).not.toBe('');
    expect(
      byMeaning.get(normalized),
      `${code} repeats the meaning of ${byMeaning.get(normalized)}`,
    ).toBeUndefined();
    byMeaning.set(normalized, code);
  }
});
