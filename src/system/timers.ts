import type { AnyActorRef } from 'xstate';
import type { PendingTimer, EntityKey } from '../persistence/types.js';
import type { Clock } from './clock.js';
import type { TimerResume } from './types.js';

/**
 * Durable timers. XState keeps delayed events (`after`, `raise`/`sendTo`
 * with `delay`) in its system scheduler and does not restore them from a
 * persisted snapshot (xstate issue 4860). We watch the scheduler's table
 * after every macrostep, persist the pending set with its deadlines, and
 * re-arm it through the same scheduler when the entity is activated again,
 * so XState's own `cancel` and state-exit logic keep working on them.
 */

interface ScheduledEventLike {
  id: string;
  event: { type: string };
  delay: number;
  source: AnyActorRef;
  target: AnyActorRef;
}

interface SystemInternals {
  _snapshot?: { _scheduledEvents: Record<string, ScheduledEventLike> };
  getSnapshot(): { _scheduledEvents: Record<string, ScheduledEventLike> };
  scheduler: {
    schedule(source: AnyActorRef, target: AnyActorRef, event: unknown, delay: number, id: string): void;
    cancel(source: AnyActorRef, id: string): void;
  };
}

function scheduledEvents(root: AnyActorRef): Record<string, ScheduledEventLike> {
  const system = root.system as unknown as SystemInternals;
  // Reading the internal table avoids the copy getSnapshot() makes on every
  // macrostep; fall back to the public accessor if XState renames it.
  return system._snapshot?._scheduledEvents ?? system.getSnapshot()._scheduledEvents;
}

/** Actor path from the root: '' for the root, else child ids joined by '/'. */
export function actorPath(ref: AnyActorRef, root: AnyActorRef): string | undefined {
  const ids: string[] = [];
  let cur: AnyActorRef | undefined = ref;
  while (cur && cur !== root) {
    ids.push(cur.id);
    cur = (cur as unknown as { _parent?: AnyActorRef })._parent;
  }
  if (cur !== root) return undefined;
  return ids.reverse().join('/');
}

/** Resolves an actor path produced by {@link actorPath} against a live root. */
export function resolveActorPath(root: AnyActorRef, path: string): AnyActorRef | undefined {
  if (path === '') return root;
  let cur: AnyActorRef | undefined = root;
  for (const id of path.split('/')) {
    const children: Record<string, AnyActorRef> | undefined = (cur?.getSnapshot() as { children?: Record<string, AnyActorRef> } | undefined)?.children;
    cur = children?.[id];
    if (!cur) return undefined;
  }
  return cur;
}

/** A scheduled event of the actor system and the timer it stands for. */
interface TrackedTimer {
  source: ScheduledEventLike;
  timer: PendingTimer;
}

/**
 * Tracks the pending timers of one live entity. `sync()` is called after
 * each macrostep and reports whether the pending set changed.
 */
export class TimerTracker {
  /** Created on the first timer: most entities are idle without any. */
  private tracked: Map<string, TrackedTimer> | undefined;
  private static readonly none: readonly PendingTimer[] = [];
  private list: readonly PendingTimer[] = TimerTracker.none;

  constructor(
    private readonly root: AnyActorRef,
    private readonly clock: Clock,
  ) {}

  /** The current pending set, stable until the next change. */
  current(): readonly PendingTimer[] {
    return this.list;
  }

  /** Earliest deadline, or null when nothing is pending. */
  wakeAt(): number | null {
    let min: number | null = null;
    for (const t of this.list) if (min === null || t.dueAt < min) min = t.dueAt;
    return min;
  }

