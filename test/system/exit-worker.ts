/**
 * The child program of `process-exit.test.ts`: a script as a user would
 * write one, whose only pending work is the system's (unref'd) timers.
 *
 *   node --import tsx --conditions=shardchart-source test/system/exit-worker.ts <mode>
 *
 * - `wait-timer`: awaits `waitFor` on a state an `after` timer reaches,
 *   then `stop()`; must print both lines and exit 0 (not 13);
 * - `idle`: never stops the system; once nothing is awaited the process
 *   must exit by itself (the system's timers never hold it open);
 * - `wait-after-stop`: a `waitFor` left pending across `stop()` must not
 *   hold the process open forever.
 */
import { writeSync } from 'node:fs';
import { pino } from 'pino';
import { setup } from 'xstate';
import { createActorSystem } from '../../src/index.js';

const mode = process.argv[2];
const machine = setup({}).createMachine({
  id: 'exit',
  initial: 'a',
  states: { a: { on: { GO: 'b' } }, b: { after: { 200: 'c' } }, c: {} },
});
const system = await createActorSystem({
  name: 'exit',
  entities: { machine },
  logger: pino({ level: 'error' }),
  passivateAfterMs: 60_000,
});
const ref = system.entity('machine', 'm-1');
await ref.send({ type: 'GO' });
if (mode === 'wait-timer') {
  const s = await ref.waitFor((st) => st.value === 'c', { timeoutMs: 10_000 });
  writeSync(1, `reached ${JSON.stringify(s.value)}\n`);
  await system.stop();
  writeSync(1, 'stopped\n');
} else if (mode === 'idle') {
  writeSync(1, 'idle\n');
} else if (mode === 'wait-after-stop') {
  void ref.waitFor(() => false).catch(() => undefined);
  await system.stop();
  writeSync(1, 'stopped\n');
} else {
  throw new Error(`unknown mode ${mode}`);
}
