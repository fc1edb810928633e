/**
 * The checkout example as a test: the same system main.ts runs, on the
 * memory store with a simulated clock. It covers what the README promises:
 * a placed order; PAUSE/RESUME returning both parallel regions to their
 * exact nested states across passivation and a restart of the system; a
 * failing payment that makes the saga release the stock; a flaky gateway
 * retried with durable backoff (the payment entity passivated in between);
 * an outage that trips the breaker shared by every order; and an
 * undeliverable address that refunds and releases.
 */
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  createSimulatedClock,
  type ActorSystem,
  type EntityState,
  type SimulatedClock,
} from 'shardchart';
import { memoryStore } from 'shardchart/adapters/memory';
import { toMermaid } from 'shardchart/graph';
import type { RetryOutput } from 'shardchart/machines';
import {
  createCheckoutMachine,
  validCode,
  type CheckoutOutput,
} from './checkout-machine.js';
import { timing } from './deps.js';
import { createFakeServices } from './services.js';
import { startCheckoutSystem } from './system.js';

const logger = pino({ level: 'silent' });
const macrotask = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Lets invoked promises run, moving the simulated clock by `stepMs` between looks, until `done` holds. */
async function until(
  clock: SimulatedClock,
  read: () => Promise<EntityState>,
  done: (s: EntityState) => boolean,
  stepMs = 50,
  looksMax = 2_000,
): Promise<EntityState> {
  for (let i = 0; i < looksMax; i++) {
    for (let t = 0; t < 5; t++) await macrotask();
    const s = await read();
    if (done(s)) return s;
    clock.advance(stepMs);
  }
  throw new Error(
    `condition not reached; last state ${JSON.stringify((await read()).value)}`,
  );
}

async function boot(
  store = memoryStore(),
  clock = createSimulatedClock(1_700_000_000_000),
  services = createFakeServices(),
) {
  const started = await startCheckoutSystem({
    store,
    clock,
    services,
    logger,
    passivateAfterMs: 0,
  });
  return { ...started, store, clock };
}

/** Fills an order up to the point where both regions wait for the customer. */
async function toChoices(
  system: ActorSystem,
  clock: SimulatedClock,
  orderId: string,
  token: string,
  address = '1 Main St',
) {
  const order = system.entity('checkout', orderId);
  await order.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
  await order.send({ type: 'ADD_ITEM', sku: 'mug', priceCents: 1_200 });
  await order.send({ type: 'CHECKOUT' });
  await order.send({ type: 'PAYMENT_METHOD', token });
  await order.send({ type: 'ADDRESS', address });
  clock.advance(Math.max(timing.codeSendMs, timing.quoteMs));
  return order;
}

async function place(
  system: ActorSystem,
  clock: SimulatedClock,
  orderId: string,
  token: string,
  address?: string,
) {
  const order = await toChoices(system, clock, orderId, token, address);
  await order.send({ type: 'CODE', code: validCode });
  await order.send({ type: 'RATE', rate: 'standard' });
  return until(
    clock,
    () => order.snapshot(),
    (s) => s.status === 'done',
  );
}

