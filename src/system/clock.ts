/**
 * Time is injected: nothing in the engine calls Date.now() or setTimeout
 * directly, so tests can run on a simulated clock and replay stays
 * deterministic. The shape is a superset of XState's `Clock`.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The wall clock. Timers are unref'd so they never keep the process alive alone. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, Math.max(0, Math.min(ms, 2_147_483_647)));
    t.unref?.();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * A clock for tests: time moves only when `advance` or `set` is called, and
 * due timers fire in deadline order.
 *
 * @example
 * ```ts
 * const clock = createSimulatedClock(0);
 * const system = await createActorSystem({ ..., clock });
 * clock.advance(60_000); // fires every timer due within the next minute
 * ```
 */
export interface SimulatedClock extends Clock {
  advance(ms: number): void;
  set(ms: number): void;
  /** Number of timers not yet fired. */
  pending(): number;
}

export function createSimulatedClock(startMs = 0): SimulatedClock {
  let now = startMs;
  let nextId = 1;
  const timers = new Map<number, { at: number; fn: () => void; order: number }>();
  const fireDue = (): void => {
    for (;;) {
      let due: [number, { at: number; fn: () => void; order: number }] | undefined;
      for (const entry of timers) {
        if (entry[1].at > now) continue;
        if (!due || entry[1].at < due[1].at || (entry[1].at === due[1].at && entry[1].order < due[1].order)) due = entry;
      }
      if (!due) return;
      timers.delete(due[0]);
      due[1].fn();
    }
  };
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { at: now + Math.max(0, ms), fn, order: id });
      // A timer already due (an overdue deadline re-armed at activation)
      // fires on the next macrotask, as it would on the wall clock, instead
      // of waiting for someone to advance time.
      if (ms <= 0) setImmediate(fireDue);
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    advance(ms) {
      const target = now + ms;
      // Step through deadlines so callbacks observe the time they were due.
      for (;;) {
        let next = Infinity;
        for (const t of timers.values()) if (t.at < next) next = t.at;
        if (next > target) break;
        now = Math.max(now, next);
        fireDue();
      }
      now = target;
    },
    set(ms) {
      this.advance(Math.max(0, ms - now));
    },
    pending: () => timers.size,
  };
}
