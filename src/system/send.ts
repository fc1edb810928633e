import type { EntityState } from './types.js';

/** An event as the engine handles it: a plain object with a string type. */
export type AnyEvent = { type: string; [key: string]: unknown };

/**
 * One caller waiting on an entity: a send on its way from the mailbox
 * through the live actor to durability, or a read waiting for durability.
 *
 * A send is the hot path of the engine, so one object plays every role it
 * has (mailbox item, the "event being applied" record, durability waiter)
 * and links itself into whichever queue holds it. A send then allocates
 * this object, its promise and its answer, and no closures, queue nodes or
 * arrays.
 */
export class Send {
  /** The next caller in the queue that holds this one. */
  next: Send | undefined = undefined;
  /** The caller is answered once everything up to this seq is durable. */
  seq = 0;
  /** The answer, set when the event is applied (or the read is taken). */
  state: EntityState | undefined = undefined;
  /** While applying: whether the event changed the snapshot. */
  changed = false;
  /** While applying: whether the event took a transition (maybe actions only). */
  handled = false;
  /** hashEventId(eventId), computed once for the dedupe check and the window. */
  idHash = 0;
  /** Clock time the event was applied at (the journal entry's `at`). */
  at = 0;
  /** What the caller awaits. */
  readonly promise: Promise<EntityState>;
  readonly resolve: (state: EntityState) => void;
  readonly reject: (error: Error) => void;

  constructor(
    /** Undefined for a read. */
    readonly event: AnyEvent | undefined,
    readonly eventId: string | undefined,
  ) {
    // The executor runs synchronously inside `new Promise`, so the slots it
    // fills are read back before anything else can run.
    this.promise = new Promise<EntityState>(capture);
    this.resolve = resolveSlot!;
    this.reject = rejectSlot!;
    resolveSlot = undefined;
    rejectSlot = undefined;
  }
}

let resolveSlot: ((state: EntityState) => void) | undefined;
let rejectSlot: ((error: Error) => void) | undefined;

/** A module-level executor, so no closure is created per send. */
function capture(resolve: (state: EntityState) => void, reject: (error: Error) => void): void {
  resolveSlot = resolve;
  rejectSlot = reject;
}

/** A FIFO of sends linked through `Send.next`. */
export class SendQueue {
  head: Send | undefined = undefined;
  tail: Send | undefined = undefined;
  length = 0;

  push(send: Send): void {
    send.next = undefined;
    if (this.tail === undefined) this.head = send;
    else this.tail.next = send;
    this.tail = send;
    this.length++;
  }

  shift(): Send | undefined {
    const send = this.head;
    if (send === undefined) return undefined;
    this.head = send.next;
    if (this.head === undefined) this.tail = undefined;
    send.next = undefined;
    this.length--;
    return send;
  }

  /** Empties the queue and returns its first send; walk the rest with `next`. */
  takeAll(): Send | undefined {
    const head = this.head;
    this.head = undefined;
    this.tail = undefined;
    this.length = 0;
    return head;
  }
}

/** Rejects `first` and every send linked after it with `err`. */
export function rejectAll(first: Send | undefined, err: Error): void {
  for (let s = first; s !== undefined; ) {
    const next = s.next;
    s.next = undefined;
    s.reject(err);
    s = next;
  }
}
