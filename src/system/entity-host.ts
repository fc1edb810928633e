import type { AnyActorRef, AnyMachineSnapshot } from 'xstate';
import { ChildWatcher, createCapturedActor, type CaptureHooks } from './capture.js';
import { ShardchartError, type TimeoutError } from '../errors.js';
import { plainDataProblem } from '../codec/plain-data.js';
import { recover } from '../persistence/recovery.js';
import type { EntityKey, JournalEntry, OutboxMessage, StoredSnapshot } from '../persistence/types.js';
import {
  contextNotSerializable, entityStopped, errorMessage, eventFailed, eventRejected, failedBeforeDurable,
  internalEventNotSerializable, mailboxFull, parked, sendTimedOut, startFailed,
} from './entity-errors.js';
import { eventIdsOf, hashEventId, hasEventId, rememberEventId, toEventIdWindow, type EventIdWindow } from './dedupe.js';
import { JournalWriter } from './journal-writer.js';
import { rejectAll, Send, SendQueue, type AnyEvent } from './send.js';
import { hasChildActors, hasInvocationInFlight, isHandled, toEntityState } from './entity-state.js';
import { TimerTracker } from './timers.js';
import { publishInvalid, toOutboxMessage } from './publish.js';
import { Outbox, outboxFull } from './outbox.js';
import type { EntityRuntime, ResolvedEntityType } from './runtime.js';
import type { EntityState } from './types.js';

type Phase =
  | 'idle' // not activated yet, or passivated
  | 'activating'
  | 'live'
  | 'restarting' // failed; waiting for durability and backoff
  | 'parked' // failed attemptsMax times; refuses sends
  | 'passivating';

/**
 * The host of one entity: its mailbox, its live XState actor and the path of
 * every macrostep into the journal.
 *
 * Every event the root actor processes — sent by a caller or produced inside
 * (invoke done/error, delayed events, child output) — is captured (see
 * capture.ts) as one journal entry, so a pure replay reproduces it.
 * Events are applied one at a time in arrival order; the next event may be
 * applied while the previous entries are still being written (pipelining),
 * but no caller is answered before its entries are durable.
 */
export class EntityHost implements CaptureHooks {
  phase: Phase = 'idle';
  /** Last seq applied to the live actor. */
  seq = 0;
  private actor: AnyActorRef | undefined;
  private timers: TimerTracker | undefined;
  private lastSnap: AnyMachineSnapshot | undefined;
  /** The dedupe window (see dedupe.ts). */
  private eventIds: EventIdWindow = [];
  /**
   * Sends not yet applied (while activating, restarting or passivating).
   * Created when first needed: a live entity applies sends as they come.
   */
  private mailbox: SendQueue | undefined;
  private readonly writer: JournalWriter;
  private capturing = false;
  private applying = false;
  /**
   * Events delivered to the root actor and not yet processed, oldest first
   * (the first one is the event being processed). Almost always one event:
   * it is kept in `rootFirst`, and only further ones go to `rootMore`.
   */
  private rootFirst: unknown = undefined;
  private rootMore: unknown[] | undefined;
  /** Created on the first child actor seen: most entities never have one. */
  private children: ChildWatcher | undefined;
  /** The send being applied right now. */
  private current: Send | undefined;
  private failure: { error: unknown; event: AnyEvent | undefined; eventId?: string | undefined } | undefined;
  private failures = 0;
  private activation: Promise<void> | undefined;
  private backoffTimer: unknown;
  private idleWaiters: (() => void)[] = [];
  lastActive = 0;
  /** Links in the system's recency list (see recency-list.ts). */
  older: EntityHost | undefined = undefined;
  newer: EntityHost | undefined = undefined;
  /**
   * Set once the system has let go of this host after passivation. A caller
   * that still holds it (across an await) must not bring it back to life:
   * that would make a second actor beside the one a new send creates.
   * Every entry point hands over to the entity's current host instead.
   */
  dropped = false;
  /** Set by `discard`: the node lost the shard; nothing may revive this host. */
  private discarded = false;
  /** What `publish` actions gave while the root processed the current event. */
  private publishedNow: unknown[] | undefined;
  /** Published messages waiting for delivery; created with the first one (see publish.ts). */
  private outbox: Outbox | undefined;

