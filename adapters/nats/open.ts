/**
 * Opening a nats store: which connection it uses, the check of the
 * servers' sync setting, and the streams it needs.
 */
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';

import {
  ConfigError,
  StoreError,
  isShardchartError,
} from '../../src/errors.js';
import type { ClusterBinding } from '../../src/persistence/types.js';
import { EntityCache } from './entity-cache.js';
import { isAssertionError } from './keys.js';
import { defaultPrefix, defaults, namesFor, type Settings } from './options.js';
import type { Session } from './session.js';
import { ensureStorage } from './setup.js';
import { alignWakeLayout } from './wake-index.js';
import { SYNC_ADVICE, judgeSync, probeSync } from './sync-check.js';
import { Wire } from './wire.js';

/** Connects, checks the server's sync setting, and sets up the streams. */
export async function openSession(
  settings: Settings,
  binding: ClusterBinding | undefined,
): Promise<Session> {
  let nc: NatsConnection;
  let ownsConnection = false;
  if (settings.connection !== undefined) {
    nc = settings.connection;
  } else if (settings.servers !== undefined) {
    nc = await connectTo(settings, settings.servers);
    ownsConnection = true;
  } else if (isConnection(binding?.connection)) {
    nc = binding.connection;
  } else {
    throw new ConfigError(
      binding === undefined
        ? "natsStore() has no NATS connection: pass natsStore({ servers: 'nats://127.0.0.1:4222' }) or natsStore({ connection }), or use it as the store of a cluster node (createActorSystem({ cluster: { nats: { servers } }, ... })), which hands it the node's connection."
        : "natsStore() joined a cluster node that gave it no NATS connection: pass natsStore({ servers: 'nats://127.0.0.1:4222' }) or natsStore({ connection }).",
    );
  }
  try {
    if (nc.isClosed()) {
      throw new StoreError(
        'STORE_FAILED',
        'The NATS connection given to the nats store is closed. Pass a live connection.',
        { retryable: false, details: { reason: 'connection-closed' } },
      );
    }
    const names = namesFor(settings.prefix ?? defaultPrefix(binding?.system));
    const log =
      settings.logger ?? pino({ level: 'warn', name: 'shardchart-nats-store' });
    await checkSync(nc, settings, log, names.prefix);
    const storage = await ensureStorage(
      nc,
      names,
      settings.replicas,
      settings.requestTimeoutMs,
    );
    const session: Session = {
      nc,
      ownsConnection,
      wire: new Wire(nc, {
        timeoutMs: settings.requestTimeoutMs,
        inFlightMax: settings.requestsInFlightMax,
      }),
      js: jetstream(nc, { timeout: settings.requestTimeoutMs }),
      names,
      settings,
      cache: new EntityCache(settings.cachedEntitiesMax),
      fence: binding?.fence,
      shards: binding?.shards,
      log,
      payloadBytesMax: nc.info?.max_payload ?? 1_048_576,
      leaderReads: settings.leaderReads ? 'all' : storage.replicated,
    };
    await alignWakeLayout(session);
    return session;
  } catch (error) {
    if (ownsConnection) await nc.close().catch(() => undefined);
    throw toStoreError(error);
  }
}

async function connectTo(
  settings: Settings,
  servers: readonly string[],
): Promise<NatsConnection> {
  try {
    return await connect({
      name: 'shardchart-nats-store',
      // Keep reconnecting for as long as the store is open: operations
      // fail fast while disconnected and work again once back.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ...settings.connectionOptions,
      servers: [...servers],
    });
  } catch (cause) {
    throw new StoreError(
      'STORE_FAILED',
      `The nats store cannot connect to ${servers.join(', ')}: ${cause instanceof Error ? cause.message : String(cause)}. Check that the NATS server runs and is reachable, then open the store again.`,
      { cause, retryable: true, details: { reason: 'connect', servers } },
    );
  }
}

/**
 * Finds out whether the servers fsync every write; warns once per open when
 * that is not confirmed, or refuses with `requireSyncAlways`.
 */
async function checkSync(
  nc: NatsConnection,
  settings: Settings,
  log: Logger,
  prefix: string,
): Promise<void> {
  if (nc.info?.jetstream === false) {
    throw new StoreError(
      'STORE_FAILED',
      `JetStream is not enabled on the NATS server ${nc.getServer()}. Start nats-server with -js (or a jetstream {} block).`,
      {
        retryable: false,
        details: { reason: 'jetstream', server: nc.getServer() },
      },
    );
  }
  const reports = await probeSync(
    { name: nc.getServer(), version: nc.info?.version },
    settings.monitorUrls,
    defaults.monitorTimeoutMs,
  );
  const verdict = judgeSync(reports);
  if (verdict.safe) return;
  const risk = `Acknowledged writes of the nats store '${prefix}' can be lost on a power failure or OS crash: ${verdict.problems.join(' ')}`;
  if (settings.requireSyncAlways) {
    throw new StoreError(
      'STORE_UNSAFE',
      `${risk} requireSyncAlways is set, so the store refuses to open. ${SYNC_ADVICE} Or drop requireSyncAlways to accept the risk.`,
      {
        details: { problems: verdict.problems, known: verdict.known, reports },
      },
    );
  }
  log.warn(
    { store: 'nats', prefix, problems: verdict.problems, known: verdict.known },
    `${risk} ${SYNC_ADVICE} To refuse such servers instead, pass natsStore({ requireSyncAlways: true }).`,
  );
}

function isConnection(value: unknown): value is NatsConnection {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { publish?: unknown }).publish === 'function' &&
    typeof (value as { subscribe?: unknown }).subscribe === 'function'
  );
}

/**
 * Our own coded errors and failed assertions pass through; anything else
 * (a client error) becomes a retryable `STORE_FAILED`.
 */
export function toStoreError(error: unknown): Error {
  if (isShardchartError(error)) return error;
  if (error instanceof Error && isAssertionError(error)) return error;
  return new StoreError(
    'STORE_FAILED',
    `The nats store failed: ${error instanceof Error ? error.message : String(error)}. Retry; if it keeps failing, check the NATS server.`,
    { cause: error, retryable: true },
  );
}
