import { WorkflowError } from '../errors.js';

/**
 * `${root.field.path}` templates: the title and description of a human task
 * (`${contextData.invoiceId}`) and the `correlate` rule of an event
 * attachment (`${payload.invoiceId}`). A template is plain data, so it can
 * be journaled with the record it belongs to and rendered again the same
 * way after a restart; rendering is pure, so a workflow's replay renders
 * exactly what its first run did.
 */

/** One piece of a parsed template: literal text, or a field to fill in. */
export type TemplatePart =
  | { kind: 'text'; text: string }
  | { kind: 'field'; root: string; path: readonly string[] };

/** Why a template could not be parsed, with the offset it went wrong at. */
export interface TemplateSyntaxProblem {
  at: number;
  reason: string;
}

/** Placeholders one template may hold: a runaway template must not make a runaway render. */
export const templateFieldsMax = 64;

/** A field segment: what may stand between the dots of `${root.a.b}`. */
const segmentPattern = /^[A-Za-z0-9_$-]+$/;

/**
 * Parses `template` into text and fields. `roots` lists the names a field
 * may start with (`contextData` for tasks); anything else is a problem, as
 * is a `${` without its `}`. `$${` stands for a literal `${`.
 */
export function parseTemplate(
  template: string,
  roots: readonly string[],
): { parts: TemplatePart[] } | { problem: TemplateSyntaxProblem } {
  const parts: TemplatePart[] = [];
  let text = '';
  let fields = 0;
  let i = 0;
  while (i < template.length) {
    if (template.startsWith('$${', i)) {
      text += '${';
      i += 3;
      continue;
    }
    if (!template.startsWith('${', i)) {
      text += template[i];
      i++;
      continue;
    }
    const end = template.indexOf('}', i + 2);
    if (end < 0)
      return { problem: { at: i, reason: 'a "${" without its closing "}"' } };
    const expr = template.slice(i + 2, end).trim();
    const [root = '', ...path] = expr.split('.');
    if (!roots.includes(root)) {
      return {
        problem: {
          at: i,
          reason: `"\${${expr}}" does not start with ${roots.map((r) => `"${r}"`).join(' or ')}`,
        },
      };
    }
    if (![root, ...path].every((s) => segmentPattern.test(s))) {
      return {
        problem: {
          at: i,
          reason: `"\${${expr}}" is not a dotted path of names (letters, digits, "_", "$", "-")`,
        },
      };
    }
    if (++fields > templateFieldsMax) {
      return {
        problem: {
          at: i,
          reason: `more than ${templateFieldsMax} fields in one template`,
        },
      };
    }
    if (text !== '') parts.push({ kind: 'text', text });
    text = '';
    parts.push({ kind: 'field', root, path });
    i = end + 1;
  }
  if (text !== '') parts.push({ kind: 'text', text });
  return { parts };
}

/** Whether `template` holds at least one field (a plain string is its own text). */
export function hasFields(parts: readonly TemplatePart[]): boolean {
  return parts.some((p) => p.kind === 'field');
}

/**
 * Looks `path` up under `value`, own properties only: a template must not
 * reach `constructor`, `__proto__` or anything else an object inherits.
 * `found: false` when a segment is missing (or its holder is not an object).
 */
export function lookup(
  value: unknown,
  path: readonly string[],
): { found: true; value: unknown } | { found: false; missing: number } {
  let current = value;
  for (let i = 0; i < path.length; i++) {
    if (
      current === null ||
      typeof current !== 'object' ||
      !Object.hasOwn(current, path[i]!)
    )
      return { found: false, missing: i };
    current = (current as Record<string, unknown>)[path[i]!];
  }
  return current === undefined
    ? { found: false, missing: path.length - 1 }
    : { found: true, value: current };
}

/** The dotted name of a field, as a message shows it. */
export function fieldName(part: { root: string; path: readonly string[] }) {
  return [part.root, ...part.path].join('.');
}

/** `&`, `<`, `>`, `"` and `'` as HTML entities: a value is text, never markup. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => htmlEntities[c]!);
}

const htmlEntities: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * The text a field's value stands as: strings as they are, numbers and
 * booleans as JavaScript writes them, null as nothing, objects and arrays
 * as JSON.
 */
export function formatValue(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === null) return '';
  if (typeof value === 'number' || typeof value === 'boolean')
    return String(value);
  return JSON.stringify(value) ?? '';
}

/**
 * Renders the title or description of a human task from its context data:
 * every `${contextData.a.b}` is replaced by that field, HTML-escaped. A
 * field the context lacks is TEMPLATE_FIELD_MISSING naming it; a template
 * that does not parse is ACTION_PARAMS_INVALID naming `what`.
 *
 * @example
 * ```ts
 * renderTaskTemplate('Approve ${contextData.invoiceId}', { invoiceId: '<b>7</b>' }, 'title');
 * // 'Approve &lt;b&gt;7&lt;/b&gt;'
 * ```
 */
export function renderTaskTemplate(
  template: string,
  contextData: Record<string, unknown>,
  what: 'title' | 'description',
): string {
  const parsed = parseTemplate(template, ['contextData']);
  if ('problem' in parsed) {
    throw new WorkflowError(
      'ACTION_PARAMS_INVALID',
      `The task ${what} template is malformed at offset ${parsed.problem.at}: ${parsed.problem.reason}. Write fields as \${contextData.name} (and a literal "\${" as "$\${").`,
      {
        details: {
          action: 'ctx.tasks.create',
          issues: [{ path: `/${what}`, message: parsed.problem.reason }],
        },
      },
    );
  }
  let out = '';
  for (const part of parsed.parts) {
    if (part.kind === 'text') {
      out += part.text;
      continue;
    }
    const found = lookup(contextData, part.path);
    if (!found.found) {
      const field = fieldName(part);
      const missing = ['contextData', ...part.path.slice(0, found.missing + 1)];
      throw new WorkflowError(
        'TEMPLATE_FIELD_MISSING',
        `The task ${what} uses \${${field}}, but the task's context has no "${missing.slice(1).join('.')}"; add it to the "context" given to ctx.tasks.create, or fix the template.`,
        { details: { field, missing: missing.join('.'), template: what } },
      );
    }
    out += escapeHtml(formatValue(found.value));
  }
  return out;
}
