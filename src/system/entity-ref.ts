import { toError } from '../errors.js';
import { stateAt as rebuildStateAt } from '../persistence/recovery.js';
import type { JournalEntry } from '../persistence/types.js';
import type { SystemCore } from './actor-system.js';
import { toEntityState } from './entity-state.js';
import type { EntityRef, EntityState, SendOptions, Unsubscribe, WaitForOptions } from './types.js';

const symbolObservable: string | symbol = (Symbol as { observable?: symbol }).observable ?? '@@observable';

/**
 * Entity refs are plain handles: they hold the type and id and look the host
 * up on every call, so a ref stays valid across passivation and restarts.
 */
export function createEntityRef(core: SystemCore, type: string, id: string): EntityRef {
  const k = core.keyString(type, id);
  const withTimeout = <T>(p: Promise<T>, ms: number | undefined, host: { timeoutError(ms: number): Error }): Promise<T> => {
    if (ms === undefined) return p;
    return new Promise<T>((resolve, reject) => {
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
  };

  const subscribe: EntityRef['subscribe'] = (listener) => {
    const observer = typeof listener === 'function' ? { next: listener } : listener;
    const off = core.subscribe(k, observer);
    const unsubscribe = (() => off()) as Unsubscribe;
    unsubscribe.unsubscribe = off;
    return unsubscribe;
  };

  const ref: EntityRef = {
    type,
    id,
    send(event, options: SendOptions = {}) {
      try {
        core.checkSend(event, options.eventId);
      } catch (err) {
        return Promise.reject(toError(err));
      }
      const host = core.hostAt(k, type, id);
      return withTimeout(host.send(event, options.eventId), options.timeoutMs, host);
    },
    async snapshot() {
      core.checkRunning();
      return core.hostAt(k, type, id).read();
    },
    async stateAt(seq: number) {
      const def = core.typeOf(type);
      const host = core.existingHost(type, id);
      // Answer from durable state only: wait for anything applied to land.
      if (host) await host.whenIdle();
      const { snapshot, seq: at } = await rebuildStateAt(core.store, def.machine, { type, id }, def.input(id), seq);
      return toEntityState(snapshot, at, false);
    },
    journal(options = {}): AsyncIterable<JournalEntry> {
      return core.store.journal.read({ type, id }, options.fromSeq ?? 1, options.toSeq);
    },
    subscribe,
    async waitFor(predicate, options: WaitForOptions = {}) {
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
        const off = subscribe(check);
        if (options.timeoutMs !== undefined) {
          timer = core.clock.setTimeout(
            () => finish(() => reject(core.host(type, id).timeoutError(options.timeoutMs!))),
            options.timeoutMs,
          );
        }
        ref.snapshot().then(check, (err: unknown) => finish(() => reject(toError(err))));
      });
    },
    async restart() {
      core.checkRunning();
      await core.host(type, id).restart();
    },
    async passivate(options: { force?: boolean } = {}) {
      const host = core.existingHost(type, id);
      if (!host || host.phase === 'idle') return true;
      await host.whenIdle();
      const phase: string = host.phase;
      if (phase !== 'live') return phase === 'idle';
      return host.passivate(options.force ?? false);
    },
    isLive() {
      return core.existingHost(type, id)?.phase === 'live';
    },
  };
  // Observable interop (rxjs `from(ref)`), the same key XState actors use.
  (ref as unknown as Record<string | symbol, unknown>)[symbolObservable] = () => ref;
  return ref;
}

