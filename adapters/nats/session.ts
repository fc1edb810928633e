/**
 * One open nats store: its connection, names and limits, and the small
 * JetStream operations everything else is built from (publish with an
 * expected sequence, direct get, KV put and purge), with their answers
 * turned into coded errors.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { MsgHdrsImpl, headers as natsHeaders } from '@nats-io/transport-node';
import type { Logger } from 'pino';

import { StoreError } from '../../src/errors.js';
import type {
  EntityKey,
  FenceToken,
  ClusterBinding,
  WriteFence,
} from '../../src/persistence/types.js';
import { EntityCache } from './entity-cache.js';
import { quote } from './keys.js';
import type { Names, Settings } from './options.js';
import type { Wire } from './wire.js';

/** Header carrying the fencing token of a clustered write. */
const FENCE_HEADER = 'Shardchart-Fence';
const EXPECTED_LAST_SUBJECT_SEQ = 'Nats-Expected-Last-Subject-Sequence';
/** JetStream's error code for a failed expected-last-subject-sequence check. */
const WRONG_LAST_SEQUENCE = 10071;

export interface Session {
  readonly nc: NatsConnection;
  /** True when the store opened the connection and must close it. */
  readonly ownsConnection: boolean;
  readonly wire: Wire;
  readonly js: JetStreamClient;
  readonly names: Names;
  readonly settings: Settings;
  readonly cache: EntityCache;
  readonly fence: WriteFence | undefined;
  /**
   * The cluster's shards, when the store joined a cluster node that gave
   * them: the timer index is then kept by shard (`wake-index.ts`).
   */
  readonly shards: ClusterBinding['shards'];
  readonly log: Logger;
  /** Largest message payload the server accepts. */
  readonly payloadBytesMax: number;
  /**
   * Streams read through their leader (`STREAM.MSG.GET`) instead of by
   * direct get: those with replicas, whose followers also answer direct
   * gets and may lag behind the last acknowledged write.
   */
  readonly leaderReads: ReadonlySet<string> | 'all';
}

/** A JetStream publish acknowledgement, or why there is none. */
export type Ack =
  | { readonly ok: true; readonly seq: number }
  | { readonly ok: false; readonly wrongLastSequence: true }
  | {
      readonly ok: false;
      readonly wrongLastSequence: false;
      readonly error: StoreError;
    };

/**
 * Publishes to a stream subject and reads the acknowledgement. `expected`
 * sets the expected last stream sequence of the subject (0: the subject
 * must be empty).
 */
export async function publish(
  session: Session,
  subject: string,
  data: Uint8Array,
  options: {
    expected?: number;
    fence?: FenceToken;
    extra?: Record<string, string>;
  } = {},
): Promise<Ack> {
  let hdrs: MsgHdrs | undefined;
  if (
    options.expected !== undefined ||
    options.fence !== undefined ||
    options.extra !== undefined
  ) {
    hdrs = natsHeaders();
    if (options.expected !== undefined) {
      hdrs.set(EXPECTED_LAST_SUBJECT_SEQ, String(options.expected));
    }
    if (options.fence !== undefined) {
      const { shard, token, node } = options.fence;
      hdrs.set(FENCE_HEADER, `${shard}:${token}:${node}`);
    }
    if (options.extra !== undefined) {
      for (const [name, value] of Object.entries(options.extra))
        hdrs.set(name, value);
    }
  }
  const msg = await session.wire.request(subject, data, hdrs);
  return readAck(msg, subject);
}

