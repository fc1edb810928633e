import type { AnySchema } from 'ajv';
import { assign, enqueueActions, setup } from 'xstate';
import { ConfigError } from '../../src/errors.js';
import { compilePayloadSchema, type FieldError } from './payload-schema.js';

/** A decision by a person, with the form they filled in. */
export type ApprovalDecisionEvent = {
  type: 'APPROVE' | 'REJECT';
  /** Who decides; must be listed for the current stage. */
  by: string;
  /** The form; validated against the factory's schema. */
  payload?: unknown;
  /** When, in ms (the caller's clock); recorded as `decidedAt`. The machine reads no clock. */
  at?: number;
};

/** Why a decision event was not accepted. */
export type ApprovalErrorCode = 'PAYLOAD_INVALID' | 'APPROVER_NOT_ALLOWED';

/** The last refused decision event: state unchanged, this recorded. */
export interface ApprovalError {
  code: ApprovalErrorCode;
  message: string;
  /** The refused event's type and `by`. */
  eventType: 'APPROVE' | 'REJECT';
  by: string | null;
  /** PAYLOAD_INVALID: the bad fields as JSON pointers (`''` is the whole payload). */
  fields: string[];
  errors: FieldError[];
}

/** The machine's output when it reaches a final state. */
export interface ApprovalOutput {
  decision: 'approved' | 'rejected' | 'expired';
  by?: string;
  payload?: unknown;
  escalated: boolean;
}

/** Plain data only, so the task can be an entity. */
export interface ApprovalContext {
  approvers: string[];
  escalateTo: string[];
  escalated: boolean;
  decision: ApprovalOutput['decision'] | null;
  decidedBy: string | null;
  /** The deciding event's `at`, when it had one. */
  decidedAt: number | null;
  payload: unknown;
  lastError: ApprovalError | null;
  /** Decision events refused so far. */
  refusals: number;
}

/** Emitted events: escalation (also sent to the parent when invoked) and refusals. */
export type ApprovalEmitted =
  | { type: 'ESCALATED'; escalateTo: string[] }
  | { type: 'REFUSED'; error: ApprovalError };

/** Per-task approver lists, e.g. from an entity's `input`; override the factory's. */
export interface ApprovalInput {
  approvers?: string[];
  escalateTo?: string[];
}

export interface ApprovalMachineOptions {
  /** Who may decide first. 1..100 non-empty ids. */
  approvers: readonly string[];
  /** Wait for a decision before escalating, in ms (an `after` timer). */
  timeoutMs: number;
  /** Who may decide after escalation. Empty: no escalation, the first timeout expires the task. */
  escalateTo: readonly string[];
  /** Wait after escalation before the task expires, in ms. Default `timeoutMs`. */
  escalationTimeoutMs?: number;
  /** JSON schema (draft-07, Ajv v8 strict) every decision's payload must satisfy. `true` accepts any. */
  schema: AnySchema;
  /** Machine id. Default 'approval'. */
  id?: string;
}

/**
 * Bounds of the approval machine's options.
 *
 * @example
 * ```ts
 * import { approvalDefaults } from 'shardchart/machines';
 * const approvers = team.slice(0, approvalDefaults.approversMax);
 * ```
 */
export const approvalDefaults = {
  approversMax: 100,
  approverLengthMax: 256,
  timeoutMsMax: 2_147_483_647,
} as const;

const FACTORY = 'createApprovalMachine';