  constructor(
    readonly key: EntityKey,
    readonly k: string,
    private readonly def: ResolvedEntityType,
    private readonly rt: EntityRuntime,
  ) {
    // The host is the writer's source: methods on the prototype instead of
    // closures per entity keep a live entity's heap small.
    this.writer = new JournalWriter(key, k, rt, this);
  }

  /** @internal WriterSource */
  snapshotForWrite(): StoredSnapshot | undefined {
    return this.actor ? this.takeSnapshot() : undefined;
  }

  /** @internal WriterSource */
  wakeAtForWrite(): number | null {
    const timers = this.timers?.wakeAt() ?? null;
    if (this.outbox === undefined) return timers;
    const due = this.outbox.indexDeadline(this.rt.clock.now());
    return due === null ? timers : timers === null ? due : Math.min(timers, due);
  }

  /** @internal WriterSource */
  writeDurable(seq: number, withSnapshot: boolean): void {
    if (this.outbox !== undefined) this.outbox.durable(seq, withSnapshot);
  }

  /** @internal WriterSource */
  writeFailed(error: Error): void {
    this.failure ??= { error, event: undefined };
    this.onFailure(false);
  }

  /** @internal WriterSource */
  writerSettled(): void {
    this.notifyIdle();
  }

  /** Last seq known durable in the store. */
  get durableSeq(): number {
    return this.writer.durableSeq;
  }

  // ---------------------------------------------------------------- sending

  /** Queues an event; resolves after it (and everything before it) is durable. */
  send(event: AnyEvent, eventId: string | undefined): Promise<EntityState> {
    if (this.dropped) return this.rt.successor(this).send(event, eventId);
    if (this.phase === 'parked') return Promise.reject(this.parkedError());
    if (this.queuedCount() + this.writer.waiting >= this.rt.options.mailboxDepthMax) {
      return Promise.reject(mailboxFull(this.key, this.rt.options.mailboxDepthMax));
    }
    if (this.outbox !== undefined && this.outbox.size >= this.rt.publishing.options.pendingMax) {
      return Promise.reject(outboxFull(this.key, this.rt.publishing.options.pendingMax));
    }
    const send = new Send(event, eventId);
    const now = this.rt.clock.now();
    this.markActive(now);
    if (this.phase === 'live' && !this.applying && this.queuedCount() === 0) {
      // Live and idle, the common case: apply now, without queuing.
      this.applying = true;
      try {
        this.apply(send, now);
        this.applyQueued();
      } finally {
        this.applying = false;
      }
      this.writer.schedule();
    } else {
      (this.mailbox ??= new SendQueue()).push(send);
      this.drain();
    }
    return send.promise;
  }

  private queuedCount(): number {
    return this.mailbox === undefined ? 0 : this.mailbox.length;
  }

  /**
   * Records activity at `now` for the idle sweep and eviction. The host
   * moves in the recency list at most once per recencyStepMs: on a busy
   * entity that saves a list move per send (its neighbours are rarely in
   * cache), and `lastActive` moves with it, so list order stays
   * `lastActive` order. An idle timer can then expire up to that step early.
   */
  private markActive(now: number): void {
    if (now - this.lastActive < this.rt.recencyStepMs) return;
    this.lastActive = now;
    this.rt.touch(this);
  }

  /** The current durable state, activating the entity if needed. */
  async read(): Promise<EntityState> {
    for (;;) {
      if (this.dropped) return this.rt.successor(this).read();
      if (this.phase === 'parked') throw this.parkedError();
      if (this.phase === 'live' && this.lastSnap) {
        const state = this.stateOf(this.lastSnap, false);
        if (this.durableSeq >= this.seq) return state;
        const read = new Send(undefined, undefined);
        read.seq = this.seq;
        read.state = state;
        this.writer.wait(read);
        this.writer.schedule();
        return read.promise;
      }
      await this.ensureActive();
    }
  }

