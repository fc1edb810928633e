import type { AnyActorRef, AnyMachineSnapshot } from 'xstate';
import { ConfigError } from '../errors.js';

/**
 * Capturing macrosteps from a live XState actor.
 *
 * XState's inspection API reports the same facts but allocates an event
 * object for every action and microstep, which cost a third of the
 * throughput in our benchmark. Instead we hook two methods on the root actor
 * instance only:
 * - `_send(event)`: every event delivered to the root (sent by a caller, an
 *   invoke result, a delayed event, child output) passes here, in the order
 *   the root's mailbox will process it;
 * - `update(snapshot, event)`: called once per processed event with the
 *   macrostep's result.
 * Both are internal to XState 5; `attachCapture` checks they exist so an
 * upgrade that renames them fails at activation, loudly, instead of silently
 * journaling nothing. The test suite pins the behaviour.
 */

export interface CaptureHooks {
  /** An event was delivered to the root's mailbox. */
  delivered(event: unknown): void;
  /** The root finished processing `event`, producing `snapshot`. */
  step(event: { type: string; [key: string]: unknown }, snapshot: AnyMachineSnapshot): void;
}

interface ActorInternals {
  _send(event: unknown): void;
  update(snapshot: unknown, event: unknown): void;
}

export function attachCapture(actor: AnyActorRef, hooks: CaptureHooks): void {
  const internals = actor as unknown as ActorInternals;
  if (typeof internals._send !== 'function' || typeof internals.update !== 'function') {
    throw new ConfigError(
      'This XState version does not expose Actor._send/update, which Shardchart hooks to journal macrosteps; install the xstate 5.x version listed in shardchart\'s package.json.',
    );
  }
  // Bound to the instance now; the wrappers below replace them on it.
  const send = internals._send.bind(actor);
  const update = internals.update.bind(actor);
  internals._send = (event: unknown) => {
    hooks.delivered(event);
    send(event);
  };
  internals.update = (snapshot: unknown, event: unknown) => {
    update(snapshot, event);
    hooks.step(event as { type: string }, snapshot as AnyMachineSnapshot);
  };
}

/**
 * Watches child machines so a change inside a child (which no root event
 * carries) leads to a snapshot. Promise and callback children are skipped:
 * their results reach the root as events and are journaled there.
 */
export class ChildWatcher {
  private readonly watched = new WeakSet<AnyActorRef>();

  constructor(private readonly onChange: () => void) {}

  scan(snapshot: { children?: Record<string, AnyActorRef> }): void {
    const children = snapshot.children;
    if (!children) return;
    for (const id in children) {
      const child = children[id]!;
      if (this.watched.has(child)) continue;
      const s = child.getSnapshot() as { value?: unknown; children?: Record<string, AnyActorRef> } | undefined;
      if (!s || !('value' in s)) continue;
      this.watched.add(child);
      child.subscribe({
        next: (next: { children?: Record<string, AnyActorRef> }) => {
          this.scan(next);
          this.onChange();
        },
        // Child errors reach the root as error events; an error listener
        // here keeps XState from reporting them as unhandled.
        error: () => undefined,
      });
      this.scan(s);
    }
  }
}
