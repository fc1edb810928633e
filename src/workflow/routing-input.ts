import { ConfigError, InvalidInputError, WorkflowError } from '../errors.js';
import { routingDefaults, type AttachmentRecord } from './routing-machines.js';
import type { PublishedEvent } from './routing.js';
import {
  fieldName,
  formatValue,
  hasFields,
  lookup,
  parseTemplate,
} from './templates.js';
import { describe } from '../describe.js';

/**
 * The checks routing applies at its edge (tenants, event types, keys,
 * `correlate` rules) and the one computation it makes from an event: the
 * instance key an attachment picks.
 */

/** Control characters have no place in an id that shows up in logs and paths. */
// eslint-disable-next-line no-control-regex
const controlChars = /[\u0000-\u001f\u007f]/;

/**
 * Throws TENANT_INVALID unless `tenant` is a usable tenant id: a non-empty
 * string of at most 128 characters with no "/" (it starts instance ids)
 * and no control characters.
 * @internal
 */
export function checkTenant(tenant: unknown, where: string): string {
  if (
    typeof tenant !== 'string' ||
    tenant.length === 0 ||
    tenant.length > routingDefaults.tenantLengthMax ||
    tenant.includes('/') ||
    controlChars.test(tenant)
  ) {
    throw new WorkflowError(
      'TENANT_INVALID',
      `${where} needs "tenant": a non-empty string of at most ${routingDefaults.tenantLengthMax} characters without "/" or control characters; got ${describe(tenant)}.`,
      { details: { where } },
    );
  }
  return tenant;
}

/** The event type, or EVENT_INVALID. @internal */
export function checkEventType(type: unknown, where: string): string {
  if (
    typeof type !== 'string' ||
    type.length === 0 ||
    type.length > routingDefaults.eventTypeLengthMax ||
    type.startsWith('xstate.') ||
    type.startsWith('shardchart.') ||
    controlChars.test(type)
  ) {
    throw new InvalidInputError(
      'EVENT_INVALID',
      `${where} needs an event type: a non-empty string of at most ${routingDefaults.eventTypeLengthMax} characters, not starting with "xstate." or "shardchart." (reserved); got ${describe(type)}.`,
    );
  }
  return type;
}

/** A correlation or instance key, or EVENT_INVALID. @internal */
export function checkKey(key: unknown, what: string): string {
  if (
    typeof key !== 'string' ||
    key.length === 0 ||
    key.length > routingDefaults.correlationKeyLengthMax
  ) {
    throw new InvalidInputError(
      'EVENT_INVALID',
      `${what} must be a non-empty string of at most ${routingDefaults.correlationKeyLengthMax} characters; got ${describe(key)}.`,
    );
  }
  return key;
}

const correlateRoots = [
  'payload',
  'correlationKey',
  'eventId',
  'type',
  'tenant',
] as const;

/** The template `correlate` stands for: a bare path is a payload field. */
function correlateTemplate(correlate: string): string {
  return correlate.includes('${') ? correlate : `\${payload.${correlate}}`;
}

/** An attachment's `correlate` rule, or CONFIG_INVALID saying what is wrong. @internal */
export function checkCorrelate(correlate: unknown): string | undefined {
  if (correlate === undefined) return undefined;
  if (
    typeof correlate !== 'string' ||
    correlate.length === 0 ||
    correlate.length > routingDefaults.correlateLengthMax
  ) {
    throw new ConfigError(
      `An attachment's "correlate" is a template such as '\${payload.invoiceId}' or a payload path such as 'invoiceId' (at most ${routingDefaults.correlateLengthMax} characters); got ${describe(correlate)}.`,
    );
  }
  const parsed = parseTemplate(correlateTemplate(correlate), correlateRoots);
  if ('problem' in parsed || !hasFields(parsed.parts)) {
    const reason =
      'problem' in parsed ? parsed.problem.reason : 'it names no field';
    throw new ConfigError(
      `An attachment's "correlate" ${JSON.stringify(correlate)} is not a usable template: ${reason}. Name fields as \${payload.field}, \${correlationKey}, \${eventId}, \${type} or \${tenant}, or give a bare payload path.`,
      { details: { correlate } },
    );
  }
  return correlate;
}

/** The instance key an attachment picks for `event`. @internal */
export function instanceKey(
  attachment: AttachmentRecord,
  event: PublishedEvent,
): string {
  if (attachment.correlate === undefined)
    return event.correlationKey ?? event.eventId;
  const parsed = parseTemplate(
    correlateTemplate(attachment.correlate),
    correlateRoots,
  );
  // Checked at attach; a record that no longer parses is refused as one.
  if ('problem' in parsed)
    throw new ConfigError(
      `Attachment of "${attachment.workflow}" to "${attachment.eventType}": its "correlate" does not parse (${parsed.problem.reason}); attach it again with a valid one.`,
    );
  let key = '';
  for (const part of parsed.parts) {
    if (part.kind === 'text') {
      key += part.text;
      continue;
    }
    const found = lookup(event, [part.root, ...part.path]);
    if (!found.found || typeof found.value === 'object') {
      throw new WorkflowError(
        'TEMPLATE_FIELD_MISSING',
        `Event "${event.type}" (id ${JSON.stringify(event.eventId)}) has no ${found.found ? 'string or number at' : 'field'} "${fieldName(part)}", which the attachment of workflow "${attachment.workflow}" correlates on ("${attachment.correlate}"); publish it with that field, or attach with another "correlate".`,
        {
          details: {
            field: fieldName(part),
            workflow: attachment.workflow,
            eventType: event.type,
          },
        },
      );
    }
    key += formatValue(found.value);
  }
  return checkKey(key, `The instance key "correlate" gives`);
}

/** A value as a message quotes it. @internal */