  /**
   * @internal CaptureHooks: resolves once every event applied so far is
   * durable; rejects with the write error if the entity fails first. Actor
   * logic uses it to start an effect only after the state that asked for it
   * survives a crash (see workflow actions).
   */
  whenDurable(): Promise<unknown> {
    if (this.durableSeq >= this.seq) return Promise.resolve();
    const barrier = new Send(undefined, undefined);
    barrier.seq = this.seq;
    this.writer.wait(barrier);
    this.writer.schedule();
    return barrier.promise;
  }

  private drain(): void {
    if (this.applying) return;
    if (this.phase !== 'live') {
      if (this.phase === 'idle' && this.queuedCount() > 0) void this.ensureActive().catch(() => undefined);
      return;
    }
    this.applying = true;
    try {
      this.applyQueued();
    } finally {
      this.applying = false;
    }
    this.writer.schedule();
  }

  /** Applies queued sends in order while the entity stays live. */
  private applyQueued(): void {
    const mailbox = this.mailbox;
    if (mailbox === undefined || mailbox.length === 0) return;
    const now = this.rt.clock.now();
    while (mailbox.length > 0 && this.phase === 'live') this.apply(mailbox.shift()!, now);
  }

  /** Applies one send at clock time `now` (the `at` of what it journals). */
  private apply(send: Send, now: number): void {
    const actor = this.actor!;
    const snapBefore = this.lastSnap!;
    const event = send.event!;
    // Dedupe first: a retry of the event that finished the entity must be
    // answered as a duplicate, not refused.
    if (send.eventId !== undefined) {
      send.idHash = hashEventId(send.eventId);
      if (hasEventId(this.eventIds, send.eventId, send.idHash)) {
        this.rt.stats.duplicates++;
        send.seq = this.seq;
        send.state = this.stateOf(snapBefore, false, true);
        this.writer.wait(send);
        return;
      }
    }
    if (snapBefore.status !== 'active') {
      send.reject(entityStopped(this.key, snapBefore.value, this.seq));
      return;
    }
    this.current = send;
    send.at = now;
    try {
      actor.send(event);
    } catch (error) {
      // XState reports errors through observers; a throw here is a bug in
      // the inspection path or XState itself. Treat it as a failed event.
      this.failure ??= { error, event };
    }
    this.current = undefined;
    if (this.failure && this.failure.event === event) {
      this.failure.eventId = send.eventId;
      send.reject(eventFailed(this.key, event, send.eventId, this.failure.error));
      this.onFailure();
      return;
    }
    if (!send.handled && !send.changed && this.def.rejectUnhandled) {
      send.reject(eventRejected(this.key, event, snapBefore.value));
    } else {
      send.seq = this.seq;
      send.state = this.stateOf(this.lastSnap!, send.changed);
      this.writer.wait(send);
    }
    if (this.failure) this.onFailure();
  }

  // -------------------------------------------------------------- capturing

