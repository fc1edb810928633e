/**
 * The approval task, three ways: as a plain XState actor, invoked as a
 * child of another machine, and as a Shardchart entity on the memory store
 * with a simulated clock (both timeouts must fire while it is passivated).
 * `checkMachine` then runs generated decision events (listed and unlisted
 * people, valid and invalid forms) with clock jumps, passivations and
 * restarts through a plain actor and an entity and checks the task's
 * invariants in every state; `getTestPaths` checks that each outcome is
 * reachable the way the README says.
 */
import { Ajv } from 'ajv';
import fc from 'fast-check';
import { pino } from 'pino';
import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { assign, createActor, sendTo, setup } from 'xstate';
import {
  createActorSystem,
  createSimulatedClock,
  type SimulatedClock,
} from '../../src/index.js';
import { checkMachine, getTestPaths } from '../../src/testing/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { toMermaid } from '../../src/graph/index.js';
import {
  createApprovalMachine,
  type ApprovalContext,
  type ApprovalEmitted,
  type ApprovalOutput,
} from './index.js';

const logger = pino({ level: 'silent' });

const refundForm = {
  type: 'object',
  required: ['amount', 'reason'],
  properties: {
    amount: { type: 'number', minimum: 0, maximum: 500 },
    reason: { type: 'string', minLength: 1 },
  },
  additionalProperties: false,
} as const;
const good = { amount: 120, reason: 'damaged' };

const options = {
  approvers: ['ana', 'bo'],
  escalateTo: ['cy'],
  timeoutMs: 60_000,
  escalationTimeoutMs: 30_000,
  schema: refundForm,
};

function plainTask(
  opts: Parameters<typeof createApprovalMachine>[0] = options,
  clock: SimulatedClock = createSimulatedClock(0),
) {
  const actor = createActor(createApprovalMachine(opts), { clock });
  const emitted: ApprovalEmitted[] = [];
  actor.on('*', (e) => emitted.push(e));
  actor.start();
  return { actor, emitted, clock };
}

