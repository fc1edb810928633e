import type { EntityRef } from 'shardchart';
import type { BackoffOptions } from 'shardchart/machines';
import type { CheckoutServices } from './services.js';

/**
 * What the checkout machines need from outside: the services, a way to
 * reach other entities of the running system (bound once the system has
 * started, since the machines are built before it), and the system's clock
 * (the breaker takes time from the events it is sent).
 */
export interface CheckoutDeps {
  services: CheckoutServices;
  entity: (type: 'checkout' | 'payment' | 'breaker', id: string) => EntityRef;
  now: () => number;
}

/** Every delay of the example in one place, so the test and the README agree. */
export const timing = {
  /** The card issuer sends a one-time code after this long. */
  codeSendMs: 300,
  /** An unanswered code challenge sends the customer back to choosing a method. */
  challengeTimeoutMs: 300_000,
  /** Shipping rates are quoted after this long. */
  quoteMs: 300,
  /** Payment: attempts in total, and the backoff between them. */
  paymentAttemptsMax: 4,
  paymentBackoff: {
    initialMs: 100,
    factor: 2,
    maxMs: 1_000,
    jitter: 'full',
  } satisfies BackoffOptions,
  /** The one breaker in front of the payment gateway, shared by every order. */
  breaker: {
    failureThreshold: 3,
    windowMs: 60_000,
    resetTimeoutMs: 5_000,
    halfOpenProbesMax: 1,
  },
  /** The entity id of that breaker. */
  breakerId: 'payment-gateway',
} as const;