function readAck(msg: Msg, subject: string): Ack {
  const status = msg.headers?.code ?? 0;
  if (status !== 0 && msg.data.length === 0) {
    return {
      ok: false,
      wrongLastSequence: false,
      error: statusError(msg, subject),
    };
  }
  let body: {
    seq?: unknown;
    error?: { code?: unknown; err_code?: unknown; description?: unknown };
  };
  try {
    body = JSON.parse(new TextDecoder().decode(msg.data)) as typeof body;
  } catch (cause) {
    return {
      ok: false,
      wrongLastSequence: false,
      error: new StoreError(
        'STORE_FAILED',
        `The NATS server answered a publish on '${subject}' with something that is not a JetStream acknowledgement. Check that '${subject}' is bound to the store's stream only.`,
        { cause, retryable: false, details: { reason: 'ack', subject } },
      ),
    };
  }
  if (body.error !== undefined) {
    if (body.error.err_code === WRONG_LAST_SEQUENCE) {
      return { ok: false, wrongLastSequence: true };
    }
    const code = typeof body.error.code === 'number' ? body.error.code : 0;
    return {
      ok: false,
      wrongLastSequence: false,
      error: new StoreError(
        'STORE_FAILED',
        `JetStream refused a publish on '${subject}': ${String(body.error.description)} (code ${code}, error ${String(body.error.err_code)}).${code >= 500 ? ' Retry later.' : ''}`,
        {
          retryable: code >= 500,
          details: {
            reason: 'jetstream',
            subject,
            code,
            errCode: body.error.err_code,
          },
        },
      ),
    };
  }
  if (!Number.isSafeInteger(body.seq) || (body.seq as number) < 1) {
    return {
      ok: false,
      wrongLastSequence: false,
      error: new StoreError(
        'STORE_FAILED',
        `The JetStream acknowledgement of a publish on '${subject}' has no stream sequence.`,
        { retryable: false, details: { reason: 'ack', subject } },
      ),
    };
  }
  return { ok: true, seq: body.seq as number };
}

/** A message read by direct get, with its stream sequence. */
interface StoredMsg {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
}

/**
 * Reads one message of `stream`: the last message on `subject`, or with
 * `from` the first message on `subject` at stream sequence `from` or
 * later. `undefined` when there is none.
 *
 * A stream with one replica is read by direct get, answered without any
 * consumer or API round trip on the server. A replicated stream is read
 * through its leader (`STREAM.MSG.GET`): followers answer direct gets too,
 * and one that lags would hide the newest acknowledged messages from the
 * node that just took over an entity.
 */
export async function directGet(
  session: Session,
  stream: string,
  subject: string,
  from?: number,
): Promise<StoredMsg | undefined> {
  if (session.leaderReads === 'all' || session.leaderReads.has(stream)) {
    return leaderGet(session, stream, subject, from);
  }
  const msg =
    from === undefined
      ? await session.wire.request(
          `$JS.API.DIRECT.GET.${stream}.${subject}`,
          EMPTY,
        )
      : await session.wire.request(
          `$JS.API.DIRECT.GET.${stream}`,
          new TextEncoder().encode(
            JSON.stringify({ seq: from, next_by_subj: subject }),
          ),
        );
  const status = msg.headers?.code ?? 0;
  if (status === 404) return undefined;
  if (status !== 0)
    throw statusError(msg, `${stream} (direct get on '${subject}')`);
  const seq = Number(msg.headers?.get('Nats-Sequence'));
  if (!Number.isSafeInteger(seq) || seq < 1) {
    throw new StoreError(
      'STORE_FAILED',
      `A direct get from stream '${stream}' came back without a stream sequence. Enable allow_direct on the stream.`,
      { retryable: false, details: { reason: 'direct-get', stream, subject } },
    );
  }
  return {
    seq,
    subject: msg.headers?.get('Nats-Subject') || subject,
    data: msg.data,
    headers: msg.headers,
  };
}

/** JetStream's error code for "no message found" on STREAM.MSG.GET. */
const NO_MESSAGE_FOUND = 10037;

