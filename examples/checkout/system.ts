import {
  createActorSystem,
  systemClock,
  type ActorSystem,
  type Clock,
  type Store,
} from 'shardchart';
import type { Logger } from 'pino';
import { createCircuitBreakerMachine } from 'shardchart/machines';
import { createCheckoutMachine } from './checkout-machine.js';
import { timing, type CheckoutDeps } from './deps.js';
import { createPaymentMachine } from './payment.js';
import {
  createFakeServices,
  type CheckoutServices,
  type FakeServices,
} from './services.js';

export interface CheckoutSystemOptions<S extends CheckoutServices> {
  /** Default: the memory store. */
  store?: Store;
  /** Default: the wall clock. Tests pass a simulated one. */
  clock?: Clock;
  /** Default: the in-memory fakes of services.ts. */
  services?: S;
  logger?: Logger;
  passivateAfterMs?: number;
}

/**
 * Starts an actor system with the example's three entity types:
 * `checkout/<orderId>` (the order), `payment/<orderId>` (its payment, a
 * retry machine) and `breaker/payment-gateway` (one circuit breaker shared
 * by every payment).
 */
export async function startCheckoutSystem<
  S extends CheckoutServices = FakeServices,
>(options: CheckoutSystemOptions<S> = {}) {
  const clock = options.clock ?? systemClock;
  const services =
    options.services ?? (createFakeServices() as CheckoutServices as S);
  // The machines are built before the system exists; their invoked
  // promises reach other entities through it once it has started.
  const bound: { system?: ActorSystem } = {};
  const deps: CheckoutDeps = {
    services,
    now: () => clock.now(),
    entity: (type, id) => {
      if (!bound.system)
        throw new Error('The checkout system has not started yet.');
      return bound.system.entity(type, id);
    },
  };
  const system = await createActorSystem({
    name: 'checkout',
    entities: {
      checkout: createCheckoutMachine(deps),
      payment: {
        machine: createPaymentMachine(deps),
        input: (orderId: string) => ({ input: orderId }),
      },
      breaker: createCircuitBreakerMachine(timing.breaker),
    },
    clock,
    ...(options.store ? { store: options.store } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.passivateAfterMs !== undefined
      ? { passivateAfterMs: options.passivateAfterMs }
      : {}),
  });
  bound.system = system;
  return { system, services, clock };
}
