/**
 * Entity refs of a clustered system: the same `EntityRef` contract as
 * embedded, routed to the entity's owner wherever it runs. Sends go through
 * the shard's stream (see router.ts); reads ask the owner; `stateAt` and
 * `journal` read the shared store directly; `subscribe` and `waitFor` get
 * each new state pushed by the owner while someone listens.
 */
import { toError } from '../errors.js';
import type { SystemCore } from '../system/actor-system.js';
import { BaseEntityRef } from '../system/entity-ref.js';
import type {
  EntityRef,
  EntityState,
  SendOptions,
  Unsubscribe,
} from '../system/types.js';
import type { Router } from './nats/router.js';

type AnyEvent = { type: string; [key: string]: unknown };
type Observer = {
  next?: (state: EntityState) => void;
  error?: (err: unknown) => void;
};

class ClusterEntityRef extends BaseEntityRef {
  constructor(
    core: SystemCore,
    private readonly router: Router,
    type: string,
    id: string,
  ) {
    super(core, type, id);
  }

  send(event: AnyEvent, options: SendOptions = {}): Promise<EntityState> {
    try {
      this.core.checkSend(event, options.eventId);
    } catch (err) {
      return Promise.reject(toError(err));
    }
    return this.router.send(
      this.type,
      this.id,
      event,
      options.eventId,
      options.timeoutMs,
    );
  }

  async snapshot(): Promise<EntityState> {
    this.core.checkRunning();
    const reply = await this.router.query({
      k: 'query',
      op: 'snapshot',
      type: this.type,
      id: this.id,
    });
    return reply.state as EntityState;
  }

  /**
   * Delivers the entity's states as its owner pushes them (see
   * src/cluster/nats/state-feed.ts), the current state first.
   */
  subscribe(listener: ((state: EntityState) => void) | Observer): Unsubscribe {
    const observer =
      typeof listener === 'function' ? { next: listener } : listener;
    const off = this.router.states.subscribe(
      this.core,
      this.type,
      this.id,
      observer,
    );
    const unsubscribe = (() => off()) as Unsubscribe;
    unsubscribe.unsubscribe = off;
    return unsubscribe;
  }

  async restart(): Promise<void> {
    this.core.checkRunning();
    await this.router.query({
      k: 'query',
      op: 'restart',
      type: this.type,
      id: this.id,
    });
  }

  async passivate(options: { force?: boolean } = {}): Promise<boolean> {
    const reply = await this.router.query({
      k: 'query',
      op: 'passivate',
      type: this.type,
      id: this.id,
      force: options.force ?? false,
    });
    return reply.value === true;
  }
}

export function createClusterEntityRef(
  core: SystemCore,
  router: Router,
  type: string,
  id: string,
): EntityRef {
  return new ClusterEntityRef(core, router, type, id);
}
