/**
 * The differential test of determinism (issue 3 item 8), run through a
 * 3-node cluster: fast-check generates event sequences for two entities,
 * sent through a client node; plain XState actors get the same events. The
 * run also passivates entities on their owners, advances the shared
 * simulated clock (delayed transitions fire on whichever node owns the
 * entity) and restarts nodes (graceful leave, then a new process with the
 * same node id joins: shards are handed over twice). After every step the
 * entity's value, context and status must equal the plain actor's.
 *
 * The three nodes run in this process (each with its own NATS connection
 * and store) so they can share the simulated clock; the fault tests with
 * real processes are in failover.test.ts. `SHARDCHART_PROPERTY_RUNS=N`
 * runs more.
 */
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createActor, type Actor, type SnapshotFrom } from 'xstate';
import {
  createActorSystem,
  createSimulatedClock,
  type ActorSystem,
  type EntityState,
} from 'shardchart';
import { natsStore } from 'shardchart/adapters/nats';
import {
  startNatsServer,
  type NatsServerHandle,
} from '../support/nats-server.js';
import {
  eventArb,
  machine,
  type DetMachine,
  type EventSpec,
} from '../system/det-machine.js';

const SHARDS = 8;
const RUNS =
  Number(process.env.SHARDCHART_PROPERTY_RUNS ?? '') > 0
    ? Math.max(1, Math.round(Number(process.env.SHARDCHART_PROPERTY_RUNS) / 10))
    : 4;
const START_MS = 1_000_000;

type Command =
  | { kind: 'send'; entity: number; event: EventSpec; withId: boolean }
  | { kind: 'advance'; ms: number }
  | { kind: 'passivate'; entity: number }
  | { kind: 'restartNode'; node: number };

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('send' as const),
      entity: fc.integer({ min: 0, max: 1 }),
      event: eventArb,
      withId: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      ms: fc.constantFrom(400, 1_000, 3_000),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('passivate' as const),
      entity: fc.integer({ min: 0, max: 1 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('restartNode' as const),
      node: fc.integer({ min: 0, max: 2 }),
    }),
  },
);

let server: NatsServerHandle;

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  await server?.stop();
});

interface View {
  value: unknown;
  context: unknown;
  status: string;
  output?: unknown;
}

function plainView(s: SnapshotFrom<DetMachine>): View {
  return s.status === 'done'
    ? { value: s.value, context: s.context, status: s.status, output: s.output }
    : { value: s.value, context: s.context, status: s.status };
}

function engineView(s: EntityState): View {
  return s.status === 'done'
    ? { value: s.value, context: s.context, status: s.status, output: s.output }
    : { value: s.value, context: s.context, status: s.status };
}

async function converge(nodes: (ActorSystem | undefined)[]): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const owned = nodes.reduce(
      (sum, n) => sum + (n?.stats().cluster?.ownedShards ?? 0),
      0,
    );
    if (owned === SHARDS) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the cluster did not converge');
}

let runNo = 0;

async function run(commands: Command[]): Promise<void> {
  const system = `det${runNo++}`;
  const clock = createSimulatedClock(START_MS);
  const logger = pino({ level: 'silent' });
  const startNode = (n: number, hostShards = true): Promise<ActorSystem> =>
    createActorSystem({
      name: system,
      entities: { det: machine },
      store: natsStore(),
      clock,
      logger,
      snapshotEvery: 3,
      cluster: {
        nats: { servers: server.url },
        nodeId: hostShards ? `n${n}` : 'client',
        shardCount: SHARDS,
        leaseTtlMs: 1_500,
        hostShards,
      },
    });
  const nodes: (ActorSystem | undefined)[] = await Promise.all(
    [0, 1, 2].map((n) => startNode(n)),
  );
  const client = await startNode(9, false);
  const ids = ['d-0', 'd-1'];
  const plain: Actor<DetMachine>[] = ids.map((id) => {
    const actor = createActor(machine, {
      input: { entityId: id, entityType: 'det' },
      clock,
    });
    actor.subscribe({ error: () => undefined });
    actor.start();
    return actor;
  });
  try {
    await converge(nodes);
    let sent = 0;
    for (const [step, command] of commands.entries()) {
      switch (command.kind) {
        case 'send': {
          const ref = client.entity('det', ids[command.entity] as string);
          const actor = plain[command.entity] as Actor<DetMachine>;
          const event = command.event;
          if (actor.getSnapshot().status === 'active') actor.send(event);
          try {
            await ref.send(
              event,
              command.withId ? { eventId: `e-${sent++}` } : {},
            );
          } catch (error) {
            // A stopped (final) entity refuses; the plain actor ignores.
            expect((error as { code?: string }).code, `step ${step}`).toBe(
              'ENTITY_STOPPED',
            );
          }
          break;
        }
        case 'advance':
          // Both sides share one clock: timers fire on the plain actors and on the owners.
          clock.advance(command.ms);
          break;
        case 'passivate':
          await client
            .entity('det', ids[command.entity] as string)
            .passivate({ force: true });
          break;
        case 'restartNode': {
          await nodes[command.node]?.stop();
          nodes[command.node] = undefined;
          await converge(nodes);
          nodes[command.node] = await startNode(command.node);
          await converge(nodes);
          break;
        }
      }
      for (const [i, id] of ids.entries()) {
        const expected = plainView(
          (plain[i] as Actor<DetMachine>).getSnapshot(),
        );
        // Timer firings are applied asynchronously on the owner: wait until its state catches up.
        let actual = engineView(await client.entity('det', id).snapshot());
        for (
          let tries = 0;
          tries < 40 && JSON.stringify(actual) !== JSON.stringify(expected);
          tries++
        ) {
          await new Promise((r) => setTimeout(r, 25));
          actual = engineView(await client.entity('det', id).snapshot());
        }
        expect(
          actual,
          `entity ${id} after step ${step} (${JSON.stringify(command)})`,
        ).toEqual(expected);
      }
    }
  } finally {
    for (const actor of plain) actor.stop();
    await client.stop();
    for (const n of nodes) await n?.stop();
  }
}

test('cluster determinism - entities on a 3-node cluster agree with plain XState under passivations, timers and node restarts', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(commandArb, { minLength: 4, maxLength: 14 }),
      async (commands) => {
        await run(commands);
      },
    ),
    { numRuns: RUNS, endOnFailure: true },
  );
}, 240_000);
