/**
 * The clustered store: journals in a JetStream stream, snapshots and the
 * timer index in KV buckets, dead letters in a stream, all on NATS
 * (`@nats-io/transport-node`, `@nats-io/jetstream`, `@nats-io/kv` v3).
 *
 * Layout (prefix `shardchart_<system>` by default, see `options.ts`):
 *
 * - `<prefix>_journal`: one subject per entity, `<prefix>.journal.<type>.<id>`
 *   (tokens encoded by `keys.ts`, so ids may hold dots, spaces or
 *   wildcards). Each message is the entries of one `EntityWrite`, framed
 *   by the codec's `encodeRecord` (version, CRC-32, msgpack) with the entity
 *   key inside; a damaged or foreign message reads as `STORE_CORRUPT`.
 * - KV `<prefix>_snapshots`: key `<type>.<id>`; KV `<prefix>_wakeups`, the
 *   timer index: `<type>.<id>`, or `<shard>.<type>.<id>` for the store of a
 *   cluster node (`wake-index.ts`).
 *   A snapshot record also says from which stream sequence the journal
 *   after it can be read, so recovery reads only the tail.
 * - `<prefix>_dead_letters`: one subject per entity, oldest first.
 *
 * Optimistic concurrency: every journal message is published with
 * `Nats-Expected-Last-Subject-Sequence`, the stream sequence of the
 * entity's last message, which the store caches per entity (a cold entity
 * costs one read by subject, a new one none). The server refuses the
 * message if anyone else wrote the entity since, and the write fails with
 * `STORE_CONFLICT`. The order of a write's parts, and what fencing and the
 * sequence check each guard, are described in `writes.ts`.
 *
 * Group commit: writes of different entities are published without
 * waiting for each other, up to `requestsInFlightMax`, each matched to its
 * own acknowledgement (`wire.ts`); writes of one entity run one after the
 * other, since each needs the stream sequence the previous one got.
 *
 * Durability: `durable` is true. The server acknowledges a publish after
 * writing it to its file store, so an acknowledged write survives a crash
 * of this process and of the NATS server process (tested with SIGKILL).
 * Surviving a power failure or OS crash needs the server to fsync every
 * write (`sync_interval: always`, nats-server 2.10 or newer); the store
 * checks that on open (`sync-check.ts`), warns loudly when it cannot
 * confirm it, and refuses to open with `requireSyncAlways: true`.
 *
 * Faults: while the connection is down, operations fail at once with a
 * retryable `STORE_FAILED` (reason `disconnected`), as do the requests in
 * flight when it dropped; whether those were applied is unknown, and the
 * expected-sequence check keeps a retry from applying twice. Every request
 * has a deadline (`requestTimeoutMs`).
 */
import type { Logger } from 'pino';
import { StoreError } from '../../src/errors.js';
import type {
  ClusterBinding,
  EntityWrite,
  Store,
  StoredSnapshot,
} from '../../src/persistence/types.js';
import type { EntityCache } from './entity-cache.js';
import { assert, describe, encodeEntity } from './keys.js';
import { validate, type NatsStoreOptions } from './options.js';
import { openSession, toStoreError } from './open.js';
import {
  lastSeq,
  loadSnapshot,
  readDeadLetters,
  readJournal,
  scanEntities,
  scanWakeups,
} from './reads.js';
import { encodeDeadLetter } from './records.js';
import { streamBytes } from './scan.js';
import { publish, type Session } from './session.js';
import { runSave, runWrite } from './writes.js';
import { checkSnapshot, checkWrite } from '../../src/persistence/contract.js';

export type { NatsStoreOptions } from './options.js';

/**
 * Creates a store on NATS JetStream (`kind: 'nats'`, `durable: true`). It
 * connects on `open()` (or the first operation): to `servers` when given,
 * through `connection` when given, else through the connection of the
 * cluster node it joined. `close()` waits for pending operations, and
 * `open()` after it opens the store again.
 *
 * @example
 * ```ts
 * import { createActorSystem } from 'shardchart';
 * import { natsStore } from 'shardchart/adapters/nats';
 *
 * const system = await createActorSystem({
 *   name: 'shop',
 *   entities: { order: orderMachine },
 *   store: natsStore({ requireSyncAlways: true, monitorUrls: 'http://127.0.0.1:8222' }),
 *   cluster: { nats: { servers: 'nats://127.0.0.1:4222' }, nodeId: 'n1' },
 * });
 * ```
 */