  /** @internal CaptureHooks: the root actor processed `event`. */
  step(event: AnyEvent, snapshot: AnyMachineSnapshot): void {
    // The event processed is almost always the first queued: shift() then
    // avoids the array splice() would allocate.
    this.processed(event);
    // Published while processing `event`; the initial state's are taken by activate().
    const published = this.publishedNow;
    if (published !== undefined && event.type !== 'xstate.init') this.publishedNow = undefined;
    const prev = this.lastSnap;
    if (!this.capturing || this.failure || event.type === 'xstate.init' || prev === undefined) {
      if (this.capturing && !this.failure) {
        this.lastSnap = snapshot;
        this.scanChildren(snapshot);
      }
      return;
    }
    const changed = snapshot !== prev;
    // An unchanged snapshot may still come from a taken transition (actions
    // only); asking the machine again only on this rare path keeps the hot
    // path free of a second guard evaluation.
    const handled = changed || published !== undefined || isHandled(prev, event);
    if (changed && snapshot.context !== prev.context) {
      const problem = plainDataProblem(snapshot.context, this.rt.contextLimits);
      if (problem) {
        this.fail(event, contextNotSerializable(this.key, event, problem));
        return;
      }
    }
    const outbox = published === undefined ? undefined : this.toOutbox(event, published);
    if (outbox === null) return;
    const timersChanged = this.timers!.sync();
    this.lastSnap = snapshot;
    if (snapshot.children !== prev.children) this.scanChildren(snapshot);
    const current = this.current !== undefined && this.current.event === event ? this.current : undefined;
    const isCurrent = current !== undefined;
    if (current !== undefined) {
      current.changed ||= changed;
      current.handled ||= handled;
    } else if (changed || handled) {
      // An event produced inside the entity (invoke result, delayed event,
      // child output): it must be plain data, or replay could not rebuild it.
      const problem = plainDataProblem(event, this.rt.eventLimits);
      if (problem) {
        this.fail(event, internalEventNotSerializable(this.key, event, problem));
        return;
      }
    }
    if (!changed && !handled && !timersChanged) return;
    const seq = ++this.seq;
    const eventId = current?.eventId;
    // A caller's send was stamped when applied; an internal event is now.
    const at = current !== undefined ? current.at : this.rt.clock.now();
    const entry: JournalEntry =
      eventId === undefined
        ? timersChanged
          ? { seq, at, event, timers: this.timers!.current() }
          : { seq, at, event }
        : timersChanged
          ? { seq, at, event, eventId, timers: this.timers!.current() }
          : { seq, at, event, eventId };
    this.writer.append(
      outbox === undefined ? entry : { ...entry, outbox },
      this.rt.hasListeners(this.k) ? this.stateOf(snapshot, changed) : undefined,
    );
    if (outbox !== undefined) this.addToOutbox(seq, at, outbox);
    if (timersChanged) this.writer.wakeDirty = true;
    if (eventId !== undefined) this.eventIds = rememberEventId(this.eventIds, eventId, current!.idHash, this.rt.options.dedupeWindow);
    this.rt.stats.eventsApplied++;
    // A successfully applied event ends a run of failures.
    this.failures = 0;
    if (!isCurrent) {
      this.markActive(at);
      this.writer.schedule();
    }
  }

  /** @internal CaptureHooks: the root ran a `publish` action. */
  published(message: unknown): void {
    if (this.publishedNow === undefined) this.publishedNow = [message];
    else this.publishedNow.push(message);
  }

  /**
   * Checks what the `publish` actions of one step gave. A bad message fails
   * the event (null), like a throwing action: nothing of the step is kept.
   */
  private toOutbox(event: AnyEvent | undefined, published: unknown[]): OutboxMessage[] | null {
    if (published.length > this.rt.publishing.options.pendingMax) {
      this.fail(event, publishInvalid(this.key, event, `one step published ${published.length} messages, more than publishPendingMax (${this.rt.publishing.options.pendingMax}).`));
      return null;
    }
    const messages: OutboxMessage[] = [];
    for (const input of published) {
      const m = toOutboxMessage(input, this.rt.eventLimits);
      if (typeof m === 'string') {
        this.fail(event, publishInvalid(this.key, event, m));
        return null;
      }
      messages.push(m);
    }
    return messages;
  }

  /** Queues the messages of entry `seq` for delivery once it is durable. */
  private addToOutbox(seq: number, at: number, messages: OutboxMessage[]): void {
    const outbox = (this.outbox ??= new Outbox(this.key, this.rt.publishing));
    outbox.add(seq, at, messages);
    // The write that makes them durable must mark the timer index due, so a
    // restart delivers them even if nothing else wakes the entity.
    if (!outbox.indexed) this.writer.wakeDirty = true;
  }

  /** @internal CaptureHooks: an event was delivered to the root actor's mailbox. */
  delivered(event: unknown): void {
    if (!this.capturing) return;
    if (this.rootFirst === undefined) this.rootFirst = event;
    else (this.rootMore ??= []).push(event);
  }

  /** The root actor processed `event`: it and anything before it leave the queue. */
  private processed(event: unknown): void {
    if (this.rootFirst === event) {
      this.rootFirst = this.rootMore?.shift();
      return;
    }
    const more = this.rootMore;
    const i = more === undefined ? -1 : more.indexOf(event);
    if (i < 0) return;
    more!.splice(0, i + 1);
    this.rootFirst = more!.shift();
  }

