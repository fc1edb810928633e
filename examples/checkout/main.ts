/**
 * Runs the checkout example: a few orders through the checkout, payment
 * and breaker entities, on the memory store, or on LMDB with
 * `--lmdb <directory>`. See README.md for what each order shows.
 */
import type { EntityRef, EntityState, Store } from 'shardchart';
import { memoryStore } from 'shardchart/adapters/memory';
import { lmdbStore } from 'shardchart/adapters/lmdb';
import type { BreakerContext, RetryOutput } from 'shardchart/machines';
import {
  validCode,
  type CheckoutContext,
  type CheckoutOutput,
} from './checkout-machine.js';
import { timing } from './deps.js';
import { startCheckoutSystem } from './system.js';

const lmdbAt = process.argv.indexOf('--lmdb');
const store: Store =
  lmdbAt > 0 && process.argv[lmdbAt + 1]
    ? lmdbStore({ path: process.argv[lmdbAt + 1]! })
    : memoryStore();
const { system, services } = await startCheckoutSystem({ store });
const waitMs = 20_000;
// The system clock's timers are unref'd (they never keep a process alive
// alone), and here entity timers are all that is pending while we wait.
const keepAlive = setInterval(() => undefined, 1_000);

const at = (value: unknown, path: string) =>
  JSON.stringify(value).includes(path);

/** Cart, checkout, payment method and address: both regions then wait for the customer. */
async function fill(
  orderId: string,
  token: string,
  address: string,
): Promise<EntityRef> {
  const order = system.entity('checkout', orderId);
  await order.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
  await order.send({ type: 'ADD_ITEM', sku: 'mug', priceCents: 1_200 });
  await order.send({ type: 'CHECKOUT' });
  await order.send({ type: 'PAYMENT_METHOD', token });
  await order.send({ type: 'ADDRESS', address });
  await order.waitFor(
    (s) => at(s.value, 'awaitingCode') && at(s.value, 'choosing'),
    { timeoutMs: waitMs },
  );
  return order;
}

async function finish(order: EntityRef): Promise<EntityState> {
  await order.send({ type: 'CODE', code: validCode });
  await order.send({ type: 'RATE', rate: 'standard' });
  return order.waitFor((s) => s.status === 'done', { timeoutMs: waitMs });
}

function report(orderId: string, s: EntityState): void {
  const out = s.output as CheckoutOutput;
  const p = out.placement;
  const detail =
    out.status === 'confirmed'
      ? `charged ${(s.context as CheckoutContext).totalCents} cents`
      : `${p?.failedStep} failed (${p?.steps.find((x) => x.id === p.failedStep)?.error?.message ?? '?'}); undone: ${p?.undone.join(', ')}`;
  console.log(`${orderId}: ${out.status}, ${detail}`);
}

// Orders that each take one path.
for (const [orderId, token, address] of [
  ['o-ok', 'tok_ok', '1 Main St'],
  ['o-flaky', 'tok_flaky', '2 Main St'],
  ['o-declined', 'tok_declined', '3 Main St'],
  ['o-nowhere', 'tok_ok', '4 Road to nowhere'],
] as const) {
  report(orderId, await finish(await fill(orderId, token, address)));
}
const flaky = (await system.entity('payment', 'o-flaky').snapshot())
  .output as RetryOutput;
console.log(
  `o-flaky: paid on attempt ${flaky.attemptsMade} (${flaky.attempts.map((a) => a.error.code).join(', ')} before)`,
);

// Pause in the middle of both regions, then resume exactly there.
const paused = await fill('o-pause', 'tok_ok', '5 Main St');
const where = JSON.stringify((await paused.snapshot()).value);
await paused.send({ type: 'PAUSE' });
await paused.passivate();
const resumed = await paused.send({ type: 'RESUME' });
console.log(
  `o-pause: resumed at ${JSON.stringify(resumed.value)}, the state paused at: ${JSON.stringify(resumed.value) === where}`,
);
report('o-pause', await finish(paused));

// A gateway outage: the shared breaker opens and later payments are refused without calling it.
for (const orderId of ['o-outage-1', 'o-outage-2', 'o-outage-3']) {
  report(orderId, await finish(await fill(orderId, 'tok_outage', '6 Main St')));
}
const breaker = (await system
  .entity('breaker', timing.breakerId)
  .snapshot()) as EntityState & { context: BreakerContext };
const calls = ['o-outage-1', 'o-outage-2', 'o-outage-3'].reduce(
  (n, id) => n + (services.ledger.chargeAttempts.get(id) ?? 0),
  0,
);
console.log(
  `breaker: ${JSON.stringify(breaker.value)}, tripped ${breaker.context.trips}x; ${calls} of ${3 * timing.paymentAttemptsMax} outage payment attempts reached the gateway`,
);

await system.stop();
clearInterval(keepAlive);
