import { Actor, type AnyActorRef, type AnyMachineSnapshot, type AnyStateMachine, type ActorOptions } from 'xstate';
import { ConfigError } from '../errors.js';
import { publishEventType, type PublishEvent } from './publish.js';

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
  /** Resolves once every event the root processed so far is durable (rejects if the entity fails first). */
  whenDurable(): Promise<unknown>;
  /**
   * The root ran a `publish` action while processing the current event
   * (XState runs emits inside `update`, before `step`). `message` is
   * unchecked.
   */
  published(message: unknown): void;
}

/** The part of XState's actor scope the root's emits go through. */
interface ScopeInternals {
  readonly self: unknown;
  emit: (this: ScopeInternals, event: { type: string }) => void;
}

interface ActorInternals {
  _send(event: unknown): void;
  update(snapshot: unknown, event: unknown): void;
  readonly _actorScope: ScopeInternals;
}

/** Actor, seen with the two internal methods overridden below. */
const InternalActor = Actor as unknown as new (logic: AnyStateMachine, options?: ActorOptions<AnyStateMachine>) => ActorInternals;

class CapturedActor extends InternalActor {
  /** Set right after construction; XState calls neither method before start(). */
  capture: CaptureHooks | undefined;
  /** XState's own emit of this actor, for every emitted event but publishes. */
  emitOther: ((this: ScopeInternals, event: { type: string }) => void) | undefined;

  override _send(event: unknown): void {
    this.capture!.delivered(event);
    super._send(event);
  }

  override update(snapshot: unknown, event: unknown): void {
    super.update(snapshot, event);
    this.capture!.step(event as { type: string }, snapshot as AnyMachineSnapshot);
  }
}

/**
 * Replaces the root's `actorScope.emit`. XState calls it as a method of the
 * scope (`actorScope.emit(event)`, in the deferred part of `emit`), whose
 * `self` is the actor. One shared function instead of an `actor.on`
 * listener saves a Map entry, a Set and a closure per live entity (about
 * 300 B, 5% of its heap). It never throws: the host only records the message.
 */
function emitCaptured(this: ScopeInternals, event: { type: string; message?: unknown }): void {
  const actor = this.self as CapturedActor;
  if (event.type === publishEventType) actor.capture!.published((event as PublishEvent).message);
  else actor.emitOther!.call(this, event);
}

/**
 * For actor logic that must not start an effect before the state leading to
 * it is durable (workflow actions): resolves once every event the entity's
 * root actor `actor` processed so far is in the store. Undefined for an
 * actor the system does not host (a plain `createActor`), where there is
 * nothing to wait for.
 */
export function whenDurable(actor: AnyActorRef): Promise<unknown> | undefined {
  return actor instanceof CapturedActor ? actor.capture!.whenDurable() : undefined;
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
  const scope = actor._actorScope as ScopeInternals | undefined;
  if (scope === undefined || scope.self !== actor || typeof scope.emit !== 'function') {
    throw new ConfigError(
      'This XState version does not expose the actor scope\'s emit, which Shardchart hooks to journal published messages; install the xstate 5.x version listed in shardchart\'s package.json.',
    );
  }
  actor.emitOther = scope.emit;
  scope.emit = emitCaptured;
  return actor as unknown as AnyActorRef;
}

/**
 * Watches child machines so a change inside a child (which no root event
 * carries) leads to a snapshot. Promise and callback children are skipped:
 * their results reach the root as events and are journaled there.
 */
export class ChildWatcher {
  private readonly watched = new WeakSet<AnyActorRef>();

  constructor(
    private readonly onChange: () => void,
    /** A child machine ran `publish`, which only the root can journal. */
    private readonly onPublish?: (childId: string) => void,
  ) {}

  scan(snapshot: { children?: Record<string, AnyActorRef> }): void {
    const children = snapshot.children;
    if (!children) return;
    for (const id in children) {
      const child = children[id]!;
      if (this.watched.has(child)) continue;
      const s = child.getSnapshot() as { value?: unknown; children?: Record<string, AnyActorRef> } | undefined;
      if (!s || !('value' in s)) continue;
      this.watched.add(child);
      const onPublish = this.onPublish;
      if (onPublish !== undefined) child.on(publishEventType, () => onPublish(child.id));
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
