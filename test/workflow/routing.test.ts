/**
 * Event routing with tenants (issue 6, part 5): attachments start and
 * continue workflows picked from the event, correlated waits receive the
 * events published with their key, a retried publish is applied once per
 * workflow, and no event crosses into another tenant.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  defineWorkflow,
  isShardchartError,
  type ActorSystem,
  type PublishedEvent,
} from '../../src/index.js';
import { boot, lmdbDir, until } from './fixtures.js';

/** Keeps every event it gets in its inbox, forever. */
const sink = defineWorkflow('sink', async (ctx) => {
  ctx.setState('listening');
  await ctx.events.waitFor('NEVER');
});

/** Started by GO { tenant, key }, waits for PAID with that key (or a timeout). */
const payment = defineWorkflow('payment', async (ctx) => {
  const key = ctx.trigger.key as string;
  ctx.setState('waiting');
  const paid = await ctx.events.waitFor('PAID', {
    correlationKey: key,
    timeoutMs: (ctx.trigger.timeoutMs as number | undefined) ?? 3_600_000,
  });
  return paid === undefined
    ? 'timed out'
    : { amount: (paid as PublishedEvent).payload.amount, tenant: paid.tenant };
});

/** The events of one entity's journal that a caller sent (not the workflow's own). */
async function received(system: ActorSystem, type: string, id: string) {
  const events: PublishedEvent[] = [];
  for await (const e of system.entity(type, id).journal())
    if (!e.event.type.startsWith('xstate.'))
      events.push(e.event as PublishedEvent);
  return events;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

/** Resolves once the correlation index of (tenant, type, key) holds `n` waits. */
async function subscribed(
  system: ActorSystem,
  tenant: string,
  type: string,
  key: string,
  n = 1,
): Promise<void> {
  const index = system.entity(
    'shardchart.correlation',
    `${tenant}/${type.length}:${type}/${key}`,
  );
  await until(
    async () =>
      ((await index.snapshot()).context as { waiters: unknown[] }).waiters
        .length === n,
    `${n} wait(s) on ${tenant}/${type}/${key}`,
  );
}

describe('event routing', () => {
  it('routing - an attached workflow is started by the event, per tenant, at the instance its correlate picks', async () => {
    const { system } = await boot({ entities: { sink } });
    const attachment = await system.attach({
      tenant: 'acme',
      eventType: 'INVOICE_CREATED',
      workflow: 'sink',
      correlate: 'invoiceId',
    });
    expect(attachment).toMatchObject({
      tenant: 'acme',
      eventType: 'INVOICE_CREATED',
      workflow: 'sink',
      correlate: 'invoiceId',
    });
    const r = await system.publishEvent({
      tenant: 'acme',
      type: 'INVOICE_CREATED',
      payload: { invoiceId: 'inv-1', amount: 5 },
      id: 'e-1',
    });
    expect(r).toMatchObject({
      eventId: 'e-1',
      deliveries: [
        {
          workflow: 'sink',
          id: 'acme/inv-1',
          via: 'attachment',
          status: 'delivered',
        },
      ],
    });
    const s = await system.entity('sink', 'acme/inv-1').snapshot();
    expect(s.value).toBe('listening');
    expect(s.context).toMatchObject({
      input: {
        type: 'INVOICE_CREATED',
        tenant: 'acme',
        eventId: 'e-1',
        payload: { invoiceId: 'inv-1', amount: 5 },
      },
    });
    // The next event for the same invoice continues that instance.
    await system.attach({
      tenant: 'acme',
      eventType: 'INVOICE_PAID',
      workflow: 'sink',
      correlate: '${payload.invoice.id}',
    });
    const paid = await system.publishEvent({
      tenant: 'acme',
      type: 'INVOICE_PAID',
      payload: { invoice: { id: 'inv-1' } },
    });
    expect(paid.deliveries).toMatchObject([
      { id: 'acme/inv-1', status: 'delivered' },
    ]);
    expect(
      (await received(system, 'sink', 'acme/inv-1')).map((e) => e.type),
    ).toEqual(['INVOICE_CREATED', 'INVOICE_PAID']);
    // Another tenant has no attachment: nothing happens there.
    const other = await system.publishEvent({
      tenant: 'globex',
      type: 'INVOICE_CREATED',
      payload: { invoiceId: 'inv-1' },
    });
    expect(other.deliveries).toEqual([]);
    expect(await system.attachments('globex')).toEqual([]);
    expect(await system.attachments('acme')).toHaveLength(2);
    await system.stop();
  });

  it('routing - correlate defaults: the correlation key, else a new instance per event; templates may mix text and fields', async () => {
    const { system } = await boot({ entities: { sink } });
    await system.attach({ tenant: 't', eventType: 'A', workflow: 'sink' });
    await system.attach({
      tenant: 't',
      eventType: 'B',
      workflow: 'sink',
      correlate: 'order-${payload.n}-${type}',
    });
    const byKey = await system.publishEvent({
      tenant: 't',
      type: 'A',
      correlationKey: 'k-9',
    });
    const fresh = await system.publishEvent({
      tenant: 't',
      type: 'A',
      id: 'x',
    });
    const mixed = await system.publishEvent({
      tenant: 't',
      type: 'B',
      payload: { n: 7 },
    });
    expect(byKey.deliveries[0]?.id).toBe('t/k-9');
    expect(fresh.deliveries[0]?.id).toBe('t/x');
    expect(mixed.deliveries[0]?.id).toBe('t/order-7-B');
    // A payload without the field fails that delivery, saying which field.
    const missing = await system.publishEvent({ tenant: 't', type: 'B' });
    expect(missing.deliveries).toHaveLength(1);
    expect(missing.deliveries[0]).toMatchObject({ status: 'failed' });
    expect(missing.deliveries[0]!.error).toMatchObject({
      code: 'TEMPLATE_FIELD_MISSING',
      details: { field: 'payload.n' },
    });
    // Attaching again replaces correlate; detaching ends the routing.
    await system.attach({
      tenant: 't',
      eventType: 'B',
      workflow: 'sink',
      correlate: 'n',
    });
    expect(await system.attachments('t')).toMatchObject([
      { eventType: 'A' },
      { eventType: 'B', correlate: 'n' },
    ]);
    expect(
      await system.detach({ tenant: 't', eventType: 'A', workflow: 'sink' }),
    ).toBe(true);
    expect(
      await system.detach({ tenant: 't', eventType: 'A', workflow: 'sink' }),
    ).toBe(false);
    expect(
      (await system.publishEvent({ tenant: 't', type: 'A' })).deliveries,
    ).toEqual([]);
    await system.stop();
  });

  it('routing - bad input: TENANT_INVALID for a missing, empty or "/" tenant; unknown workflows and bad correlate rules are refused', async () => {
    const { system } = await boot({ entities: { sink } });
    for (const tenant of [undefined, '', 'a/b', 42, 'x'.repeat(129), 'a\nb']) {
      const err = await rejection(
        system.publishEvent({ tenant: tenant as string, type: 'A' }),
      );
      expect(isShardchartError(err, 'TENANT_INVALID'), String(err)).toBe(true);
      expect(
        isShardchartError(
          await rejection(
            system.attach({
              tenant: tenant as string,
              eventType: 'A',
              workflow: 'sink',
            }),
          ),
          'TENANT_INVALID',
        ),
      ).toBe(true);
    }
    const unknown = await rejection(
      system.attach({ tenant: 't', eventType: 'A', workflow: 'nope' }),
    );
    expect(unknown).toMatchObject({ code: 'ENTITY_TYPE_UNKNOWN' });
    expect((unknown as Error).message).toContain('"sink"');
    for (const correlate of ['${payload.a', '${other.x}', '${}', ''])
      expect(
        await rejection(
          system.attach({
            tenant: 't',
            eventType: 'A',
            workflow: 'sink',
            correlate,
          }),
        ),
      ).toMatchObject({ code: 'CONFIG_INVALID' });
    for (const type of ['', 'xstate.init', 'shardchart.task.completed:x'])
      expect(
        await rejection(system.publishEvent({ tenant: 't', type })),
      ).toMatchObject({ code: 'EVENT_INVALID' });
    expect(
      await rejection(
        system.publishEvent({
          tenant: 't',
          type: 'A',
          payload: { f: () => 1 },
        }),
      ),
    ).toMatchObject({ code: 'EVENT_NOT_SERIALIZABLE' });
    expect(
      await rejection(
        system.publishEvent({ tenant: 't', type: 'A', payload: [] as never }),
      ),
    ).toMatchObject({ code: 'EVENT_INVALID' });
    // Nothing was recorded by the refusals.
    expect(await system.attachments('t')).toEqual([]);
    await system.stop();
  });

  it('routing - a retried publishEvent (same id) is applied once per workflow, and reaches a workflow attached in between', async () => {
    const other = defineWorkflow('other', async (ctx) => {
      await ctx.events.waitFor('NEVER');
    });
    const { system } = await boot({ entities: { sink, other } });
    await system.attach({
      tenant: 'acme',
      eventType: 'ORDER',
      workflow: 'sink',
      correlate: 'orderId',
    });
    const event = {
      tenant: 'acme',
      type: 'ORDER',
      payload: { orderId: 'o-1' },
      id: 'evt-1',
    };
    const first = await system.publishEvent(event);
    expect(first.deliveries.map((d) => d.status)).toEqual(['delivered']);
    const retry = await system.publishEvent(event);
    expect(retry.deliveries.map((d) => d.status)).toEqual(['duplicate']);
    // The answer of the retry was lost too, and meanwhile another workflow
    // was attached: it gets the event once, the first one still once.
    await system.attach({
      tenant: 'acme',
      eventType: 'ORDER',
      workflow: 'other',
      correlate: 'orderId',
    });
    const again = await system.publishEvent(event);
    expect(again.deliveries.map((d) => [d.workflow, d.status])).toEqual([
      ['sink', 'duplicate'],
      ['other', 'delivered'],
    ]);
    await system.publishEvent(event);
    expect(await received(system, 'sink', 'acme/o-1')).toHaveLength(1);
    expect(await received(system, 'other', 'acme/o-1')).toHaveLength(1);
    // A new id is a new event.
    await system.publishEvent({ ...event, id: 'evt-2' });
    expect(await received(system, 'sink', 'acme/o-1')).toHaveLength(2);
    await system.stop();
  });

  it('routing - a correlated wait gets the event with its key in its tenant only, also after passivation', async () => {
    const { system } = await boot({ entities: { payment } });
    const ref = system.entity('payment', 'p-1');
    await ref.send({ type: 'GO', tenant: 'acme', key: 'pay-77' });
    await subscribed(system, 'acme', 'PAID', 'pay-77');
    expect(await ref.passivate()).toBe(true);
    // Another key, another tenant, another type: none of them reach it.
    const misses = await Promise.all([
      system.publishEvent({
        tenant: 'acme',
        type: 'PAID',
        correlationKey: 'pay-78',
        payload: { amount: 1 },
      }),
      system.publishEvent({
        tenant: 'globex',
        type: 'PAID',
        correlationKey: 'pay-77',
        payload: { amount: 2 },
      }),
      system.publishEvent({
        tenant: 'acme',
        type: 'REFUNDED',
        correlationKey: 'pay-77',
      }),
    ]);
    expect(misses.flatMap((m) => m.deliveries)).toEqual([]);
    expect(ref.isLive()).toBe(false);
    const hit = await system.publishEvent({
      tenant: 'acme',
      type: 'PAID',
      correlationKey: 'pay-77',
      payload: { amount: 120 },
    });
    expect(hit.deliveries).toMatchObject([
      {
        workflow: 'payment',
        id: 'p-1',
        via: 'correlation',
        status: 'delivered',
      },
    ]);
    const done = await ref.waitFor((s) => s.status === 'done');
    expect(done.output).toEqual({ amount: 120, tenant: 'acme' });
    // The wait was consumed: a second event with the key reaches nobody.
    await subscribed(system, 'acme', 'PAID', 'pay-77', 0);
    const late = await system.publishEvent({
      tenant: 'acme',
      type: 'PAID',
      correlationKey: 'pay-77',
    });
    expect(late.deliveries).toEqual([]);
    await system.stop();
  });

  it('routing - a correlated wait without a tenant is TENANT_INVALID in the workflow; its timeout still ends it', async () => {
    const careful = defineWorkflow('careful', async (ctx) => {
      try {
        await ctx.events.waitFor('PAID', { correlationKey: 'k' });
        return 'waited';
      } catch (err) {
        return (err as { code?: string }).code;
      }
    });
    const { system, clock } = await boot({ entities: { payment, careful } });
    const noTenant = system.entity('careful', 'none');
    await noTenant.send({ type: 'GO' });
    expect((await noTenant.waitFor((s) => s.status === 'done')).output).toBe(
      'TENANT_INVALID',
    );
    const timed = system.entity('payment', 'slow');
    await timed.send({
      type: 'GO',
      tenant: 'acme',
      key: 'k',
      timeoutMs: 1_000,
    });
    await subscribed(system, 'acme', 'PAID', 'k');
    clock.advance(1_000);
    expect((await timed.waitFor((s) => s.status === 'done')).output).toBe(
      'timed out',
    );
    await system.stop();
  });

  it('routing - attachments and correlated waits survive a restart on LMDB', async () => {
    const dir = lmdbDir();
    try {
      let { system } = await boot({
        entities: { sink, payment },
        store: dir.open(),
      });
      await system.attach({
        tenant: 'acme',
        eventType: 'CREATED',
        workflow: 'sink',
        correlate: 'id',
      });
      await system.entity('payment', 'p').send({
        type: 'GO',
        tenant: 'acme',
        key: 'inv-5',
      });
      await subscribed(system, 'acme', 'PAID', 'inv-5');
      await system.stop();

      ({ system } = await boot({
        entities: { sink, payment },
        store: dir.open(),
      }));
      expect(await system.attachments('acme')).toMatchObject([
        { eventType: 'CREATED', workflow: 'sink', correlate: 'id' },
      ]);
      const created = await system.publishEvent({
        tenant: 'acme',
        type: 'CREATED',
        payload: { id: 'x' },
      });
      expect(created.deliveries).toMatchObject([
        { id: 'acme/x', status: 'delivered' },
      ]);
      await system.publishEvent({
        tenant: 'acme',
        type: 'PAID',
        correlationKey: 'inv-5',
        payload: { amount: 3 },
      });
      const done = await system
        .entity('payment', 'p')
        .waitFor((s) => s.status === 'done');
      expect(done.output).toEqual({ amount: 3, tenant: 'acme' });
      await system.stop();
    } finally {
      dir.cleanup();
    }
  });

  it('routing - an event for a workflow that has ended is a no-op reported as "ended"', async () => {
    const once = defineWorkflow('once', async () => 'done');
    const { system } = await boot({ entities: { once } });
    await system.attach({
      tenant: 't',
      eventType: 'E',
      workflow: 'once',
      correlate: 'id',
    });
    const first = await system.publishEvent({
      tenant: 't',
      type: 'E',
      payload: { id: '1' },
    });
    expect(first.deliveries[0]!.status).toBe('delivered');
    await system.entity('once', 't/1').waitFor((s) => s.status === 'done');
    const second = await system.publishEvent({
      tenant: 't',
      type: 'E',
      payload: { id: '1' },
    });
    expect(second.deliveries).toMatchObject([{ id: 't/1', status: 'ended' }]);
    expect(await received(system, 'once', 't/1')).toHaveLength(1);
    await system.stop();
  });

  it('routing - a system without workflows refuses the routing and task methods with CONFIG_INVALID', async () => {
    const { createMachine } = await import('xstate');
    const { system } = await boot({
      entities: { m: createMachine({ initial: 'a', states: { a: {} } }) },
    });
    expect(
      await rejection(system.publishEvent({ tenant: 't', type: 'A' })),
    ).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(await rejection(system.tasks.list())).toMatchObject({
      code: 'CONFIG_INVALID',
    });
    await system.stop();
  });

  /**
   * Goal: whatever tenants, attachments, waits and events a program uses,
   * no event reaches a workflow of another tenant, and attached workflows
   * get exactly the events the attachments route to them, each once.
   * Method: fast-check draws tenant ids (awkward ones included) and a
   * script of attach, detach, publish (ids drawn from a small pool, so
   * retries and id reuse happen) and correlated waits; a model computes
   * the deliveries attachments must make, and every journal is read.
   */
  it('routing - property: random tenants and events never cross tenants, and attachments deliver exactly once', async () => {
    const listener = defineWorkflow('listener', async (ctx) => {
      const key = ctx.trigger.key as string;
      for (;;)
        await ctx.events.waitFor(['A', 'B', 'C'], { correlationKey: key });
    });
    const tenantId = fc.oneof(
      fc.constantFrom(
        'acme',
        'globex',
        'a b',
        'ünï',
        '%2F',
        'x%2Fy',
        '.',
        '..',
      ),
      fc
        .string({ minLength: 1, maxLength: 6 })
        // eslint-disable-next-line no-control-regex
        .filter((t) => !t.includes('/') && !/[\u0000-\u001f\u007f]/.test(t)),
    );
    const type = fc.constantFrom('A', 'B', 'C');
    const key = fc.constantFrom('x', 'y');
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('attach' as const),
        t: fc.nat(3),
        type,
        byPayload: fc.boolean(),
      }),
      fc.record({ kind: fc.constant('detach' as const), t: fc.nat(3), type }),
      fc.record({
        kind: fc.constant('publish' as const),
        t: fc.nat(3),
        type,
        k: key,
        correlationKey: fc.option(key, { nil: undefined }),
        id: fc.option(fc.constantFrom('e1', 'e2', 'e3'), { nil: undefined }),
      }),
      fc.record({ kind: fc.constant('wait' as const), t: fc.nat(3), k: key }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(tenantId, { minLength: 2, maxLength: 4 }),
        fc.array(op, { minLength: 1, maxLength: 25 }),
        async (tenants, ops) => {
          const { system } = await boot({ entities: { sink, listener } });
          try {
            const attached = new Map<string, boolean>(); // tenant\0type -> by payload
            const expected = new Set<string>(); // entity id \0 event id
            const listeners: { id: string; tenant: string; key: string }[] = [];
            for (const o of ops) {
              const tenant = tenants[o.t % tenants.length]!;
              if (o.kind === 'attach') {
                await system.attach({
                  tenant,
                  eventType: o.type,
                  workflow: 'sink',
                  ...(o.byPayload ? { correlate: 'k' } : {}),
                });
                attached.set(`${tenant}\u0000${o.type}`, o.byPayload);
              } else if (o.kind === 'detach') {
                await system.detach({
                  tenant,
                  eventType: o.type,
                  workflow: 'sink',
                });
                attached.delete(`${tenant}\u0000${o.type}`);
              } else if (o.kind === 'wait') {
                const id = `w-${listeners.length}`;
                listeners.push({ id, tenant, key: o.k });
                await system
                  .entity('listener', id)
                  .send({ type: 'GO', tenant, key: o.k });
              } else {
                const r = await system.publishEvent({
                  tenant,
                  type: o.type,
                  payload: { k: o.k },
                  ...(o.correlationKey !== undefined
                    ? { correlationKey: o.correlationKey }
                    : {}),
                  ...(o.id !== undefined ? { id: o.id } : {}),
                });
                for (const d of r.deliveries) {
                  expect(d.status).not.toBe('failed');
                  if (d.workflow === 'sink')
                    expect(d.id.startsWith(`${tenant}/`)).toBe(true);
                  else
                    expect(listeners.find((l) => l.id === d.id)?.tenant).toBe(
                      tenant,
                    );
                }
                const byPayload = attached.get(`${tenant}\u0000${o.type}`);
                if (byPayload !== undefined) {
                  const instance = byPayload
                    ? o.k
                    : (o.correlationKey ?? r.eventId);
                  expected.add(`${tenant}/${instance}\u0000${r.eventId}`);
                }
              }
            }
            const instances = new Set(
              [...expected].map((e) => e.split('\u0000')[0]!),
            );
            const got = new Set<string>();
            for (const id of instances) {
              const events = await received(system, 'sink', id);
              for (const e of events) {
                expect(`${e.tenant}/`).toBe(id.slice(0, e.tenant.length + 1));
                const k = `${id}\u0000${e.eventId}`;
                expect(got.has(k), `applied twice: ${k}`).toBe(false);
                got.add(k);
              }
            }
            expect([...got].sort()).toEqual([...expected].sort());
            for (const l of listeners) {
              for (const e of await received(system, 'listener', l.id)) {
                if (e.type === 'GO') continue;
                expect(e.tenant).toBe(l.tenant);
                expect(e.correlationKey).toBe(l.key);
              }
            }
          } finally {
            await system.stop();
          }
        },
      ),
      { numRuns: 30 },
    );
  });
});
