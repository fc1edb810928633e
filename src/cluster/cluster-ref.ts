/**
 * Entity refs of a clustered system: the same `EntityRef` contract as
 * embedded, routed to the entity's owner wherever it runs. Sends go through
 * the shard's stream (see router.ts); reads ask the owner; `stateAt` and
 * `journal` read the shared store directly; `subscribe` and `waitFor` poll
 * the owner while someone listens (a changed seq is a new state).
 */
import { toError } from '../errors.js';
import { stateAt as rebuildStateAt } from '../persistence/recovery.js';
import type { JournalEntry } from '../persistence/types.js';
import type { SystemCore } from '../system/actor-system.js';
import { toEntityState } from '../system/entity-state.js';
import type {
  EntityRef,
  EntityState,
  SendOptions,
  Unsubscribe,
  WaitForOptions,
} from '../system/types.js';
import { TimeoutError } from '../errors.js';
import type { Router } from './nats/router.js';

const symbolObservable: string | symbol =
  (Symbol as { observable?: symbol }).observable ?? '@@observable';

/** How often a subscribed ref asks the owner for the entity's state. */
const POLL_MS = 100;

export function createClusterEntityRef(
  core: SystemCore,
  router: Router,
  type: string,
  id: string,
): EntityRef {
  const snapshot = async (): Promise<EntityState> => {
    core.checkRunning();
    const reply = await router.query({ k: 'query', op: 'snapshot', type, id });
    return reply.state as EntityState;
  };

  const subscribe: EntityRef['subscribe'] = (listener) => {
    const observer =
      typeof listener === 'function' ? { next: listener } : listener;
    let lastSeq = -1;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = (): void => {
      snapshot().then(
        (state) => {
          if (stopped) return;
          if (state.seq !== lastSeq) {
            lastSeq = state.seq;
            try {
              observer.next?.(state);
            } catch (error) {
              core.log.error(
                { err: error },
                'an entity subscriber threw; it stays subscribed',
              );
            }
          }
          timer = setTimeout(poll, POLL_MS);
        },
        (error: unknown) => {
          if (stopped) return;
          // A moving shard answers again soon; anything else ends the subscription.
          if (
            error instanceof Error &&
            'retryable' in error &&
            (error as { retryable: boolean }).retryable &&
            !core.stopping
          ) {
            timer = setTimeout(poll, POLL_MS);
            return;
          }
          stopped = true;
          observer.error?.(error);
        },
      );
    };
    poll();
    const off = (): void => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
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
      return router.send(type, id, event, options.eventId, options.timeoutMs);
    },
    snapshot,
    async stateAt(seq: number) {
      const def = core.typeOf(type);
      const { snapshot: snap, seq: at } = await rebuildStateAt(
        core.store,
        def.machine,
        { type, id },
        def.input(id),
        seq,
      );
      return toEntityState(snap, at, false);
    },
    journal(options = {}): AsyncIterable<JournalEntry> {
      return core.store.journal.read(
        { type, id },
        options.fromSeq ?? 1,
        options.toSeq,
      );
    },
    subscribe,
    waitFor(predicate, options: WaitForOptions = {}) {
      return new Promise<EntityState>((resolve, reject) => {
        let done = false;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const release = core.hold();
        const finish = (fn: () => void): void => {
          if (done) return;
          done = true;
          off();
          release();
          if (timer !== undefined) clearTimeout(timer);
          fn();
        };
        const off = subscribe({
          next: (state) => {
            let ok = false;
            try {
              ok = predicate(state);
            } catch (err) {
              finish(() => reject(toError(err)));
              return;
            }
            if (ok) finish(() => resolve(state));
          },
          error: (err) => finish(() => reject(toError(err))),
        });
        if (options.timeoutMs !== undefined) {
          const ms = options.timeoutMs;
          timer = setTimeout(
            () =>
              finish(() =>
                reject(
                  new TimeoutError(
                    `Entity ${type}/${id} did not reach the awaited state within ${ms} ms.`,
                    { details: { type, id, timeoutMs: ms } },
                  ),
                ),
              ),
            ms,
          );
        }
      });
    },
    async restart() {
      core.checkRunning();
      await router.query({ k: 'query', op: 'restart', type, id });
    },
    async passivate(options: { force?: boolean } = {}) {
      const reply = await router.query({
        k: 'query',
        op: 'passivate',
        type,
        id,
        force: options.force ?? false,
      });
      return reply.value === true;
    },
    /** On a cluster: whether the entity is live on this node. */
    isLive() {
      return core.existingHost(type, id)?.phase === 'live';
    },
  };
  (ref as unknown as Record<string | symbol, unknown>)[symbolObservable] = () =>
    ref;
  return ref;
}