describe('checkout example', () => {
  it('checkout - an order is placed: stock reserved, card charged, courier booked', async () => {
    const { system, clock, services } = await boot();
    const done = await place(system, clock, 'o-1', 'tok_ok');
    expect(done.value).toBe('confirmed');
    expect((done.output as CheckoutOutput).placement?.outcome).toBe(
      'completed',
    );
    expect(services.ledger.charged.get('ch-o-1')).toBe(1_650);
    expect([...services.ledger.booked]).toEqual(['trk-o-1']);
    expect(services.ledger.released.size + services.ledger.refunded.size).toBe(
      0,
    );
    await system.stop();
  });

  it('checkout - PAUSE and RESUME return both regions to their exact nested states, across passivation and a restart', async () => {
    const store = memoryStore();
    const clock = createSimulatedClock(1_700_000_000_000);
    let { system } = await boot(store, clock);
    let order = system.entity('checkout', 'o-2');
    await order.send({ type: 'ADD_ITEM', sku: 'tea', priceCents: 450 });
    await order.send({ type: 'CHECKOUT' });
    await order.send({ type: 'PAYMENT_METHOD', token: 'tok_ok' });
    await order.send({ type: 'ADDRESS', address: '1 Main St' });
    // The code is due after codeSendMs while the order is passivated: its timer wakes it.
    expect(await order.passivate()).toBe(true);
    clock.advance(timing.quoteMs);
    const before = await until(
      clock,
      () => order.snapshot(),
      (s) => JSON.stringify(s.value).includes('awaitingCode'),
    );
    await order.send({ type: 'CODE', code: 'wrong' });
    const nested = {
      details: {
        payment: { verifying: 'awaitingCode' },
        shipping: { rates: 'choosing' },
      },
    };
    expect(before.value).toEqual(nested);

    expect((await order.send({ type: 'PAUSE' })).value).toBe('paused');
    expect(await order.passivate()).toBe(true);
    await system.stop();
    await store.open();
    ({ system } = await boot(store, clock));
    order = system.entity('checkout', 'o-2');
    expect((await order.snapshot()).value).toBe('paused');
    const resumed = await order.send({ type: 'RESUME' });
    expect(resumed.value).toEqual(nested);
    expect(resumed.context.wrongCodes).toBe(1);
    expect(resumed.context.pauses).toBe(1);

    // A second pause with the regions at different depths.
    await order.send({ type: 'CODE', code: validCode });
    const half = {
      details: { payment: 'ready', shipping: { rates: 'choosing' } },
    };
    expect((await order.snapshot()).value).toEqual(half);
    await order.send({ type: 'PAUSE' });
    expect((await order.send({ type: 'RESUME' })).value).toEqual(half);
    await order.send({ type: 'RATE', rate: 'express' });
    expect(
      (
        await until(
          clock,
          () => order.snapshot(),
          (s) => s.status === 'done',
        )
      ).value,
    ).toBe('confirmed');
    await system.stop();
  });

  it('checkout - a declined card fails the payment step and the saga releases the stock', async () => {
    const { system, clock, services } = await boot();
    const done = await place(system, clock, 'o-3', 'tok_declined');
    expect(done.value).toBe('failed');
    const placement = (done.output as CheckoutOutput).placement!;
    expect(placement).toMatchObject({
      outcome: 'compensated',
      failedStep: 'payment',
      undone: ['reserveStock'],
    });
    expect([...services.ledger.released]).toEqual(['res-o-3']);
    expect(services.ledger.booked.size + services.ledger.charged.size).toBe(0);
    const payment = (await system.entity('payment', 'o-3').snapshot())
      .output as RetryOutput;
    expect(payment).toMatchObject({ outcome: 'notRetryable', attemptsMade: 1 });
    expect(payment.attempts[0]!.error.code).toBe('card_declined');
    await system.stop();
  });

  it('checkout - a flaky gateway is retried with durable backoff, the payment entity passivated in between', async () => {
    const { system, clock, services } = await boot();
    const order = await toChoices(system, clock, 'o-4', 'tok_flaky');
    await order.send({ type: 'CODE', code: validCode });
    await order.send({ type: 'RATE', rate: 'standard' });
    const payment = system.entity('payment', 'o-4');
    await until(
      clock,
      () => payment.snapshot(),
      (s) => JSON.stringify(s.value).includes('waiting'),
      1,
    );
    expect(await payment.passivate()).toBe(true);
    const done = await until(
      clock,
      () => order.snapshot(),
      (s) => s.status === 'done',
    );
    expect(done.value).toBe('confirmed');
    expect(
      ((await payment.snapshot()).output as RetryOutput).attemptsMade,
    ).toBe(3);
    expect(services.ledger.chargeAttempts.get('o-4')).toBe(3);
    await system.stop();
  });

  it('checkout - an outage trips the breaker shared by all orders; failed orders compensate; it closes again after the reset timeout', async () => {
    const { system, clock, services } = await boot();
    const outage = await Promise.all(
      ['o-5', 'o-6', 'o-7'].map((id) => place(system, clock, id, 'tok_outage')),
    );
    expect(outage.map((s) => s.value)).toEqual(['failed', 'failed', 'failed']);
    const breaker = system.entity('breaker', timing.breakerId);
    const b = (await breaker.snapshot()).context;
    expect(b.trips).toBeGreaterThanOrEqual(1);
    // Attempts the open breaker refused never reached the gateway.
    let attempts = 0;
    for (const id of ['o-5', 'o-6', 'o-7'])
      attempts += (
        (await system.entity('payment', id).snapshot()).output as RetryOutput
      ).attemptsMade;
    const reached = ['o-5', 'o-6', 'o-7'].reduce(
      (n, id) => n + (services.ledger.chargeAttempts.get(id) ?? 0),
      0,
    );
    expect(attempts).toBe(3 * timing.paymentAttemptsMax);
    expect(reached).toBeLessThan(attempts);
    expect([...services.ledger.released].sort()).toEqual([
      'res-o-5',
      'res-o-6',
      'res-o-7',
    ]);

    clock.advance(timing.breaker.resetTimeoutMs);
    const healthy = await place(system, clock, 'o-8', 'tok_ok');
    expect(healthy.value).toBe('confirmed');
    expect((await breaker.snapshot()).value).toBe('closed');
    await system.stop();
  });

  it('checkout - an undeliverable address after payment refunds and releases, in reverse order', async () => {
    const { system, clock, services } = await boot();
    const done = await place(
      system,
      clock,
      'o-9',
      'tok_ok',
      '7 Road to nowhere',
    );
    expect(done.value).toBe('failed');
    const placement = (done.output as CheckoutOutput).placement!;
    expect(placement.failedStep).toBe('bookCourier');
    expect(new Set(placement.undone)).toEqual(
      new Set(['reserveStock', 'payment']),
    );
    expect([...services.ledger.refunded]).toEqual(['ch-o-9']);
    expect([...services.ledger.released]).toEqual(['res-o-9']);
    await system.stop();
  });

  it('checkout - the README diagram is what toMermaid draws today', () => {
    const readme = readFileSync(
      new URL('./README.md', import.meta.url),
      'utf8',
    );
    const block = /```mermaid\n([\s\S]*?)```/.exec(readme)?.[1];
    const machine = createCheckoutMachine({
      services: createFakeServices(),
      now: () => 0,
      entity: () => {
        throw new Error('not running');
      },
    });
    expect(block?.trimEnd()).toBe(toMermaid(machine).trimEnd());
  });
});
