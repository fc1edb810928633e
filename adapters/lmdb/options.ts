/**
 * Options of the lmdb adapter: their defaults, their validation, and how
 * they open the LMDB environment.
 */
import { open } from 'lmdb';

import { ConfigError, StoreError } from '../../src/errors.js';
import type { LmdbDatabases } from './commit.js';
import { describe } from './keys.js';

/** Options of `lmdbStore`. */
export interface LmdbStoreOptions {
  /** Directory of the LMDB environment; created when missing. */
  readonly path: string;
  /**
   * `true` (default): every acknowledged write is fsynced. `false` skips
   * fsync: faster, survives a process crash but not a power loss or OS
   * crash, and the store reports `durable: false`.
   */
  readonly sync?: boolean;
  /**
   * Fixed LMDB map size (the most the files may grow to). By default lmdb-js
   * grows the map as needed.
   */
  readonly mapSizeBytes?: number;
  /** Writes applied in one transaction at most. Default 1,000. */
  readonly commitOpsMax?: number;
  /** Writes waiting for a transaction at most; more reject. Default 100,000. */
  readonly pendingOpsMax?: number;
  /**
   * Entities whose heads are cached in memory at most (clean ones; an
   * entity with writes not yet checkpointed always stays). The engine tells
   * the store when it passivates an entity, which drops its entry, so this
   * bound matters only for entities written and never passivated.
   * Default 100,000.
   */
  readonly cachedEntitiesMax?: number;
  /**
   * Log records between checkpoints. A checkpoint writes where each entity
   * written since the last one starts its chain; after a crash, the records
   * since the last checkpoint are replayed on open. When many entities are
   * written, a checkpoint waits for 4 records per such entity, so at most
   * max(checkpointRecords, 4 x entities written since the last checkpoint)
   * records are replayed (about 1 s per 100,000 on the bench machine).
   * Default 10,000.
   */
  readonly checkpointRecords?: number;
  /**
   * How long one commit may take before the store gives up on it. A commit
   * that never finishes (a hung disk, or an LMDB environment that failed
   * in a way lmdb-js does not report) then fails its writes with a
   * non-retryable `STORE_FAILED` and the store refuses everything until it
   * is opened again, instead of leaving its callers waiting forever. Such a
   * write may still reach the disk later. Default 60,000 ms.
   */
  readonly commitTimeoutMs?: number;
}

/** Defaults of the lmdb adapter's limits, in one place. */
export const defaults = {
  commitOpsMax: 1_000,
  pendingOpsMax: 100_000,
  cachedEntitiesMax: 100_000,
  checkpointRecords: 10_000,
  commitTimeoutMs: 60_000,
  /**
   * Passivated entities still waiting for a checkpoint that trigger one, so
   * their memory is released soon after the engine lets go of them.
   */
  forgottenDirtyMax: 1_000,
  /**
   * Batches handed to lmdb-js and not committed yet, at most: a second is
   * handed over while the first is being committed, and lmdb-js commits it
   * right after; see `commit.ts`.
   */
  commitsInFlightMax: 2,
  /**
   * Writes a batch needs, at least, to be split in two halves when nothing
   * is being committed, so two groups of callers take turns on the disk.
   */
  splitOpsMin: 8,
  /** Entries, wake-ups or entities read per read transaction while streaming. */
  readChunkMax: 256,
  /** `readDeadLetters` limit when the caller gives none. */
  deadLetterLimit: 1_000,
} as const;

/** Validated options with defaults applied. */
export interface Settings {
  readonly path: string;
  readonly sync: boolean;
  readonly mapSizeBytes: number | undefined;
  readonly commitOpsMax: number;
  readonly pendingOpsMax: number;
  readonly cachedEntitiesMax: number;
  readonly checkpointRecords: number;
  readonly commitTimeoutMs: number;
}