  private scanChildren(snapshot: AnyMachineSnapshot): void {
    if (this.children === undefined) {
      let any = false;
      for (const _ in snapshot.children) {
        any = true;
        break;
      }
      if (!any) return;
      this.children = new ChildWatcher(
        () => this.onChildStep(),
        (childId) =>
          this.rt.log.error(
            { type: this.key.type, id: this.key.id, child: childId },
            'a child machine ran publish(); only the entity machine can publish (children are not journaled), so the message is dropped: let the child sendParent an event and publish from the entity machine',
          ),
      );
    }
    this.children.scan(snapshot);
  }

  /** A child actor changed state: only a snapshot can carry that. */
  private onChildStep(): void {
    if (!this.capturing || !this.timers) return;
    if (this.timers.sync()) this.writer.wakeDirty = true;
    this.writer.snapshotWanted = true;
    this.writer.schedule();
  }

  // --------------------------------------------------------------- flushing

  private takeSnapshot(): StoredSnapshot {
    const state = this.actor!.getPersistedSnapshot();
    const snapshot: StoredSnapshot = {
      v: 1,
      seq: this.seq,
      at: this.rt.clock.now(),
      state,
      timers: this.timers!.current(),
      eventIds: eventIdsOf(this.eventIds),
      run: this.rt.runId,
    };
    // Undelivered messages go with the snapshot; the (maybe empty) list also
    // tells recovery that the timer index may be due for them.
    const outbox = this.outbox;
    if (outbox === undefined || (outbox.size === 0 && !outbox.indexed)) return snapshot;
    return { ...snapshot, outbox: outbox.pending() };
  }

