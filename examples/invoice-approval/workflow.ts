/**
 * The invoice approval workflow of issue 6, with its actions: a submitted
 * invoice gets a human approval task; a reminder email goes out if nobody
 * decides within a day; an approved invoice is charged.
 */
import {
  createActionRegistry,
  defineWorkflow,
  type PublishedEvent,
  type WorkflowEvent,
} from 'shardchart';

export interface Invoice {
  invoiceId: string;
  amount: number;
  owner: string;
  approver: string;
}

/** What the actions did, for the example to print (stand-ins for a mailer and a card gateway). */
export const outside = {
  emails: [] as string[],
  /** Charges by idempotency key: a repeated call returns the first charge. */
  charges: new Map<string, { id: string; amount: number }>(),
};

export const actions = createActionRegistry()
  .register('sendEmail', {
    params: {
      type: 'object',
      required: ['to', 'template', 'invoiceId'],
      properties: {
        to: { type: 'string' },
        template: { type: 'string', enum: ['reminder', 'receipt'] },
        invoiceId: { type: 'string' },
      },
      additionalProperties: false,
    },
    // Mail goes out per tenant: the call needs one, and its key includes it.
    isolation: 'tenant',
    run: (p: { to: string; template: string; invoiceId: string }, actx) => {
      outside.emails.push(
        `${actx.tenant}: ${p.template} to ${p.to} about ${p.invoiceId}`,
      );
      return { sent: true };
    },
  })
  .register('chargeCard', {
    params: {
      type: 'object',
      required: ['amount', 'invoiceId'],
      properties: {
        amount: { type: 'number', exclusiveMinimum: 0 },
        invoiceId: { type: 'string' },
      },
    },
    retry: { attemptsMax: 5, backoff: { initialMs: 500 } },
    timeoutMs: 10_000,
    run: (p: { amount: number; invoiceId: string }, actx) => {
      // A real gateway takes the idempotency key and does this itself.
      let charge = outside.charges.get(actx.idempotencyKey);
      if (charge === undefined) {
        charge = { id: `ch_${outside.charges.size + 1}`, amount: p.amount };
        outside.charges.set(actx.idempotencyKey, charge);
      }
      return charge;
    },
  });

const dayMs = 86_400_000;

export const invoiceApproval = defineWorkflow(
  'invoiceApproval',
  async (ctx) => {
    const { invoiceId, amount, owner, approver } = ctx.input;
    const task = await ctx.tasks.create({
      title:
        'Approve invoice ${contextData.invoiceId} (${contextData.amount} EUR)',
      description: 'Submitted by ${contextData.owner}.',
      assignee: approver,
      form: {
        type: 'object',
        required: ['approved'],
        properties: {
          approved: { type: 'boolean' },
          comment: { type: 'string', maxLength: 500 },
        },
        additionalProperties: false,
      },
      context: { invoiceId, amount, owner },
    });
    ctx.setState('waiting_for_approval');
    let decision = await ctx.tasks.waitFor(task, { timeoutMs: dayMs });
    if (decision === undefined) {
      await ctx.actions.sendEmail({
        to: approver,
        template: 'reminder',
        invoiceId,
      });
      ctx.setState('reminded');
      decision = await ctx.tasks.waitFor(task);
    }
    const { approved } = decision.data as { approved: boolean };
    if (!approved) {
      ctx.setState('rejected');
      return { invoiceId, charged: null, decidedBy: decision.by ?? null };
    }
    ctx.setState('charging');
    const charge = await ctx.actions.chargeCard({ amount, invoiceId });
    ctx.logger.info({ charge }, 'charged');
    await ctx.actions.sendEmail({ to: owner, template: 'receipt', invoiceId });
    ctx.setState('paid');
    return { invoiceId, charged: charge.id, decidedBy: decision.by ?? null };
  },
  {
    actions,
    // The workflow is started by a published INVOICE_SUBMITTED event.
    input: (trigger: WorkflowEvent) =>
      (trigger as PublishedEvent).payload as unknown as Invoice,
  },
);
