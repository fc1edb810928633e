/**
 * The clock of the cluster protocol. Leases and liveness are judged on one
 * machine's own elapsed time, never by comparing timestamps across
 * machines, so the clock must not jump when NTP or an operator sets the
 * wall clock: `now()` reads `performance.now()` (monotonic, milliseconds
 * since process start).
 */
import type { Clock } from '../system/clock.js';

/**
 * A monotonic {@link Clock}: `now()` never goes backwards and ignores wall
 * clock changes. Timers are unref'd, as with the system clock.
 *
 * @example
 * ```ts
 * createCoordinator({ kv, nodeId: 'n1', shardCount: 256, clock: monotonicClock });
 * ```
 */
export const monotonicClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const timer = setTimeout(fn, Math.max(0, Math.min(ms, 2_147_483_647)));
    timer.unref?.();
    return timer;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
