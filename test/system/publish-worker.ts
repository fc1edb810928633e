/**
 * The child program of the publish crash test (`publish.test.ts`). It opens
 * an LMDB store, sends PAY events to a few orders and prints one line per
 * resolved send and one per publisher call. Its publisher never settles, so
 * every message stays undelivered until the test kills it with SIGKILL.
 *
 *   node --import tsx --conditions=shardchart-source \
 *     test/system/publish-worker.ts <dir>
 *
 * Output, written synchronously so a SIGKILL loses no line:
 *
 *   ACK <id> <seq>
 *   ATTEMPT <message id>
 *   SENT
 */
import { writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { pino } from 'pino';
import { assign, setup } from 'xstate';

import { createActorSystem, publish } from '../../src/index.js';
import { lmdbStore } from '../../adapters/lmdb/index.js';

export const ORDERS = ['o-1', 'o-2', 'o-3'];
export const PAYS_PER_ORDER = 3;
export const SYSTEM = 'shop';

/** An order that publishes when created and twice per payment. */
export const crashOrderMachine = setup({
  types: {
    context: {} as { id: string; paid: number },
    events: {} as { type: 'PAY'; amount: number },
    input: {} as { entityId: string },
  },
}).createMachine({
  context: ({ input }) => ({ id: input.entityId, paid: 0 }),
  entry: publish(({ context }) => ({
    subject: 'orders.created',
    data: { id: context.id },
  })),
  on: {
    PAY: {
      actions: [
        assign({ paid: ({ context, event }) => context.paid + event.amount }),
        publish(({ context }) => ({
          subject: 'orders.paid',
          data: { id: context.id, paid: context.paid },
        })),
        publish({ subject: 'audit.payments', data: { kind: 'pay' } }),
      ],
    },
  },
});

/** Ids of every message the orders publish, in delivery order per order. */
export function expectedIds(id: string): string[] {
  const ids = [`${SYSTEM}/order/${id}/0/0`];
  for (let seq = 1; seq <= PAYS_PER_ORDER; seq++) {
    ids.push(
      `${SYSTEM}/order/${id}/${seq}/0`,
      `${SYSTEM}/order/${id}/${seq}/1`,
    );
  }
  return ids;
}

function writeLine(line: string): void {
  const buf = Buffer.from(line + '\n');
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(1, buf, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

async function main(dir: string): Promise<void> {
  const system = await createActorSystem({
    name: SYSTEM,
    entities: { order: crashOrderMachine },
    store: lmdbStore({ path: dir }),
    snapshotEvery: 2,
    passivateAfterMs: 0,
    publishTimeoutMs: 600_000,
    publisher: (message) => {
      writeLine(`ATTEMPT ${message.id}`);
      return new Promise<void>(() => undefined);
    },
    logger: pino({ level: 'silent' }),
  });
  for (let i = 0; i < PAYS_PER_ORDER; i++) {
    await Promise.all(
      ORDERS.map(async (id) => {
        const r = await system
          .entity('order', id)
          .send({ type: 'PAY', amount: 10 });
        writeLine(`ACK ${id} ${r.seq}`);
      }),
    );
  }
  writeLine('SENT');
  // Stay up until killed.
  setInterval(() => undefined, 60_000);
}

const isMain =
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  main(process.argv[2] ?? '').catch((err: unknown) => {
    process.stderr.write(
      `publish-worker failed: ${String((err as Error)?.stack ?? err)}\n`,
    );
    process.exit(1);
  });
}
