/**
 * The one simulated clock both sides of a check share, so both see the
 * same time. It wraps the engine's simulated clock and remembers the
 * deadline of every pending timer, so a clock jump can stop at each
 * deadline and let the entity side catch up (an entity woken by its timer
 * activates asynchronously, and the timers it then schedules must start at
 * the deadline, as the plain actor's do, not at the end of the jump).
 *
 * @internal
 */
import { createSimulatedClock, type Clock } from '../system/clock.js';

interface SteppingClock extends Clock {
  /** Earliest pending deadline, or Infinity. */
  nextDeadline(): number;
  /** Moves time to `at` (not backwards), firing every timer due by then. */
  moveTo(at: number): void;
}

export function createSteppingClock(startMs: number): SteppingClock {
  const inner = createSimulatedClock(startMs);
  const deadlines = new Map<unknown, number>();
  return {
    now: () => inner.now(),
    setTimeout(fn, ms) {
      const handle: unknown = inner.setTimeout(() => {
        deadlines.delete(handle);
        fn();
      }, ms);
      deadlines.set(handle, inner.now() + Math.max(0, ms));
      return handle;
    },
    clearTimeout(handle) {
      deadlines.delete(handle);
      inner.clearTimeout(handle);
    },
    nextDeadline() {
      let next = Infinity;
      for (const at of deadlines.values()) if (at < next) next = at;
      return next;
    },
    moveTo(at) {
      inner.set(at);
    },
  };
}
