import { Actor, type AnyActorRef, type AnyMachineSnapshot, type AnyStateMachine, type ActorOptions } from 'xstate';
import { ConfigError } from '../errors.js';

/**
 * Capturing macrosteps from a live XState actor.
 *
 * XState's inspection API reports the same facts but allocates an event
 * object for every action and microstep, which cost a third of the
 * throughput in our benchmark. Instead the root actor of an entity is an
 * instance of a subclass of XState's Actor that overrides two methods:
 * - `_send(event)`: every event delivered to the root (sent by a caller, an
 *   invoke result, a delayed event, child output) passes here, in the order
 *   the root's mailbox will process it;
 * - `update(snapshot, event)`: called once per processed event with the
 *   macrostep's result.
 * Both are internal to XState 5; `createCapturedActor` checks they exist so
 * an upgrade that renames them fails at activation, loudly, instead of
 * silently journaling nothing. The test suite pins the behaviour.
 *
 * A subclass rather than wrappers set on each instance: the hooks cost one
 * field per entity instead of four closures and two bound functions, and
 * each call is a plain method call.
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

/** Actor, seen with the two internal methods overridden below. */
const InternalActor = Actor as unknown as new (logic: AnyStateMachine, options?: ActorOptions<AnyStateMachine>) => ActorInternals;

class CapturedActor extends InternalActor {
  /** Set right after construction; XState calls neither method before start(). */
  capture: CaptureHooks | undefined;

  override _send(event: unknown): void {
    this.capture!.delivered(event);
    super._send(event);
  }

  override update(snapshot: unknown, event: unknown): void {
    super.update(snapshot, event);
    this.capture!.step(event as { type: string }, snapshot as AnyMachineSnapshot);
  }
}

/** Creates the root actor of an entity, reporting to `hooks`. */
export function createCapturedActor(
  machine: AnyStateMachine,
  options: ActorOptions<AnyStateMachine>,
  hooks: CaptureHooks,
): AnyActorRef {
  const proto = Actor.prototype as unknown as Partial<ActorInternals>;
  if (typeof proto._send !== 'function' || typeof proto.update !== 'function') {
    throw new ConfigError(
      'This XState version does not expose Actor._send/update, which Shardchart hooks to journal macrosteps; install the xstate 5.x version listed in shardchart\'s package.json.',
    );
  }
  const actor = new CapturedActor(machine, options);
  actor.capture = hooks;
  return actor as unknown as AnyActorRef;
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
