import { describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { createActorSystem, ShardchartError, type ErrorCode } from '../../src/index.js';
import { counterMachine, memoryLogger, quietLogger } from './fixtures.js';

async function expectCode(p: Promise<unknown> | (() => unknown), code: ErrorCode): Promise<ShardchartError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(ShardchartError);
  expect((err as ShardchartError).code).toBe(code);
  expect((err as Error).message.length).toBeGreaterThan(30);
  return err as ShardchartError;
}

class Money {
  constructor(readonly cents: number) {}
}

describe('bad input', () => {
  it('bad input - unknown entity type and invalid ids get typed errors', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const err = await expectCode(() => system.entity('nope' as 'counter', 'x'), 'ENTITY_TYPE_UNKNOWN');
    expect(err.message).toContain('"counter"');
    await expectCode(() => system.entity('counter', ''), 'ENTITY_ID_INVALID');
    await expectCode(() => system.entity('counter', 'x'.repeat(10_000)), 'ENTITY_ID_INVALID');
    await expectCode(() => system.entity('counter', 42 as unknown as string), 'ENTITY_ID_INVALID');
    await system.stop();
  });

  it('bad input - events that are not plain objects with a string type', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c');
    for (const bad of [null, 'ADD', 42, [], { type: 1 }, { type: '' }, {}, { type: 'xstate.after.1000.x' }, { type: '*' }]) {
      await expectCode(ref.send(bad as never), 'EVENT_INVALID');
    }
    await expectCode(ref.send({ type: 'ADD', value: 1 }, { eventId: '' }), 'EVENT_INVALID');
    await system.stop();
  });

  it('bad input - non-serialisable events: function, class instance, cycle, symbol, bigint, NaN', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c');
    const cyclic: Record<string, unknown> = { type: 'ADD' };
    cyclic.self = cyclic;
    const bads: Record<string, unknown>[] = [
      { type: 'ADD', f: () => 1 },
      { type: 'ADD', money: new Money(5) },
      { type: 'ADD', when: new Date() },
      { type: 'ADD', m: new Map() },
      cyclic,
      { type: 'ADD', s: Symbol('x') },
      { type: 'ADD', b: 10n },
      { type: 'ADD', n: NaN },
    ];
    for (const bad of bads) {
      const err = await expectCode(ref.send(bad as never), 'EVENT_NOT_SERIALIZABLE');
      expect(err.details?.path).toMatch(/^\$/);
    }
    // Nothing reached the entity.
    expect((await ref.snapshot()).seq).toBe(0);
    await system.stop();
  });

  it('bad input - oversized and too-deep events are refused before the mailbox', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, eventBytesMax: 1_000, logger: quietLogger() });
    const ref = system.entity('counter', 'c');
    await expectCode(ref.send({ type: 'ADD', value: 1, blob: 'x'.repeat(2_000) }), 'EVENT_TOO_LARGE');
    let deep: Record<string, unknown> = { leaf: true };
    for (let i = 0; i < 10_000; i++) deep = { d: deep };
    await expectCode(ref.send({ type: 'ADD', value: 1, deep }), 'EVENT_TOO_LARGE');
    expect((await ref.send({ type: 'ADD', value: 1 })).seq).toBe(1);
    await system.stop();
  });

  it('bad input - an unaccepted event resolves changed: false and is not journaled; rejectUnhandled turns it into EVENT_REJECTED', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine, strict: { machine: counterMachine, rejectUnhandled: true } }, logger: quietLogger() });
    const ref = system.entity('counter', 'c');
    await ref.send({ type: 'ADD', value: 1 });
    expect(await ref.send({ type: 'UNKNOWN' })).toMatchObject({ seq: 1, changed: false });
    let n = 0;
    for await (const _ of ref.journal()) n++;
    expect(n).toBe(1);
    const strict = system.entity('strict', 's');
    await expectCode(strict.send({ type: 'UNKNOWN' }), 'EVENT_REJECTED');
    // A taken transition with no state change (actions only) is accepted.
    expect(await strict.send({ type: 'PING' })).toMatchObject({ changed: false });
    await system.stop();
  });

  it('bad input - a final entity refuses further events with ENTITY_STOPPED', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c');
    await ref.send({ type: 'ADD', value: 3 });
    const done = await ref.send({ type: 'FINISH' });
    expect(done).toMatchObject({ status: 'done', output: { total: 3 } });
    await expectCode(ref.send({ type: 'ADD', value: 1 }), 'ENTITY_STOPPED');
    // A retry of the event that finished an entity is a duplicate, not an error.
    const other = system.entity('counter', 'd');
    await other.send({ type: 'FINISH' }, { eventId: 'fin' });
    expect(await other.send({ type: 'FINISH' }, { eventId: 'fin' })).toMatchObject({ duplicate: true, status: 'done' });
    await ref.passivate();
    expect((await ref.snapshot()).status).toBe('done');
    await system.stop();
  });

  it('bad input - invalid options and machines give CONFIG_INVALID', async () => {
    await expectCode(createActorSystem({ name: '', entities: { counter: counterMachine } }), 'CONFIG_INVALID');
    await expectCode(createActorSystem({ name: 'a b', entities: { counter: counterMachine } }), 'CONFIG_INVALID');
    await expectCode(createActorSystem({ name: 't', entities: {} }), 'CONFIG_INVALID');
    await expectCode(createActorSystem({ name: 't', entities: { x: {} as never } }), 'CONFIG_INVALID');
    await expectCode(createActorSystem({ name: 't', entities: { counter: counterMachine }, snapshotEvery: 0 }), 'CONFIG_INVALID');
    await expectCode(createActorSystem({ name: 't', entities: { counter: counterMachine }, mailboxDepthMax: 1.5 }), 'CONFIG_INVALID');
    await expectCode(createActorSystem({ name: 't', entities: { counter: counterMachine }, timerResume: 'later' as never }), 'CONFIG_INVALID');
  });

  it('bad input - stateAt outside the journal gives SEQ_OUT_OF_RANGE', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const ref = system.entity('counter', 'c');
    await ref.send({ type: 'ADD', value: 1 });
    await expectCode(ref.stateAt(5), 'SEQ_OUT_OF_RANGE');
    await expectCode(ref.stateAt(-1), 'SEQ_OUT_OF_RANGE');
    expect((await ref.stateAt(0)).context.n).toBe(0);
    await system.stop();
  });

  it('bad input - sendMany reports each item on its own, in input order', async () => {
    const system = await createActorSystem({ name: 't', entities: { counter: counterMachine }, logger: quietLogger() });
    const results = await system.sendMany([
      { type: 'counter', id: 'a', event: { type: 'ADD', value: 1 }, eventId: 'x1' },
      { type: 'nope', id: 'a', event: { type: 'ADD', value: 1 } },
      { type: 'counter', id: 'a', event: { type: 'ADD', value: 1 }, eventId: 'x1' },
      { type: 'counter', id: 'b', event: { type: 'ADD', f: () => 1 } },
    ]);
    expect(results.map((r) => r.ok)).toEqual([true, false, true, false]);
    expect(results[2]).toMatchObject({ ok: true, state: { duplicate: true } });
    expect(results[1]).toMatchObject({ ok: false, error: { code: 'ENTITY_TYPE_UNKNOWN' } });
    await system.stop();
  });

  it('logs - structured fields system, type, id, seq, eventId', async () => {
    const { logger, lines } = memoryLogger();
    const machine = setup({}).createMachine({ on: { BOOM: { actions: () => { throw new Error('x'); } } } });
    const system = await createActorSystem({ name: 'shop', entities: { m: machine }, logger, restart: { attemptsMax: 2, backoffMs: 1 } });
    await system.entity('m', 'm-1').send({ type: 'BOOM' }, { eventId: 'ev-9' }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 20));
    const failure = lines.find((l) => l.msg === 'entity failed; restarting from its durable state');
    expect(failure).toMatchObject({ system: 'shop', type: 'm', id: 'm-1', seq: 0, eventType: 'BOOM', eventId: 'ev-9' });
    expect(lines.some((l) => typeof l.msg === 'string' && l.msg.includes('not durable'))).toBe(true);
    await system.stop();
  });
});
