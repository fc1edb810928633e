import { TimeoutError, toError } from '../errors.js';
import { stateAt as rebuildStateAt } from '../persistence/recovery.js';
import type { JournalEntry } from '../persistence/types.js';
import type { SystemCore } from './actor-system.js';
import { toEntityState } from './entity-state.js';
import type { EntityRef, EntityState, SendOptions, Unsubscribe, WaitForOptions } from './types.js';

const symbolObservable: string | symbol = (Symbol as { observable?: symbol }).observable ?? '@@observable';

type AnyEvent = { type: string; [key: string]: unknown };
type Observer = { next?: (state: EntityState) => void; error?: (err: unknown) => void };

/**
 * What embedded and clustered refs share: `stateAt`, `journal` (both read the
 * store), `waitFor` (on top of the subclass's `subscribe`) and observable
 * interop.
 *
 * Refs are small objects with their methods on the prototype, because users
 * call `system.entity(type, id)` per send: a ref of closures cost about a
 * kilobyte, and refs of in-flight sends survive young-generation GCs, whose
 * pauses then grew with them (bench/cluster.bench.ts, session 5). A ref
 * holds the type and id and looks the entity up on every call, so it stays
 * valid across passivation, restarts and shard moves. Its methods use
 * `this`: call them on the ref (`ref.send(...)`), or bind them.
 */
export abstract class BaseEntityRef implements EntityRef {
  constructor(
    protected readonly core: SystemCore,
    readonly type: string,
    readonly id: string,
  ) {}

  abstract send(event: AnyEvent, options?: SendOptions): Promise<EntityState>;
  abstract snapshot(): Promise<EntityState>;
  abstract subscribe(listener: ((state: EntityState) => void) | Observer): Unsubscribe;
  abstract restart(): Promise<void>;
  abstract passivate(options?: { force?: boolean }): Promise<boolean>;

  /** True when the entity is in memory on this node. */
  isLive(): boolean {
    return this.core.existingHost(this.type, this.id)?.phase === 'live';
  }

  /** Resolves once what was applied to the entity is durable (embedded: its host is idle). */
  protected settled(): Promise<void> {
    return Promise.resolve();
  }

  /** Reads the state once, for `waitFor`, when `subscribe` does not deliver the current state by itself. */
  protected readForWait(): Promise<EntityState> | undefined {
    return undefined;
  }

  async stateAt(seq: number): Promise<EntityState> {
    const def = this.core.typeOf(this.type);
    // Answer from durable state only: wait for anything applied to land.
    await this.settled();
    const { snapshot, seq: at } = await rebuildStateAt(this.core.store, def.machine, { type: this.type, id: this.id }, def.input(this.id), seq);
    return toEntityState(snapshot, at, false);
  }

  journal(options: { fromSeq?: number; toSeq?: number } = {}): AsyncIterable<JournalEntry> {
    return this.core.store.journal.read({ type: this.type, id: this.id }, options.fromSeq ?? 1, options.toSeq);
  }

  waitFor(predicate: (state: EntityState) => boolean, options: WaitForOptions = {}): Promise<EntityState> {
    const { core } = this;
    return new Promise<EntityState>((resolve, reject) => {
      let done = false;
      let timer: unknown;
      const release = core.hold();
      const finish = (fn: () => void): void => {
        if (done) return;
        done = true;
        off();
        release();
        if (timer !== undefined) core.clock.clearTimeout(timer);
        fn();
      };
      const check = (s: EntityState): void => {
        let ok = false;
        try {
          ok = predicate(s);
        } catch (err) {
          finish(() => reject(toError(err)));
          return;
        }
        if (ok) finish(() => resolve(s));
      };
      // Subscribe before reading so no state slips between the two.
      const off = this.subscribe({ next: check, error: (err) => finish(() => reject(toError(err))) });
      const ms = options.timeoutMs;
      if (ms !== undefined) {
        timer = core.clock.setTimeout(
          () =>
            finish(() =>
              reject(
                new TimeoutError(`Entity ${this.type}/${this.id} did not reach the awaited state within ${ms} ms.`, {
                  details: { type: this.type, id: this.id, timeoutMs: ms },
                }),
              ),
            ),
          ms,
        );
      }
      this.readForWait()?.then(check, (err: unknown) => finish(() => reject(toError(err))));
    });
  }

  /** Observable interop (rxjs `from(ref)`), the same key XState actors use. */
  [symbolObservable](): this {
    return this;
  }
}

/** A ref of an embedded system (or of a cluster node's own entities). */
class LocalEntityRef extends BaseEntityRef {
  private readonly k: string;

  constructor(core: SystemCore, type: string, id: string) {
    super(core, type, id);
    this.k = core.keyString(type, id);
  }

  send(event: AnyEvent, options: SendOptions = {}): Promise<EntityState> {
    const core: SystemCore = this.core;
    try {
      core.checkSend(event, options.eventId);
    } catch (err) {
      return Promise.reject(toError(err));
    }
    const host = core.hostAt(this.k, this.type, this.id);
    const p = host.send(event, options.eventId);
    const ms = options.timeoutMs;
    if (ms === undefined) return p;
    return new Promise<EntityState>((resolve, reject) => {
      const t = core.clock.setTimeout(() => reject(host.timeoutError(ms)), ms);
      p.then(
        (v) => {
          core.clock.clearTimeout(t);
          resolve(v);
        },
        (e: unknown) => {
          core.clock.clearTimeout(t);
          reject(toError(e));
        },
      );
    });
  }

  async snapshot(): Promise<EntityState> {
    this.core.checkRunning();
    return this.core.hostAt(this.k, this.type, this.id).read();
  }

  subscribe(listener: ((state: EntityState) => void) | Observer): Unsubscribe {
    const observer = typeof listener === 'function' ? { next: listener } : listener;
    const off = this.core.subscribe(this.k, observer);
    const unsubscribe = (() => off()) as Unsubscribe;
    unsubscribe.unsubscribe = off;
    return unsubscribe;
  }

  protected override async settled(): Promise<void> {
    const host = this.core.existingHost(this.type, this.id);
    if (host) await host.whenIdle();
  }

  protected override readForWait(): Promise<EntityState> {
    return this.snapshot();
  }

  async restart(): Promise<void> {
    this.core.checkRunning();
    await this.core.host(this.type, this.id).restart();
  }

  async passivate(options: { force?: boolean } = {}): Promise<boolean> {
    const host = this.core.existingHost(this.type, this.id);
    if (!host || host.phase === 'idle') return true;
    await host.whenIdle();
    const phase: string = host.phase;
    if (phase !== 'live') return phase === 'idle';
    return host.passivate(options.force ?? false);
  }
}

export function createEntityRef(core: SystemCore, type: string, id: string): EntityRef {
  return new LocalEntityRef(core, type, id);
}
