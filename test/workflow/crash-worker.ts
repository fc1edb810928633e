/**
 * The child program of the workflow crash test (`crash.test.ts`). It opens
 * an LMDB store and hosts the `ledger` workflow: debit, then credit, then
 * notify. Every action run appends one line to an effects file before it
 * returns, so the test can count runs across processes.
 *
 *   node --import tsx --conditions=shardchart-source \
 *     test/workflow/crash-worker.ts <dir> <effects-file> <start|resume> [kill-point]
 *
 * Kill points (the process SIGKILLs itself there, as a crash would):
 * - `debit-ran`: inside debit, after its effect is written and before it
 *   returns: the action ran, its result is not journaled;
 * - `credit-start`: as credit starts, before its effect: debit's result is
 *   journaled (an action starts only after the steps before it are).
 *
 * `start` sends the trigger; `resume` touches nothing and waits for the
 * workflow to wake by itself (the durable watch timer of the action that
 * was running) and finish. Output: `DONE <json output>` on success.
 */
import { appendFileSync, writeSync } from 'node:fs';

import { pino } from 'pino';

import { lmdbStore } from '../../adapters/lmdb/index.js';
import {
  createActionRegistry,
  createActorSystem,
  defineWorkflow,
} from '../../src/index.js';

export const WORKFLOW_ID = 'l-1';
/** Each action's timeout, and so the deadline of its watch timer. */
export const ACTION_TIMEOUT_MS = 1_000;

export interface EffectLine {
  name: string;
  key: string;
  params: unknown;
  pid: number;
}

const [dir, effectsFile, mode, killPoint] = process.argv.slice(2);
if (
  dir === undefined ||
  effectsFile === undefined ||
  (mode !== 'start' && mode !== 'resume')
) {
  throw new Error(
    'usage: crash-worker.ts <dir> <effects-file> <start|resume> [kill-point]',
  );
}

function effect(name: string, key: string, params: unknown): void {
  const line: EffectLine = { name, key, params, pid: process.pid };
  appendFileSync(effectsFile!, JSON.stringify(line) + '\n');
}

function die(): never {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}

const actions = createActionRegistry()
  .register('debit', {
    timeoutMs: ACTION_TIMEOUT_MS,
    run: (p: { account: string; amount: number }, actx) => {
      effect('debit', actx.idempotencyKey, p);
      if (killPoint === 'debit-ran') die();
      return { debitId: `d-${p.account}-${p.amount}` };
    },
  })
  .register('credit', {
    timeoutMs: ACTION_TIMEOUT_MS,
    run: (p: { account: string; amount: number }, actx) => {
      if (killPoint === 'credit-start') die();
      effect('credit', actx.idempotencyKey, p);
      return { creditId: `c-${p.account}-${p.amount}` };
    },
  })
  .register('notify', {
    timeoutMs: ACTION_TIMEOUT_MS,
    run: (p: { text: string }, actx) => {
      effect('notify', actx.idempotencyKey, p);
      return true;
    },
  });

const ledger = defineWorkflow(
  'ledger',
  async (ctx) => {
    ctx.setState('debiting');
    const debit = await ctx.actions.debit({ account: 'a', amount: 25 });
    ctx.data.set('debit', debit.debitId);
    ctx.setState('crediting');
    const credit = await ctx.actions.credit({ account: 'b', amount: 25 });
    ctx.setState('notifying');
    await ctx.actions.notify({
      text: `${debit.debitId} -> ${credit.creditId}`,
    });
    return { debit: debit.debitId, credit: credit.creditId };
  },
  { actions },
);

const system = await createActorSystem({
  name: 'crash',
  entities: { ledger },
  store: lmdbStore({ path: dir }),
  logger: pino({ level: 'warn' }, pino.destination(2)),
  passivateAfterMs: 0,
});
const ref = system.entity('ledger', WORKFLOW_ID);
if (mode === 'start') await ref.send({ type: 'TRANSFER' });
// The system's timers are unref'd (they never hold a process open alone);
// a real server has its listeners for that, this worker has this interval.
const keepAlive = setInterval(() => undefined, 1_000);
const done = await new Promise<unknown>((resolve) => {
  const off = ref.subscribe((s) => {
    if (s.status !== 'done') return;
    off();
    resolve(s.output);
  });
});
clearInterval(keepAlive);
writeSync(1, `DONE ${JSON.stringify(done)}\n`);
await system.stop();