  /** Resolves once nothing is queued, applied-but-unwritten or being written. */
  whenIdle(): Promise<void> {
    if (this.isQuiet()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isQuiet(): boolean {
    return (
      this.queuedCount() === 0 &&
      this.writer.quiet &&
      this.phase !== 'activating' &&
      this.phase !== 'restarting'
    );
  }

  private notifyIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isQuiet()) return;
    const ws = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of ws) w();
  }

  // ------------------------------------------------------------- activation

  /** Activates the entity if it is not live; shared by concurrent callers. */
  ensureActive(): Promise<void> {
    if (this.dropped) return this.rt.successor(this).ensureActive();
    if (this.phase === 'live') return Promise.resolve();
    if (this.phase === 'parked') return Promise.reject(this.parkedError());
    if (this.activation) return this.activation;
    if (this.phase === 'restarting' || this.phase === 'passivating') {
      return new Promise((resolve, reject) => {
        this.idleWaiters.push(() => void this.ensureActive().then(resolve, reject));
      });
    }
    this.phase = 'activating';
    this.activation = this.activate().then(
      () => {
        this.activation = undefined;
        if (this.discarded) {
          // The shard was lost while activating: the actor must not run here.
          const actor = this.actor;
          this.actor = undefined;
          this.timers = undefined;
          try {
            actor?.stop();
          } catch {
            // Nothing to clean up.
          }
          return;
        }
        this.phase = 'live';
        this.rt.stats.activations++;
        this.rt.onActivated(this);
        this.drain();
        this.notifyIdle();
      },
      (error: unknown) => {
        this.activation = undefined;
        this.failure ??= { error, event: undefined };
        this.rt.log.error({ type: this.key.type, id: this.key.id, err: error }, 'activation failed');
        this.onFailure(this.failure.event !== undefined);
        throw error;
      },
    );
    return this.activation;
  }

  private async activate(): Promise<void> {
    const { machine } = this.def;
    const input = this.def.input(this.key.id);
    const rec = await recover(this.rt.store, machine, this.key, input, this.rt.options.dedupeWindow);
    this.seq = rec.seq;
    this.writer.reset(rec.seq, rec.snapshotSeq);
    this.eventIds = toEventIdWindow(rec.eventIds, this.rt.options.dedupeWindow);
    this.publishedNow = undefined;
    if (rec.outboxSeen || rec.outbox.length > 0 || this.outbox !== undefined) {
      const outbox = (this.outbox ??= new Outbox(this.key, this.rt.publishing));
      outbox.indexed = rec.outboxSeen;
      outbox.reset(rec.outbox, rec.seq);
    }
    this.rootFirst = undefined;
    this.rootMore = undefined;
    this.failure = undefined;
    this.lastSnap = undefined;
    this.children = undefined;
    const actor = createCapturedActor(machine, { snapshot: rec.state as never, input, clock: this.rt.clock, logger: this.rt.xstateLogger }, this);
    this.actor = actor;
    this.timers = new TimerTracker(actor, this.rt.clock);
    actor.subscribe({
      error: (error: unknown) => this.fail(this.rootFirst as AnyEvent | undefined, error),
    });
    this.capturing = true;
    this.applying = true;
    let moved = false;
    try {
      actor.start();
      // Only a brand-new entity runs initial entry actions (a restored one
      // resumes), so these messages are its initial state's: seq 0, made
      // durable by the snapshot this activation writes.
      const initial = this.publishedNow;
      this.publishedNow = undefined;
      if (initial !== undefined && !this.failure) {
        const outbox = this.toOutbox(undefined, initial);
        if (outbox !== null) {
          this.addToOutbox(0, this.rt.clock.now(), outbox);
          this.writer.snapshotWanted = true;
        }
      }
      if (!this.failure) {
        this.lastSnap ??= actor.getSnapshot() as AnyMachineSnapshot;
        const resume = rec.run === this.rt.runId ? 'deadline' : this.def.timerResume;
        const rearmed = this.timers.rearm(rec.timers, resume, rec.at, (msg, t) =>
          this.rt.log.warn({ type: this.key.type, id: this.key.id, timer: t.id }, msg),
        );
        moved = rearmed.moved;
        // Overdue timers fire before any queued send: they were due first.
        this.timers.fireOverdue(rearmed.overdue);
      }
    } finally {
      this.applying = false;
    }
    // actor.start() or an overdue timer may have recorded a failure.
    const startFailure = this.failure as { error: unknown; event: AnyEvent | undefined } | undefined;
    if (startFailure) {
      // this.failure stays set: ensureActive's handler dead-letters the
      // failing event (an overdue timer, say) and restarts with backoff.
      const { error } = startFailure;
      this.capturing = false;
      this.actor = undefined;
      throw startFailed(this.key, this.seq, error);
    }
    // Timers started by the initial state of a brand-new entity, or deadlines
    // moved by the resume mode, must be durable before we rely on them.
    const changed = this.timers.sync();
    if (moved || changed) {
      this.writer.wakeDirty = true;
      this.writer.snapshotWanted = true;
    }
  }

  // ------------------------------------------------------------ supervision

  /**
   * Records the first failure of the live actor. Failures inside a send are
   * handled when actor.send returns; an internal event (invoke error, timer,
   * child output) fails outside any send and is handled on the next tick.
   */
  private fail(event: AnyEvent | undefined, error: unknown): void {
    if (this.failure) return;
    const eventId = this.current !== undefined && this.current.event === event ? this.current.eventId : undefined;
    this.failure = { error, event, eventId };
    if (!this.applying && this.current === undefined) queueMicrotask(() => this.onFailure());
  }

  /**
   * The live actor failed (a throwing action or guard, an unhandled invoke
   * error, a context that cannot be persisted, a failed write). Dead-letter
   * the failing event, then restart from the durable state with backoff.
   */
  private onFailure(deadLetter = true): void {
    if (this.phase === 'restarting' || this.phase === 'parked' || this.discarded) return;
    const failure = this.failure;
    if (!failure) return;
    if (this.phase === 'live') this.rt.onDeactivated();
    this.phase = 'restarting';
    // Only the recovery below writes until the entity is live again.
    this.writer.paused = true;
    this.capturing = false;
    this.failures++;
    this.rt.stats.failures++;
    const actor = this.actor;
    this.actor = undefined;
    this.timers = undefined;
    try {
      actor?.stop();
    } catch {
      // Stopping a failed actor may rethrow its error; it is already handled.
    }
    const { error, event } = failure;
    const code = error instanceof ShardchartError ? error.code : 'EVENT_FAILED';
    this.rt.log.warn(
      { type: this.key.type, id: this.key.id, seq: this.durableSeq, eventType: event?.type, eventId: failure.eventId, code, err: error, failures: this.failures },
      'entity failed; restarting from its durable state',
    );
    void this.recoverFrom(error, deadLetter ? event : undefined, failure.eventId, code);
  }

  private async recoverFrom(error: unknown, event: AnyEvent | undefined, eventId: string | undefined, code: string): Promise<void> {
    try {
      // No new write starts while restarting; wait for the one in flight.
      // Entries captured before the failure are valid: make them durable.
      await this.writer.drainPending(this.outboxDueForDrain());
    } catch (err) {
      this.rt.log.error({ type: this.key.type, id: this.key.id, err }, 'could not write the entries applied before the failure');
    }
    if (event) {
      try {
        await this.rt.deadLetter({
          key: this.key,
          event,
          ...(eventId !== undefined ? { eventId } : {}),
          code,
          message: errorMessage(error),
          at: this.rt.clock.now(),
          seq: this.durableSeq,
        });
      } catch (err) {
        this.rt.log.error({ type: this.key.type, id: this.key.id, err }, 'could not record dead letter');
      }
    }
    this.writer.failWaiters(failedBeforeDurable(this.key, error));
    this.writer.discardPending();
    this.outbox?.dropUndurable();
    this.seq = this.durableSeq;
    this.failure = undefined;
    const { attemptsMax, backoffMs } = this.rt.options.restart;
    if (this.failures >= attemptsMax) {
      this.park(error);
      return;
    }
    const delay = Math.min(backoffMs * 2 ** (this.failures - 1), 30_000);
    this.backoffTimer = this.rt.clock.setTimeout(() => {
      this.backoffTimer = undefined;
      if (this.phase !== 'restarting') return;
      this.phase = 'idle';
      if (this.rt.stopping && this.queuedCount() === 0) {
        this.notifyIdle();
        return;
      }
      this.ensureActive().catch(() => undefined);
    }, delay);
  }

  /**
   * The timer-index deadline the write of a failed entity's last entries
   * needs: due now when they carry messages the index does not know of.
   */
  private outboxDueForDrain(): number | undefined {
    const outbox = this.outbox;
    if (outbox === undefined || outbox.size === 0 || outbox.indexed) return undefined;
    outbox.indexed = true;
    return this.rt.clock.now();
  }

  private park(error: unknown): void {
    this.phase = 'parked';
    this.rt.log.error(
      { type: this.key.type, id: this.key.id, seq: this.durableSeq, err: error },
      `entity parked after ${this.failures} failures; sends are refused until ref.restart()`,
    );
    const err = this.parkedError(error);
    rejectAll(this.mailbox?.takeAll(), err);
    this.notifyIdle();
  }

  private parkedError(cause?: unknown): ShardchartError {
    return parked(this.key, this.rt.options.restart.attemptsMax, this.durableSeq, cause);
  }

  /** Un-parks (or restarts now) an entity. */
  async restart(): Promise<void> {
    if (this.dropped) return this.rt.successor(this).restart();
    if (this.backoffTimer !== undefined) {
      this.rt.clock.clearTimeout(this.backoffTimer);
      this.backoffTimer = undefined;
    }
    if (this.phase === 'parked' || this.phase === 'restarting') this.phase = 'idle';
    this.failures = 0;
    await this.ensureActive();
  }

  // ------------------------------------------------------------ passivation

  canPassivate(force: boolean): boolean {
    return (
      this.phase === 'live' &&
      this.isQuiet() &&
      (force || (!hasInvocationInFlight(this.lastSnap as never) && (this.outbox === undefined || this.outbox.size === 0)))
    );
  }

  /**
   * Snapshots the entity and drops its actor. Returns false (and does
   * nothing) when it is busy or, unless forced, has an invocation in flight.
   */
  async passivate(force = false): Promise<boolean> {
    if (!this.canPassivate(force)) return false;
    this.phase = 'passivating';
    this.capturing = false;
    const outbox = this.outbox;
    const wasIndexed = outbox?.indexed ?? false;
    let wakeAt: number | null;
    try {
      // Deliver what can be delivered now (a forced passivation may find
      // messages waiting); the snapshot keeps the rest.
      if (outbox !== undefined && outbox.size > 0) await outbox.flush();
      const w = this.writer;
      // Computed before the snapshot, which records whether the index stays due.
      wakeAt = this.wakeAtForWrite();
      // An entity that published gets a fresh snapshot: the last one may list
      // messages delivered since, and the timer index may still be due.
      if (this.seq > w.snapshotSeq || w.snapshotWanted || w.wakeDirty || outbox !== undefined || hasChildActors(this.lastSnap as never)) {
        await w.writeSnapshot(this.takeSnapshot(), wakeAt);
      }
    } catch (error) {
      if (outbox !== undefined) outbox.indexed = wasIndexed;
      this.rt.log.error({ type: this.key.type, id: this.key.id, err: error }, 'passivation snapshot failed; entity stays live');
      this.phase = 'live';
      this.capturing = true;
      this.drain();
      return false;
    }
    const actor = this.actor!;
    this.actor = undefined;
    this.timers = undefined;
    this.lastSnap = undefined;
    this.eventIds = [];
    // Messages still waiting are in the snapshot; `wakeAt` brings the entity
    // back at their next retry.
    outbox?.close();
    this.outbox = undefined;
    this.rootFirst = undefined;
    this.rootMore = undefined;
    try {
      actor.stop();
    } catch {
      // A stop that throws leaves nothing to clean up here.
    }
    this.phase = 'idle';
    this.rt.stats.passivations++;
    this.rt.onDeactivated();
    // Sends that arrived while we were snapshotting reactivate the entity;
    // otherwise the host is dropped and only a wake-up (if any) remains.
    if (this.queuedCount() > 0) this.drain();
    else this.rt.onPassivated(this, wakeAt);
    this.notifyIdle();
    return true;
  }

  /**
   * The node lost the entity's shard (cluster): drop the actor without
   * writing anything more; every caller still waiting gets `reason`. Writes
   * in flight finish or are refused by the store's fencing.
   */
  discard(reason: Error): void {
    if (this.backoffTimer !== undefined) {
      this.rt.clock.clearTimeout(this.backoffTimer);
      this.backoffTimer = undefined;
    }
    this.discarded = true;
    this.dropped = true;
    const actor = this.actor;
    this.actor = undefined;
    this.timers = undefined;
    this.lastSnap = undefined;
    this.capturing = false;
    if (this.phase === 'live') this.rt.onDeactivated();
    this.phase = 'idle';
    this.writer.paused = true;
    rejectAll(this.mailbox?.takeAll(), reason);
    this.writer.failWaiters(reason);
    this.writer.discardPending();
    // The new owner delivers from the journal; this node stops.
    this.outbox?.close();
    this.outbox = undefined;
    try {
      actor?.stop();
    } catch {
      // Nothing to clean up after a stop that throws.
    }
    this.notifyIdle();
  }

  /** Rejects everything still queued (system stop). */
  rejectQueued(err: Error): void {
    rejectAll(this.mailbox?.takeAll(), err);
    // Undelivered messages are durable (journal or snapshot, timer index due):
    // the next start delivers them.
    this.outbox?.close();
    this.outbox = undefined;
    if (this.backoffTimer !== undefined) {
      this.rt.clock.clearTimeout(this.backoffTimer);
      this.backoffTimer = undefined;
      if (this.phase === 'restarting') this.phase = 'idle';
    }
    this.notifyIdle();
  }

  // ---------------------------------------------------------------- helpers

  stateOf(snap: AnyMachineSnapshot, changed: boolean, duplicate = false): EntityState {
    return toEntityState(snap, this.seq, changed, duplicate);
  }

  timeoutError(ms: number): TimeoutError {
    return sendTimedOut(this.key, ms);
  }
}