  sync(): boolean {
    const table = scheduledEvents(this.root);
    if (this.tracked === undefined && isEmpty(table)) return false;
    let changed = false;
    const tracked = (this.tracked ??= new Map<string, TrackedTimer>());
    for (const [key, entry] of tracked) {
      // A rescheduled event reuses the key but is a new object.
      if (table[key] !== entry.source) {
        tracked.delete(key);
        changed = true;
      }
    }
    for (const key in table) {
      if (tracked.has(key)) continue;
      const source = table[key]!;
      const sourcePath = actorPath(source.source, this.root);
      const targetPath = actorPath(source.target, this.root);
      // Timers aimed outside this entity (there is no such actor yet) are
      // not persisted; they could not be restored faithfully.
      if (sourcePath === undefined || targetPath === undefined) continue;
      tracked.set(key, {
        source,
        timer: {
          id: source.id,
          event: source.event,
          source: sourcePath,
          target: targetPath,
          delayMs: source.delay,
          dueAt: this.clock.now() + source.delay,
        },
      });
      changed = true;
    }
    if (changed) this.list = Array.from(tracked.values(), (e) => e.timer);
    if (tracked.size === 0) this.tracked = undefined;
    return changed;
  }

  /**
   * Re-arms persisted timers on a freshly started actor. Returns whether the
   * set differs from `timers` (deadlines moved by the resume mode, or a timer
   * whose actor no longer exists was dropped), and the overdue timers in
   * deadline order: the caller fires them with {@link fireOverdue} before
   * anything else reaches the entity, as they would have fired before it.
   */
  rearm(
    timers: readonly PendingTimer[],
    mode: TimerResume,
    stoppedAt: number,
    log: (msg: string, timer: PendingTimer) => void,
  ): { moved: boolean; overdue: OverdueTimer[] } {
    const system = this.root.system as unknown as SystemInternals;
    const now = this.clock.now();
    let moved = false;
    const overdue: OverdueTimer[] = [];
    for (const t of timers) {
      const source = resolveActorPath(this.root, t.source);
      const target = resolveActorPath(this.root, t.target);
      if (!source || !target) {
        log('dropped a pending timer whose actor no longer exists', t);
        moved = true;
        continue;
      }
      let delay: number;
      if (mode === 'restart') delay = t.delayMs;
      else if (mode === 'remaining') delay = Math.min(t.delayMs, Math.max(0, t.dueAt - stoppedAt));
      else delay = Math.max(0, t.dueAt - now);
      const dueAt = mode === 'deadline' ? t.dueAt : now + delay;
      if (dueAt !== t.dueAt) moved = true;
      system.scheduler.schedule(source, target, t.event, delay, t.id);
      const key = `${source.sessionId}.${t.id}`;
      const entry = scheduledEvents(this.root)[key];
      if (entry) (this.tracked ??= new Map()).set(key, { source: entry, timer: { ...t, dueAt } });
      if (entry && delay === 0) overdue.push({ key, entry, dueAt });
    }
    this.list = this.tracked ? Array.from(this.tracked.values(), (e) => e.timer) : TimerTracker.none;
    overdue.sort((a, b) => a.dueAt - b.dueAt);
    return { moved, overdue };
  }

  /**
   * Fires overdue timers now, in deadline order. Each is taken out of the
   * scheduler exactly as its timeout would (so one that an earlier timer's
   * transition cancelled is skipped) and delivered to its target.
   */
  fireOverdue(overdue: readonly OverdueTimer[]): void {
    const system = this.root.system as unknown as SystemInternals;
    for (const { key, entry } of overdue) {
      if (scheduledEvents(this.root)[key] !== entry) continue;
      system.scheduler.cancel(entry.source, entry.id);
      entry.target.send(entry.event);
    }
  }
}

function isEmpty(table: Record<string, unknown>): boolean {
  for (const _ in table) return false;
  return true;
}

/** A re-armed timer whose deadline has passed. */
export interface OverdueTimer {
  key: string;
  entry: ScheduledEventLike;
  dueAt: number;
}

/** A min-heap of wake-ups for entities that are not live but have timers due. */
export class WakeupQueue {
  private readonly heap: { at: number; key: EntityKey; k: string }[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(at: number, key: EntityKey, k: string): void {
    const h = this.heap;
    h.push({ at, key, k });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.at <= h[i]!.at) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  peek(): { at: number; key: EntityKey; k: string } | undefined {
    return this.heap[0];
  }

  pop(): { at: number; key: EntityKey; k: string } | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.at < h[m]!.at) m = l;
        if (r < h.length && h[r]!.at < h[m]!.at) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}
