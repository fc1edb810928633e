/**
 * The streams and buckets of a nats store: created on first open, checked
 * on every open. Several nodes may open the same store at once; creating a
 * stream that exists with the same configuration is a no-op for JetStream,
 * and a lost race is settled by reading the stream's info again.
 *
 * - Journal stream `<prefix>_journal`, subjects `<prefix>.journal.>`: file
 *   storage, no limits, `discard: new` (should someone set a limit, new
 *   writes fail instead of old journal entries vanishing), `deny_delete`
 *   (single messages cannot be removed from a journal; purging an entity's
 *   subject, the documented repair, stays possible), `allow_direct` (reads
 *   by subject without a consumer).
 * - Dead letters `<prefix>_dead_letters`, subjects `<prefix>.dead.>`, alike.
 * - KV buckets `<prefix>_snapshots` and `<prefix>_wakeups`, history 1.
 */
import {
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';

import { StoreError, isShardchartError } from '../../src/errors.js';
import { kvStream, type Names } from './options.js';

/** What the store learnt about its streams. */
interface StorageInfo {
  /** Streams with more than one replica: read from their leader. */
  readonly replicated: ReadonlySet<string>;
}

export async function ensureStorage(
  nc: NatsConnection,
  names: Names,
  replicas: number,
  timeoutMs: number,
): Promise<StorageInfo> {
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc, { timeout: timeoutMs });
  } catch (cause) {
    throw new StoreError(
      'STORE_FAILED',
      `JetStream is not available on the NATS server: ${message(cause)}. Start nats-server with JetStream enabled (-js, or a jetstream {} block) and check that the account may use it.`,
      { cause, retryable: true, details: { reason: 'jetstream' } },
    );
  }
  const replicated = new Set<string>();
  const logStream = (
    name: string,
    subjects: string,
  ): Partial<StreamConfig> & { name: string } => ({
    name,
    subjects: [subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.New,
    num_replicas: replicas,
    allow_direct: true,
    deny_delete: true,
    deny_purge: false,
  });
  for (const [config, subjects] of [
    [
      logStream(names.journalStream, names.journalSubjects),
      names.journalSubjects,
    ],
    [
      logStream(names.deadLetterStream, names.deadLetterSubjects),
      names.deadLetterSubjects,
    ],
  ] as const) {
    const name = config.name;
    const info =
      (await streamInfo(jsm, name)) ??
      (await create(jsm, name, () => jsm.streams.add(config)));
    check(name, info.config, subjects);
    if (info.config.num_replicas > 1) replicated.add(name);
  }
  const kvm = new Kvm(nc);
  for (const bucket of [names.snapshotBucket, names.wakeupBucket]) {
    const name = kvStream(bucket);
    const info =
      (await streamInfo(jsm, name)) ??
      (await create(jsm, name, () =>
        kvm.create(bucket, {
          history: 1,
          replicas,
          storage: StorageType.File,
          allow_direct: true,
        }),
      ));
    check(name, info.config, `$KV.${bucket}.>`);
    if (info.config.num_replicas > 1) replicated.add(name);
  }
  return { replicated };
}

type Info = Awaited<ReturnType<JetStreamManager['streams']['info']>>;

async function streamInfo(
  jsm: JetStreamManager,
  name: string,
): Promise<Info | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (cause) {
    if ((cause as { name?: unknown }).name === 'StreamNotFoundError') {
      return undefined;
    }
    throw failed(name, cause);
  }
}

/** Creates a stream; if another node created it first, reads its info. */
async function create(
  jsm: JetStreamManager,
  name: string,
  make: () => Promise<unknown>,
): Promise<Info> {
  try {
    await make();
  } catch (cause) {
    const info = await streamInfo(jsm, name);
    if (info === undefined) throw failed(name, cause);
    return info;
  }
  const info = await streamInfo(jsm, name);
  if (info === undefined) {
    throw failed(
      name,
      new Error('the stream vanished right after it was created'),
    );
  }
  return info;
}

function check(name: string, config: Info['config'], subjects: string): void {
  const problems: string[] = [];
  if (!config.subjects?.includes(subjects)) {
    problems.push(`it does not take the subjects '${subjects}'`);
  }
  if (config.allow_direct !== true) problems.push('allow_direct is off');
  if (config.storage !== StorageType.File) {
    problems.push('it keeps messages in memory, not in files');
  }
  if (
    (config.max_msgs ?? -1) > 0 ||
    (config.max_bytes ?? -1) > 0 ||
    (config.max_age ?? 0) > 0
  ) {
    if (config.discard !== DiscardPolicy.New) {
      problems.push(
        'it has limits with discard: old, which would delete old records',
      );
    }
  }
  if (problems.length > 0) {
    throw new StoreError(
      'STORE_FAILED',
      `The stream '${name}' exists but does not fit the nats store: ${problems.join('; ')}. Fix it (nats stream edit ${name}) or give the store another prefix.`,
      {
        retryable: false,
        details: { reason: 'stream-config', stream: name, problems },
      },
    );
  }
}

function failed(name: string, cause: unknown): Error {
  if (isShardchartError(cause)) return cause;
  return new StoreError(
    'STORE_FAILED',
    `Cannot set up the stream '${name}' of the nats store: ${message(cause)}. Check the account's JetStream limits and permissions, then retry.`,
    { cause, retryable: true, details: { reason: 'setup', stream: name } },
  );
}

function message(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