/** Checks the options; a bad one is a `ConfigError` naming it. */
export function validate(options: LmdbStoreOptions): Settings {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(
      `lmdbStore needs an options object with a path, got ${describe(options)}.`,
    );
  }
  if (typeof options.path !== 'string' || options.path.length === 0) {
    throw new ConfigError(
      `lmdbStore option 'path' must be a non-empty directory path, got ${describe(options.path)}.`,
      { details: { path: options.path } },
    );
  }
  if (options.sync !== undefined && typeof options.sync !== 'boolean') {
    throw new ConfigError(
      `lmdbStore option 'sync' must be a boolean, got ${describe(options.sync)}.`,
      { details: { sync: options.sync } },
    );
  }
  const positive = (name: keyof LmdbStoreOptions, fallback: number): number => {
    const value = options[name] ?? fallback;
    if (!Number.isSafeInteger(value) || (value as number) < 1) {
      throw new ConfigError(
        `lmdbStore option '${name}' must be a positive integer, got ${describe(value)}.`,
        { details: { [name]: value } },
      );
    }
    return value as number;
  };
  const mapSizeBytes =
    options.mapSizeBytes === undefined
      ? undefined
      : positive('mapSizeBytes', 0);
  if (mapSizeBytes !== undefined && mapSizeBytes < 1_048_576) {
    throw new ConfigError(
      `lmdbStore option 'mapSizeBytes' must be at least 1 MiB, got ${mapSizeBytes}.`,
      { details: { mapSizeBytes } },
    );
  }
  return {
    path: options.path,
    sync: options.sync !== false,
    mapSizeBytes,
    commitOpsMax: positive('commitOpsMax', defaults.commitOpsMax),
    pendingOpsMax: positive('pendingOpsMax', defaults.pendingOpsMax),
    cachedEntitiesMax: positive(
      'cachedEntitiesMax',
      defaults.cachedEntitiesMax,
    ),
    checkpointRecords: positive(
      'checkpointRecords',
      defaults.checkpointRecords,
    ),
    commitTimeoutMs: positive('commitTimeoutMs', defaults.commitTimeoutMs),
  };
}

/** Opens the environment and its sub-databases (raw bytes in and out). */
export function openDatabases(settings: Settings): LmdbDatabases {
  try {
    const env = open<Uint8Array, Uint8Array>({
      path: settings.path,
      // With sync, a plain synchronous commit: LMDB fsyncs the data and
      // then the meta page before the commit returns. lmdb-js's
      // overlappingSync (its default on Linux) moves the fsync out of the
      // write lock, which helps many independent committers, but a lone
      // commit then waits about twice as long (measured on the bench
      // machine: 5.2 ms against 2.4 ms for 64 appended records), and the
      // group commit makes our commits mostly lone ones.
      ...(settings.sync
        ? { overlappingSync: false }
        : { noSync: true, overlappingSync: false }),
      // Each batch is one explicit block of writes (see `commit.ts`), so
      // lmdb-js need not gather a turn's writes into a block of its own,
      // whose commit promise nobody would hold: a failed commit would
      // reject it unhandled and end the process.
      eventTurnBatching: false,
      ...(settings.mapSizeBytes === undefined
        ? {}
        : { mapSize: settings.mapSizeBytes }),
      // `path` is always a directory, even when its name has a dot (lmdb-js
      // would otherwise take 'orders.db' for a file name).
      noSubdir: false,
      maxDbs: 8,
      encoding: 'binary',
      keyEncoding: 'binary',
      compression: false,
      cache: false,
    });
    const sub = (name: string) =>
      env.openDB<Uint8Array, Uint8Array>(name, {
        encoding: 'binary',
        keyEncoding: 'binary',
        compression: false,
        cache: false,
      });
    return {
      env,
      log: sub('log'),
      heads: sub('heads'),
      meta: sub('meta'),
      snapshots: sub('snapshots'),
      wakeups: sub('wakeups'),
      deadLetters: sub('dead-letters'),
      deadLetterIndex: sub('dead-letter-index'),
    };
  } catch (cause) {
    throw new StoreError(
      'STORE_FAILED',
      `Cannot open the LMDB environment at '${settings.path}': ${cause instanceof Error ? cause.message : String(cause)}. Check that the directory is writable and not open in this process with other sync settings.`,
      { cause, details: { path: settings.path } },
    );
  }
}

/**
 * LMDB's key size limit. lmdb-js builds LMDB with 1978-byte keys and exposes
 * the limit only on its internal native handle; 511 is stock LMDB's limit.
 */
export function maxKeyBytes(dbs: LmdbDatabases): number {
  const native = (dbs.env as unknown as { env?: { getMaxKeySize?(): number } })
    .env;
  return native?.getMaxKeySize?.() ?? 511;
}