describe('approval machine as a plain actor', () => {
  it('approval - a listed approver with a valid form decides; the output records who and what', () => {
    const { actor } = plainTask();
    actor.send({ type: 'APPROVE', by: 'bo', payload: good, at: 1_234 });
    const s = actor.getSnapshot();
    expect(s.status).toBe('done');
    expect(s.output).toEqual({
      decision: 'approved',
      by: 'bo',
      payload: good,
      escalated: false,
    });
    expect(s.context).toMatchObject({
      decidedBy: 'bo',
      decidedAt: 1_234,
      payload: good,
    });
  });

  it('approval - REJECT ends the task as rejected, with its form', () => {
    const { actor } = plainTask();
    actor.send({
      type: 'REJECT',
      by: 'ana',
      payload: { amount: 0, reason: 'no receipt' },
    });
    expect(actor.getSnapshot().output).toEqual({
      decision: 'rejected',
      by: 'ana',
      payload: { amount: 0, reason: 'no receipt' },
      escalated: false,
    });
  });

  it('approval - an invalid form is not accepted: state unchanged, PAYLOAD_INVALID with every bad field', () => {
    const { actor, emitted } = plainTask();
    actor.send({
      type: 'APPROVE',
      by: 'ana',
      payload: { amount: 900, extra: true },
    });
    const s = actor.getSnapshot();
    expect(s.value).toBe('pending');
    expect(s.context.lastError).toMatchObject({
      code: 'PAYLOAD_INVALID',
      by: 'ana',
      eventType: 'APPROVE',
    });
    expect(s.context.lastError!.fields.sort()).toEqual([
      '/amount',
      '/extra',
      '/reason',
    ]);
    expect(emitted).toEqual([{ type: 'REFUSED', error: s.context.lastError }]);
    actor.send({ type: 'APPROVE', by: 'ana' });
    expect(actor.getSnapshot().context.lastError).toMatchObject({
      code: 'PAYLOAD_INVALID',
      fields: [''],
    });
    actor.send({ type: 'APPROVE', by: 'ana', payload: good });
    expect(actor.getSnapshot().output).toMatchObject({
      decision: 'approved',
      by: 'ana',
    });
    expect(actor.getSnapshot().context.refusals).toBe(2);
  });

  it('approval - someone not listed is refused the same way, even with a valid form', () => {
    const { actor } = plainTask();
    actor.send({ type: 'APPROVE', by: 'cy', payload: good }); // cy decides only after escalation
    actor.send({ type: 'REJECT', by: 42 as unknown as string, payload: good });
    const s = actor.getSnapshot();
    expect(s.value).toBe('pending');
    expect(s.context.lastError).toMatchObject({
      code: 'APPROVER_NOT_ALLOWED',
      by: null,
      eventType: 'REJECT',
      fields: [],
    });
    expect(s.context.refusals).toBe(2);
  });

  it('approval - escalates after timeoutMs; then only escalateTo decides', () => {
    const { actor, emitted, clock } = plainTask();
    clock.advance(59_999);
    expect(actor.getSnapshot().value).toBe('pending');
    clock.advance(1);
    expect(actor.getSnapshot().value).toBe('escalated');
    expect(emitted).toEqual([{ type: 'ESCALATED', escalateTo: ['cy'] }]);
    actor.send({ type: 'APPROVE', by: 'ana', payload: good });
    expect(actor.getSnapshot().context.lastError?.code).toBe(
      'APPROVER_NOT_ALLOWED',
    );
    actor.send({ type: 'APPROVE', by: 'cy', payload: good });
    expect(actor.getSnapshot().output).toEqual({
      decision: 'approved',
      by: 'cy',
      payload: good,
      escalated: true,
    });
  });

  it('approval - a second timeout expires the task', () => {
    const { actor, clock } = plainTask();
    clock.advance(60_000 + 29_999);
    expect(actor.getSnapshot().value).toBe('escalated');
    clock.advance(1);
    expect(actor.getSnapshot().value).toBe('expired');
    expect(actor.getSnapshot().output).toEqual({
      decision: 'expired',
      escalated: true,
    });
  });

  it('approval - without escalateTo, the first timeout expires the task', () => {
    const { actor, clock, emitted } = plainTask({ ...options, escalateTo: [] });
    clock.advance(60_000);
    expect(actor.getSnapshot().output).toEqual({
      decision: 'expired',
      escalated: false,
    });
    expect(emitted).toEqual([]);
  });

  it('approval - input overrides the approver lists per task', () => {
    const actor = createActor(createApprovalMachine(options), {
      input: { approvers: ['dee'] },
    }).start();
    actor.send({ type: 'APPROVE', by: 'ana', payload: good });
    expect(actor.getSnapshot().context.lastError?.code).toBe(
      'APPROVER_NOT_ALLOWED',
    );
    actor.send({ type: 'APPROVE', by: 'dee', payload: good });
    expect(actor.getSnapshot().output).toMatchObject({ by: 'dee' });
  });

  it('approval - the schema is compiled once, when the machine is created', () => {
    const compile = vi.spyOn(Ajv.prototype, 'compile');
    try {
      const machine = createApprovalMachine(options);
      expect(compile).toHaveBeenCalledTimes(1);
      for (let i = 0; i < 3; i++) {
        const actor = createActor(machine).start();
        actor.send({ type: 'APPROVE', by: 'ana', payload: { amount: -1 } });
        actor.send({ type: 'APPROVE', by: 'ana', payload: good });
      }
      expect(compile).toHaveBeenCalledTimes(1);
    } finally {
      compile.mockRestore();
    }
  });

  it('approval - bad options and invalid schemas are refused with CONFIG_INVALID', () => {
    for (const bad of [
      { ...options, approvers: [] },
      { ...options, approvers: [''] },
      { ...options, escalateTo: 'cy' },
      { ...options, timeoutMs: 0 },
      { ...options, escalationTimeoutMs: 1.5 },
      { ...options, schema: { type: 'object', propertiez: {} } },
      { ...options, schema: { type: 'nope' } },
    ]) {
      expect(
        () => createApprovalMachine(bad as never),
        JSON.stringify(bad),
      ).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
  });
});

/** An expense claim that opens an approval task and books the outcome. */
function claimMachine() {
  return setup({
    types: {
      context: {} as { escalations: number; outcome: ApprovalOutput | null },
      events: {} as
        | { type: 'DECIDE'; by: string; payload: unknown }
        | { type: 'ESCALATED'; escalateTo: string[] },
    },
    actors: { approval: createApprovalMachine(options) },
  }).createMachine({
    id: 'claim',
    context: { escalations: 0, outcome: null },
    initial: 'awaiting',
    states: {
      awaiting: {
        invoke: {
          id: 'approval',
          src: 'approval',
          onDone: {
            target: 'booked',
            actions: assign({ outcome: ({ event }) => event.output }),
          },
        },
        on: {
          DECIDE: {
            actions: sendTo('approval', ({ event }) => ({
              type: 'APPROVE' as const,
              by: event.by,
              payload: event.payload,
            })),
          },
          ESCALATED: {
            actions: assign({
              escalations: ({ context }) => context.escalations + 1,
            }),
          },
        },
      },
      booked: { type: 'final' },
    },
  });
}

describe('approval machine invoked as a child', () => {
  it('approval - the parent gets ESCALATED through sendParent and the outcome as the child output', () => {
    const clock = createSimulatedClock(0);
    const actor = createActor(claimMachine(), { clock }).start();
    clock.advance(60_000);
    actor.send({ type: 'DECIDE', by: 'cy', payload: good });
    expect(actor.getSnapshot().value).toBe('booked');
    expect(actor.getSnapshot().context).toEqual({
      escalations: 1,
      outcome: {
        decision: 'approved',
        by: 'cy',
        payload: good,
        escalated: true,
      },
    });
  });

  it("approval - inside a parent entity, the child's timeouts fire while the parent is passivated", async () => {
    const clock = createSimulatedClock(0);
    const system = await createActorSystem({
      name: 't',
      entities: { claim: claimMachine() },
      store: memoryStore(),
      clock,
      logger,
      passivateAfterMs: 0,
    });
    const ref = system.entity('claim', 'c-1');
    await ref.send({ type: 'DECIDE', by: 'mallory', payload: good });
    expect(await ref.passivate()).toBe(true);
    clock.advance(60_000);
    await ref.waitFor((s) => s.context.escalations === 1, { timeoutMs: 1_000 });
    expect(await ref.passivate()).toBe(true);
    clock.advance(30_000);
    const s = await ref.waitFor((st) => st.status === 'done', {
      timeoutMs: 1_000,
    });
    expect(s.context.outcome).toEqual({ decision: 'expired', escalated: true });
    await system.stop();
  });
});

describe('approval machine as an entity', () => {
  it('approval - refusals and timers are durable; escalation and decision survive passivation and restart', async () => {
    const clock = createSimulatedClock(1_000_000);
    const store = memoryStore();
    const approval = createApprovalMachine(options);
    const boot = () =>
      createActorSystem({
        name: 't',
        entities: { approval },
        store,
        clock,
        logger,
        passivateAfterMs: 0,
      });
    let system = await boot();
    let ref = system.entity('approval', 'refund-7');
    const refused = await ref.send({
      type: 'APPROVE',
      by: 'ana',
      payload: { amount: 'lots' },
    });
    expect(refused.value).toBe('pending');
    expect(refused.context.lastError?.code).toBe('PAYLOAD_INVALID');
    expect(refused.context.lastError?.fields.sort()).toEqual([
      '/amount',
      '/reason',
    ]);
    expect(await ref.passivate()).toBe(true);
    clock.advance(60_000); // wakes the passivated entity at its deadline
    expect(
      (await ref.waitFor((s) => s.value === 'escalated', { timeoutMs: 1_000 }))
        .context.escalated,
    ).toBe(true);
    await system.stop();
    await store.open();
    clock.advance(10_000);
    system = await boot();
    ref = system.entity('approval', 'refund-7');
    const done = await ref.send({
      type: 'REJECT',
      by: 'cy',
      payload: { amount: 0, reason: 'duplicate claim' },
      at: clock.now(),
    });
    expect(done.status).toBe('done');
    expect(done.output).toEqual({
      decision: 'rejected',
      by: 'cy',
      payload: { amount: 0, reason: 'duplicate claim' },
      escalated: true,
    });
    expect(done.context.decidedAt).toBe(1_070_000);
    await system.stop();
  });
});

describe('approval machine graph and properties', () => {
  it('approval - every outcome is reachable: approved and rejected in each stage, expired through escalation', () => {
    const machine = createApprovalMachine(options);
    const events = {
      APPROVE: [
        { type: 'APPROVE', by: 'ana', payload: good },
        { type: 'APPROVE', by: 'cy', payload: good },
      ],
      REJECT: [
        { type: 'REJECT', by: 'bo', payload: good },
        { type: 'REJECT', by: 'cy', payload: good },
      ],
    };
    const paths = getTestPaths(machine, {
      events,
      kind: 'simple',
      toState: (s) => s.status === 'done',
      depthMax: 4,
    });
    const outcomes = paths.map(
      (p) =>
        `${(p.state.output as ApprovalOutput).decision}/${String((p.state.output as ApprovalOutput).escalated)}`,
    );
    expect(new Set(outcomes)).toEqual(
      new Set([
        'approved/false',
        'rejected/false',
        'approved/true',
        'rejected/true',
        'expired/true',
      ]),
    );
    const [expired] = paths
      .filter((p) => p.state.value === 'expired')
      .sort((a, b) => a.steps.length - b.steps.length);
    expect(expired!.steps.map((s) => s.delayMs)).toEqual([60_000, 30_000]);
  });

  it('approval - invariants hold and plain XState and the entity agree under generated decisions and faults', async () => {
    const validate = new Ajv().compile(refundForm);
    const payload = fc.oneof(
      fc.record({
        amount: fc.integer({ min: 0, max: 500 }),
        reason: fc.constantFrom('a', 'b'),
      }),
      fc.record({
        amount: fc.integer({ min: -10, max: 900 }),
        reason: fc.constantFrom('', 'x'),
      }),
      fc.constant({ reason: 'no amount' }),
      fc.constant(null),
    );
    const by = fc.constantFrom('ana', 'bo', 'cy', 'mallory');
    const report = await checkMachine(createApprovalMachine(options), {
      events: {
        APPROVE: fc.record({ type: fc.constant('APPROVE'), by, payload }),
        REJECT: fc.record({ type: fc.constant('REJECT'), by, payload }),
      },
      clockJumpsMs: [1, 29_999, 30_000, 59_999, 60_000],
      invariants: {
        'final exactly when decided': (s) =>
          (s.status === 'done') ===
          ((s.context as ApprovalContext).decision !== null),
        'escalated flag matches the stage': (s) =>
          s.value !== 'escalated' || (s.context as ApprovalContext).escalated,
        'only a person allowed in the stage decided': (s) => {
          const c = s.context as ApprovalContext;
          if (c.decision !== 'approved' && c.decision !== 'rejected')
            return c.decidedBy === null;
          return (c.escalated ? c.escalateTo : c.approvers).includes(
            c.decidedBy!,
          );
        },
        'a decided form satisfies the schema': (s) => {
          const c = s.context as ApprovalContext;
          return c.decision !== 'approved' && c.decision !== 'rejected'
            ? true
            : validate(c.payload);
        },
        'expiry comes only after escalation': (s) =>
          (s.context as ApprovalContext).decision !== 'expired' ||
          (s.context as ApprovalContext).escalated,
        'the output is the recorded decision': (s) => {
          if (s.status !== 'done') return s.output === undefined;
          const c = s.context as ApprovalContext;
          const o = s.output as ApprovalOutput;
          return (
            o.decision === c.decision &&
            o.escalated === c.escalated &&
            (o.by ?? null) === c.decidedBy
          );
        },
      },
    });
    expect(
      report.stepKinds.passivate + report.stepKinds.restart,
    ).toBeGreaterThan(0);
    expect(report.timerEvents).toBeGreaterThan(0);
  });
});

describe('approval README', () => {
  it('approval - the README diagram is what toMermaid draws today', () => {
    const readme = readFileSync(
      new URL('./README.md', import.meta.url),
      'utf8',
    );
    const block = /```mermaid\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block?.trimEnd()).toBe(
      toMermaid(
        createApprovalMachine({
          approvers: ['ana'],
          escalateTo: ['cy'],
          timeoutMs: 86_400_000,
          escalationTimeoutMs: 43_200_000,
          schema: true,
        }),
      ).trimEnd(),
    );
  });
});