async function leaderGet(
  session: Session,
  stream: string,
  subject: string,
  from: number | undefined,
): Promise<StoredMsg | undefined> {
  const msg = await session.wire.request(
    `$JS.API.STREAM.MSG.GET.${stream}`,
    new TextEncoder().encode(
      JSON.stringify(
        from === undefined
          ? { last_by_subj: subject }
          : { seq: from, next_by_subj: subject },
      ),
    ),
  );
  const target = `${stream} (message get on '${subject}')`;
  if ((msg.headers?.code ?? 0) !== 0 && msg.data.length === 0) {
    throw statusError(msg, target);
  }
  let reply: {
    message?: {
      subject?: unknown;
      seq?: unknown;
      data?: unknown;
      hdrs?: unknown;
    };
    error?: { code?: unknown; err_code?: unknown; description?: unknown };
  };
  try {
    reply = JSON.parse(new TextDecoder().decode(msg.data)) as typeof reply;
  } catch (cause) {
    throw new StoreError(
      'STORE_FAILED',
      `The NATS server answered a message get on ${target} with something that is not JSON.`,
      {
        cause,
        retryable: true,
        details: { reason: 'message-get', stream, subject },
      },
    );
  }
  if (reply.error !== undefined) {
    if (reply.error.err_code === NO_MESSAGE_FOUND) return undefined;
    throw new StoreError(
      'STORE_FAILED',
      `JetStream refused a message get on ${target}: ${String(reply.error.description)}. Retry later.`,
      {
        retryable: true,
        details: {
          reason: 'message-get',
          stream,
          subject,
          errCode: reply.error.err_code,
        },
      },
    );
  }
  const message = reply.message;
  if (
    message === undefined ||
    !Number.isSafeInteger(message.seq) ||
    typeof message.subject !== 'string'
  ) {
    throw new StoreError(
      'STORE_FAILED',
      `A message get on ${target} came back without a message.`,
      { retryable: true, details: { reason: 'message-get', stream, subject } },
    );
  }
  return {
    seq: message.seq as number,
    subject: message.subject,
    data:
      typeof message.data === 'string'
        ? new Uint8Array(Buffer.from(message.data, 'base64'))
        : EMPTY,
    headers:
      typeof message.hdrs === 'string'
        ? MsgHdrsImpl.decode(
            new Uint8Array(Buffer.from(message.hdrs, 'base64')),
          )
        : undefined,
  };
}

/** A KV entry read by direct get; `deleted` for a delete or purge marker. */
interface KvEntry {
  readonly revision: number;
  readonly deleted: boolean;
  readonly data: Uint8Array;
}

export async function kvGet(
  session: Session,
  bucket: string,
  key: string,
): Promise<KvEntry | undefined> {
  const msg = await directGet(session, `KV_${bucket}`, `$KV.${bucket}.${key}`);
  if (msg === undefined) return undefined;
  return {
    revision: msg.seq,
    deleted: isKvDelete(msg.headers),
    data: msg.data,
  };
}

/** True for the marker a KV delete or purge leaves. */
export function isKvDelete(hdrs: MsgHdrs | undefined): boolean {
  const op = hdrs?.get('KV-Operation');
  return op === 'DEL' || op === 'PURGE';
}

export const EMPTY = new Uint8Array(0);

/**
 * Headers that make a KV publish a purge: the marker replaces the key's
 * entry and any history in one message.
 */
export const KV_PURGE: Readonly<Record<string, string>> = {
  'KV-Operation': 'PURGE',
  'Nats-Rollup': 'sub',
};

/** The error of a refused KV write, where no sequence check was expected to fail. */
export function ackError(
  ack: Exclude<Ack, { ok: true }>,
  bucket: string,
): StoreError {
  if (!ack.wrongLastSequence) return ack.error;
  return new StoreError(
    'STORE_FAILED',
    `An unexpected sequence check failed on KV bucket '${bucket}'.`,
    { retryable: true, details: { bucket } },
  );
}

/** A status answer (503 no responders, 408, ...) as a coded error. */
function statusError(msg: Msg, target: string): StoreError {
  const code = msg.headers?.code ?? 0;
  const description = msg.headers?.description ?? '';
  if (code === 503) {
    return new StoreError(
      'STORE_FAILED',
      `Nothing answered on ${target}: JetStream is unavailable or the stream is missing (503 no responders). Retry once the NATS server is back; if it persists, check that JetStream is enabled and the store's streams exist.`,
      { retryable: true, details: { reason: 'no-responders', target } },
    );
  }
  return new StoreError(
    'STORE_FAILED',
    `The NATS server answered ${code} ${description} on ${target}. Retry later.`,
    {
      retryable: true,
      details: { reason: 'status', target, code, description },
    },
  );
}

/** The seq check failed: another writer appended first. */
export function conflict(
  key: EntityKey,
  expectedSeq: number,
  actualSeq: number,
): StoreError {
  return new StoreError(
    'STORE_CONFLICT',
    expectedSeq === actualSeq
      ? `The journal of entity ${quote(key)} ends at seq ${actualSeq} as expected, but not with the message this store wrote or read last: another writer replaced it. Reload the entity and retry.`
      : `The journal of entity ${quote(key)} ends at seq ${actualSeq}, but the write expected ${expectedSeq}: another writer got there first. Reload the entity and retry.`,
    { retryable: false, details: { key, expectedSeq, actualSeq } },
  );
}