export function natsStore(options: NatsStoreOptions = {}): Store {
  const settings = validate(options);
  let binding: ClusterBinding | undefined;
  let systemLogger: Logger | undefined;
  let current: Session | undefined;
  let opening: Promise<Session> | undefined;
  let closing: Promise<void> | undefined;
  let pendingOps = 0;
  let idle: (() => void)[] = [];

  function closedError(): StoreError {
    return new StoreError(
      'STORE_CLOSED',
      'The nats store is closed. Call store.open() to use it again.',
    );
  }

  function session(): Promise<Session> {
    if (closing !== undefined) return Promise.reject(closedError());
    if (current !== undefined) return Promise.resolve(current);
    opening ??= openSession(
      { ...settings, logger: settings.logger ?? systemLogger },
      binding,
    ).then(
      (opened) => {
        current = opened;
        return opened;
      },
      (error: unknown) => {
        opening = undefined;
        throw error;
      },
    );
    return opening;
  }

  /**
   * Runs an operation, counted until it settles (close() waits for it) and
   * bounded by `pendingOpsMax`. With the store open it starts now, so its
   * first request leaves in the caller's tick.
   */
  function track<T>(fn: (opened: Session) => Promise<T>): Promise<T> {
    if (closing !== undefined) return Promise.reject(closedError());
    if (pendingOps >= settings.pendingOpsMax) {
      return Promise.reject(
        new StoreError(
          'STORE_FAILED',
          `The nats store has ${pendingOps} operations pending, its limit (pendingOpsMax). Retry later, or raise pendingOpsMax if the NATS server keeps up.`,
          {
            retryable: true,
            details: {
              reason: 'overloaded',
              pendingOpsMax: settings.pendingOpsMax,
            },
          },
        ),
      );
    }
    pendingOps++;
    let run: Promise<T>;
    try {
      run = current !== undefined ? fn(current) : session().then(fn);
    } catch (error) {
      run = Promise.reject(toStoreError(error));
    }
    return run.finally(() => {
      if (--pendingOps === 0) {
        const waiters = idle;
        idle = [];
        for (const wake of waiters) wake();
      }
    });
  }

  /** Runs `fn` in the queue of the entity `key`. */
  function entityOp<T>(
    key: Parameters<typeof encodeEntity>[0],
    fn: (opened: Session, state: ReturnType<EntityCache['get']>) => Promise<T>,
  ): Promise<T> {
    return track((opened) => {
      const state = opened.cache.get(encodeEntity(key));
      return opened.cache.run(state, () => fn(opened, state));
    });
  }

  /** A read, with the store open and the entity's state at hand. */
  async function withEntity<T>(
    key: Parameters<typeof encodeEntity>[0],
    fn: (opened: Session, state: ReturnType<EntityCache['get']>) => Promise<T>,
  ): Promise<T> {
    const opened = await session();
    return fn(opened, opened.cache.get(encodeEntity(key)));
  }

  /** Stops a read that outlives close(). */
  function checkOpen(): void {
    if (closing !== undefined) throw closedError();
  }

  const store: Store = {
    kind: 'nats',
    durable: true,

    open() {
      const closed = closing;
      if (closed === undefined) return session().then(() => undefined);
      return closed.then(() => {
        if (closing === closed) {
          closing = undefined;
          current = undefined;
          opening = undefined;
        }
        return session().then(() => undefined);
      });
    },

    useLogger(logger) {
      systemLogger = logger;
    },

    joinCluster(joined) {
      assert(
        (current === undefined && opening === undefined) ||
          closing !== undefined,
        () => 'joinCluster must be called before the store is opened',
      );
      assert(
        typeof joined === 'object' &&
          joined !== null &&
          typeof joined.fence?.tokenFor === 'function' &&
          typeof joined.fence.check === 'function',
        () =>
          `joinCluster takes a ClusterBinding with a fence, got ${describe(joined)}`,
      );
      assert(
        joined.shards === undefined ||
          (Number.isInteger(joined.shards.count) &&
            joined.shards.count >= 1 &&
            typeof joined.shards.of === 'function'),
        () =>
          `ClusterBinding.shards must be { count: a positive integer, of(key) }, got ${describe(joined.shards)}`,
      );
      binding = joined;
    },

    write(write: EntityWrite) {
      assertWrite(write);
      return entityOp(write.key, (opened, state) =>
        runWrite(opened, state, write),
      );
    },

    journal: {
      append(key, entries, expectedSeq) {
        return store.write({ key, entries, expectedSeq });
      },

      async *read(key, fromSeq, toSeq) {
        const opened = await session();
        const state = opened.cache.get(encodeEntity(key));
        for await (const entry of readJournal(opened, state, fromSeq, toSeq)) {
          checkOpen();
          yield entry;
        }
      },

      lastSeq(key) {
        return withEntity(key, lastSeq);
      },
    },

    snapshots: {
      load(key) {
        return withEntity(key, loadSnapshot);
      },

      save(key, snapshot) {
        assertSnapshot(snapshot);
        return entityOp(key, (opened, state) =>
          runSave(opened, state, snapshot),
        );
      },
    },

    async *scanWakeups(options) {
      const opened = await session();
      for await (const wakeup of scanWakeups(opened, options?.partitions)) {
        checkOpen();
        yield wakeup;
      }
    },

    async *scanEntities(type) {
      const opened = await session();
      for await (const key of scanEntities(opened, type)) {
        checkOpen();
        yield key;
      }
    },

    appendDeadLetter(letter) {
      // Not fenced and not queued behind the entity's writes: a dead letter
      // is an audit record of a failure that happened, wherever it did.
      return track(async (opened) => {
        const tokens = encodeEntity(letter.key).tokens;
        const ack = await publish(
          opened,
          opened.names.deadLetterSubject(tokens),
          encodeDeadLetter(letter),
        );
        if (!ack.ok) {
          throw ack.wrongLastSequence
            ? new StoreError(
                'STORE_FAILED',
                'Unexpected sequence check on a dead letter.',
                { retryable: true },
              )
            : ack.error;
        }
      });
    },

    async readDeadLetters(filter) {
      const opened = await session();
      const tokens =
        filter?.key === undefined ? undefined : encodeEntity(filter.key).tokens;
      return readDeadLetters(opened, filter, tokens);
    },

    forget(key) {
      // A hint: a key that cannot be encoded was never cached.
      if (current === undefined) return;
      try {
        current.cache.forget(encodeEntity(key).tokens);
      } catch {
        return;
      }
    },

    close() {
      if (closing === undefined) {
        closing = (async () => {
          if (pendingOps > 0) {
            await new Promise<void>((resolve) => idle.push(resolve));
          }
          const opened = current ?? (await opening?.catch(() => undefined));
          if (opened === undefined) return;
          opened.wire.close(closedError());
          opened.cache.clear();
          if (opened.ownsConnection) {
            await opened.nc.close().catch(() => undefined);
          }
        })();
      }
      return closing;
    },

    async sizeBytes() {
      const opened = await session();
      const { names } = opened;
      const sizes = await Promise.all(
        [
          names.journalStream,
          names.deadLetterStream,
          `KV_${names.snapshotBucket}`,
          `KV_${names.wakeupBucket}`,
        ].map((stream) => streamBytes(opened, stream)),
      );
      return sizes.reduce((sum, bytes) => sum + bytes, 0);
    },
  };
  return store;
}

function assertSnapshot(snapshot: StoredSnapshot): void {
  checkSnapshot(snapshot, assert);
}

function assertWrite(write: EntityWrite): void {
  checkWrite(write, assert);
}
