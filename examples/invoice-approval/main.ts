/**
 * Runs the invoice approval example: invoices submitted as events of tenant
 * "acme" start approval workflows; an approver completes their tasks; one
 * waits past a day and gets a reminder. A simulated clock stands in for the
 * day, so the program ends at once. See README.md.
 */
import { createActorSystem, createSimulatedClock } from 'shardchart';
import { memoryStore } from 'shardchart/adapters/memory';
import { actions, invoiceApproval, outside } from './workflow.js';

const clock = createSimulatedClock(Date.parse('2026-03-02T09:00:00Z'));
const system = await createActorSystem({
  name: 'billing',
  entities: { invoiceApproval },
  actions,
  store: memoryStore(),
  clock,
});

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`invoice-approval example: ${what}`);
}

// INVOICE_SUBMITTED in tenant acme starts one workflow per invoice id.
await system.attach({
  tenant: 'acme',
  eventType: 'INVOICE_SUBMITTED',
  workflow: 'invoiceApproval',
  correlate: 'invoiceId',
});
for (const [invoiceId, amount] of [
  ['inv-1', 120],
  ['inv-2', 80],
] as const) {
  const submitted = await system.publishEvent({
    tenant: 'acme',
    type: 'INVOICE_SUBMITTED',
    id: `submit-${invoiceId}`,
    payload: { invoiceId, amount, owner: 'olga@acme.test', approver: 'maria' },
  });
  const [d] = submitted.deliveries;
  console.log(`${invoiceId}: ${d?.status} to ${d?.workflow} ${d?.id}`);
}
// The same event again (a client retrying): each workflow applies it once.
const retried = await system.publishEvent({
  tenant: 'acme',
  type: 'INVOICE_SUBMITTED',
  id: 'submit-inv-1',
  payload: {
    invoiceId: 'inv-1',
    amount: 120,
    owner: 'olga@acme.test',
    approver: 'maria',
  },
});
console.log(`retry of submit-inv-1: ${retried.deliveries[0]?.status}`);
// Another tenant attached nothing: its event starts no workflow.
const other = await system.publishEvent({
  tenant: 'globex',
  type: 'INVOICE_SUBMITTED',
  payload: { invoiceId: 'inv-1' },
});
console.log(`globex: ${other.deliveries.length} deliveries`);

const inv1 = system.entity('invoiceApproval', 'acme/inv-1');
const inv2 = system.entity('invoiceApproval', 'acme/inv-2');
for (const ref of [inv1, inv2])
  await ref.waitFor((s) => s.value === 'waiting_for_approval');

const tasks = await system.tasks.list({ tenant: 'acme', assignee: 'maria' });
for (const t of tasks) console.log(`task for maria: ${t.title}`);
check(tasks.length === 2, 'maria has two tasks');
const taskOf = (id: string) => tasks.find((t) => t.workflow.id === id)!;

// A form that does not fit the task's schema is refused, naming the field.
try {
  await system.tasks.complete(taskOf('acme/inv-1').id, { approved: 'yes' });
} catch (err) {
  console.log(`refused: ${(err as { code: string }).code}`);
}
await system.tasks.complete(
  taskOf('acme/inv-1').id,
  { approved: true },
  { by: 'maria' },
);
const paid = await inv1.waitFor((s) => s.status === 'done');
console.log(`inv-1: ${paid.value as string}, ${JSON.stringify(paid.output)}`);

// A day passes without a decision on inv-2: the reminder goes out.
clock.advance(86_400_000);
await inv2.waitFor((s) => s.value === 'reminded');
await system.tasks.complete(
  taskOf('acme/inv-2').id,
  { approved: false, comment: 'duplicate' },
  { by: 'maria' },
);
const rejected = await inv2.waitFor((s) => s.status === 'done');
console.log(
  `inv-2: ${rejected.value as string}, ${JSON.stringify(rejected.output)}`,
);
for (const e of outside.emails) console.log(`email: ${e}`);

check(outside.charges.size === 1, 'one charge');
check(
  outside.emails.some((e) => e.startsWith('acme: reminder to maria')),
  'a reminder for inv-2',
);
check((await system.tasks.list()).length === 0, 'no open tasks left');
try {
  await system.tasks.complete(taskOf('acme/inv-2').id, { approved: true });
} catch (err) {
  console.log(`completed again: ${(err as { code: string }).code}`);
}
await system.stop();
