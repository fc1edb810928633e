/**
 * Waiting without a clock: macrotask turns as the unit of patience, so a
 * check never depends on wall-clock speed, and a hung engine call is
 * reported instead of stalling the test run.
 *
 * @internal
 */
import type { AnyActorRef } from 'xstate';

/** Macrotask turns an engine call may take before it counts as hung. */
const ANSWER_TURNS_MAX = 10_000;

export const macrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** An engine call that never answered. */
export class Hung extends Error {}

/** Awaits `p`, giving up after ANSWER_TURNS_MAX macrotask turns. */
export async function answer<T>(p: Promise<T>, what: string): Promise<T> {
  let settled = false;
  const tracked = p.finally(() => {
    settled = true;
  });
  // Most answers come within microtasks: the race returns them at once,
  // and the watchdog stops at its next turn.
  const watchdog = (async (): Promise<never> => {
    for (let turn = 0; turn < ANSWER_TURNS_MAX; turn++) {
      await macrotask();
      if (settled) return new Promise<never>(() => undefined);
    }
    throw new Hung(`${what} did not answer within ${ANSWER_TURNS_MAX} macrotask turns (hung)`);
  })();
  return Promise.race([tracked, watchdog]);
}

/**
 * Ids (paths from the root, `a/b`) of the invoked promises, callbacks and
 * observables still running in an actor tree. Child machines are walked,
 * not counted: they run until they finish, and only change on events.
 */
export function invocationsInFlight(snapshot: { children?: Record<string, AnyActorRef> }, prefix = ''): string[] {
  const out: string[] = [];
  for (const [id, child] of Object.entries(snapshot.children ?? {})) {
    const s = child.getSnapshot() as { status: string; value?: unknown; children?: Record<string, AnyActorRef> };
    if (s.status !== 'active') continue;
    if (!('value' in s)) out.push(`${prefix}${id}`);
    else out.push(...invocationsInFlight(s, `${prefix}${id}/`));
  }
  return out;
}