/**
 * Creates a human task: it waits for `APPROVE` or `REJECT` from a listed
 * approver, with a form payload checked against a JSON schema. The schema
 * is compiled once, here. A decision from someone not listed, or with an
 * invalid payload, is not accepted: the state stays, and `lastError`
 * records why (`APPROVER_NOT_ALLOWED`, or `PAYLOAD_INVALID` with the bad
 * fields). After `timeoutMs` without a decision the task escalates: only
 * `escalateTo` may decide then, and after `escalationTimeoutMs` more it
 * expires. Both waits are `after` timers, durable when the task is an
 * entity. It ends with output `{ decision, by?, payload?, escalated }`.
 *
 * @example
 * ```ts
 * import { createActor } from 'xstate';
 * import { createApprovalMachine } from 'shardchart/machines';
 *
 * const refund = createApprovalMachine({
 *   approvers: ['ana'], escalateTo: ['head-of-support'], timeoutMs: 86_400_000,
 *   schema: { type: 'object', required: ['amount'], properties: { amount: { type: 'number', maximum: 500 } } },
 * });
 * const task = createActor(refund).start();
 * task.send({ type: 'APPROVE', by: 'ana', payload: { amount: 900 } });
 * console.log(task.getSnapshot().context.lastError?.fields); // [ '/amount' ]
 * task.send({ type: 'APPROVE', by: 'ana', payload: { amount: 90 } });
 * console.log(task.getSnapshot().output); // { decision: 'approved', by: 'ana', payload: { amount: 90 }, escalated: false }
 * ```
 */
