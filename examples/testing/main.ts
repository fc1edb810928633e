import fc from 'fast-check';
import { isShardchartError } from 'shardchart';
import { checkMachine, getTestPaths, type CheckStep } from 'shardchart/testing';
import { createCart, totalMatchesItems } from './cart.js';

const cart = createCart();

// 1. Paths through the graph: the shortest path to every state (value and
//    context) within three steps.
const paths = getTestPaths(cart, {
  events: { ADD: [{ type: 'ADD', sku: 'tea' }], REMOVE: [{ type: 'REMOVE', sku: 'tea' }] },
  depthMax: 3,
});
for (const p of paths) console.log(p.description);

// 2. The differential check: random event sequences with passivations,
//    restarts and clock jumps, as plain XState and as a Shardchart entity.
const events = {
  ADD: fc.constantFrom('tea', 'mug').map((sku) => ({ type: 'ADD', sku })),
  REMOVE: fc.constantFrom('tea', 'mug').map((sku) => ({ type: 'REMOVE', sku })),
  CHECKOUT: fc.constant({ type: 'CHECKOUT' }),
  PAY: fc.constant({ type: 'PAY' }),
  BACK: fc.constant({ type: 'BACK' }),
};
const invariants = { 'total matches the items': totalMatchesItems };
const report = await checkMachine(cart, { events, invariants, runs: 25 });
console.log(`cart: ${report.runs} runs passed (${report.timerEvents} checkout timeouts on the simulated clock)`);

// 3. The same check on a cart that forgets to lower the total on REMOVE.
try {
  await checkMachine(createCart({ forgetTotalOnRemove: true }), { events, invariants, runs: 100 });
  console.log('buggy cart: not caught');
} catch (err) {
  if (!isShardchartError(err, 'CHECK_FAILED')) throw err;
  const steps = (err.details as { steps: CheckStep[] }).steps;
  console.log(`buggy cart: caught after ${steps.length} steps: ${steps.map((s) => (s.kind === 'send' ? s.event.type : s.kind)).join(', ')}`);
}