export function createApprovalMachine(options: ApprovalMachineOptions) {
  const approvers = checkIds('approvers', options.approvers, 1);
  const escalateTo = checkIds('escalateTo', options.escalateTo, 0);
  checkDelay('timeoutMs', options.timeoutMs);
  const escalationTimeoutMs = options.escalationTimeoutMs ?? options.timeoutMs;
  checkDelay('escalationTimeoutMs', escalationTimeoutMs);
  const check = compilePayloadSchema(FACTORY, options.schema);

  /** The refusal for a decision event in the current stage, or null to accept it. */
  const refusalOf = (
    allowed: readonly string[],
    event: ApprovalDecisionEvent,
  ): ApprovalError | null => {
    const by =
      typeof event.by === 'string'
        ? event.by.slice(0, approvalDefaults.approverLengthMax)
        : null;
    if (by === null || !allowed.includes(by)) {
      return {
        code: 'APPROVER_NOT_ALLOWED',
        message: `${JSON.stringify(by)} may not decide now; allowed: ${allowed.join(', ')}.`,
        eventType: event.type,
        by,
        fields: [],
        errors: [],
      };
    }
    const errors = check(event.payload);
    if (errors.length === 0) return null;
    return {
      code: 'PAYLOAD_INVALID',
      message: `The payload of ${event.type} by ${by} does not match the form's schema: ${errors.map((e) => `${e.field || '(payload)'} ${e.message}`).join('; ')}.`,
      eventType: event.type,
      by,
      fields: [...new Set(errors.map((e) => e.field))],
      errors,
    };
  };

  /** The transitions of one stage: refuse (state unchanged) or decide. */
  const decisionHandlers = (stage: 'approvers' | 'escalateTo') => ({
    APPROVE: [
      {
        guard: { type: 'refused' as const, params: { stage } },
        actions: { type: 'refuse' as const, params: { stage } },
      },
      { target: 'approved', actions: 'decide' as const },
    ],
    REJECT: [
      {
        guard: { type: 'refused' as const, params: { stage } },
        actions: { type: 'refuse' as const, params: { stage } },
      },
      { target: 'rejected', actions: 'decide' as const },
    ],
  });

  return setup({
    types: {
      context: {} as ApprovalContext,
      events: {} as ApprovalDecisionEvent,
      output: {} as ApprovalOutput,
      emitted: {} as ApprovalEmitted,
    },
    delays: {
      decisionWait: options.timeoutMs,
      escalationWait: escalationTimeoutMs,
    },
    guards: {
      refused: (
        { context, event },
        params: { stage: 'approvers' | 'escalateTo' },
      ) => refusalOf(context[params.stage], event) !== null,
      canEscalate: ({ context }) => context.escalateTo.length > 0,
    },
    actions: {
      refuse: enqueueActions(
        (
          { context, event, enqueue },
          params: { stage: 'approvers' | 'escalateTo' },
        ) => {
          const error = refusalOf(context[params.stage], event);
          if (error === null) return;
          enqueue.assign({ lastError: error, refusals: context.refusals + 1 });
          enqueue.emit({ type: 'REFUSED', error });
        },
      ),
      decide: assign(({ event }) => ({
        decision:
          event.type === 'APPROVE'
            ? ('approved' as const)
            : ('rejected' as const),
        decidedBy: event.by,
        decidedAt:
          typeof event.at === 'number' && Number.isFinite(event.at)
            ? event.at
            : null,
        // `undefined` does not survive the codec; a missing payload is null.
        payload: event.payload === undefined ? null : event.payload,
      })),
      escalate: enqueueActions(({ context, enqueue, self }) => {
        enqueue.assign({ escalated: true });
        enqueue.emit({ type: 'ESCALATED', escalateTo: context.escalateTo });
        // A root entity has no parent, and sendParent throws without one.
        if (self._parent)
          enqueue.sendParent({
            type: 'ESCALATED',
            escalateTo: context.escalateTo,
          });
      }),
      expire: assign({ decision: 'expired' as const }),
    },
  }).createMachine({
    id: options.id ?? 'approval',
    // Input is optional and untyped in XState terms, so a task can be
    // created without any; an entity gets `{ entityId, entityType }`.
    context: ({ input }) => {
      const given = (
        typeof input === 'object' && input !== null ? input : {}
      ) as ApprovalInput;
      return {
        approvers:
          given.approvers === undefined
            ? approvers
            : checkIds('input.approvers', given.approvers, 1),
        escalateTo:
          given.escalateTo === undefined
            ? escalateTo
            : checkIds('input.escalateTo', given.escalateTo, 0),
        escalated: false,
        decision: null,
        decidedBy: null,
        decidedAt: null,
        payload: null,
        lastError: null,
        refusals: 0,
      };
    },
    initial: 'pending',
    states: {
      pending: {
        on: decisionHandlers('approvers'),
        after: {
          decisionWait: [
            { guard: 'canEscalate', target: 'escalated', actions: 'escalate' },
            { target: 'expired', actions: 'expire' },
          ],
        },
      },
      escalated: {
        on: decisionHandlers('escalateTo'),
        after: { escalationWait: { target: 'expired', actions: 'expire' } },
      },
      approved: { type: 'final' },
      rejected: { type: 'final' },
      expired: { type: 'final' },
    },
    output: ({ context }) => {
      const out: ApprovalOutput = {
        decision: context.decision ?? 'expired',
        escalated: context.escalated,
      };
      if (context.decidedBy !== null) out.by = context.decidedBy;
      if (context.decision !== 'expired' && context.decision !== null)
        out.payload = context.payload;
      return out;
    },
  });
}

function checkIds(name: string, value: unknown, min: number): string[] {
  const ok =
    Array.isArray(value) &&
    value.length >= min &&
    value.length <= approvalDefaults.approversMax &&
    value.every(
      (v) =>
        typeof v === 'string' &&
        v.length > 0 &&
        v.length <= approvalDefaults.approverLengthMax,
    );
  if (!ok) {
    throw new ConfigError(
      `${FACTORY}: ${name} must list ${min} to ${approvalDefaults.approversMax} ids (non-empty strings of at most ${approvalDefaults.approverLengthMax} characters); got ${JSON.stringify(value)}.`,
      { details: { option: name } },
    );
  }
  return [...(value as string[])];
}

function checkDelay(name: string, value: unknown): void {
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < 1 ||
    value > approvalDefaults.timeoutMsMax
  ) {
    throw new ConfigError(
      `${FACTORY}: ${name} must be an integer from 1 to ${approvalDefaults.timeoutMsMax} ms; got ${JSON.stringify(value)}.`,
      {
        details: { option: name, value },
      },
    );
  }
}
