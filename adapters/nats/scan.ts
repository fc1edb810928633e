/**
 * Streaming reads over a stream of the nats adapter: an ordered consumer
 * (ephemeral, in server memory, no acks) fetched in bounded batches, and
 * the paged subject list of a stream.
 *
 * A scan knows how many messages are pending when it starts and asks for
 * at most that many, so it never waits on an empty stream; a batch that
 * brings nothing within the request timeout fails with a retryable
 * `STORE_FAILED` (the connection or the server went away), and the
 * consumer is deleted when the scan ends, early or not (the server also
 * drops it after `INACTIVE_MS` without a pull, should the delete be lost).
 */
import { DeliverPolicy, type JsMsg } from '@nats-io/jetstream';

import { StoreError, isShardchartError } from '../../src/errors.js';
import { EMPTY, type Session } from './session.js';

/** Messages pulled per batch at most. */
const BATCH_MAX = 256;
/** The server deletes a scan consumer idle this long. */
const INACTIVE_MS = 30_000;
/** `fetch` refuses shorter expiries. */
const FETCH_EXPIRES_MIN_MS = 1_000;

interface ScanOptions {
  /** Subject filter (one subject or a wildcard). */
  readonly filter: string;
  /** First stream sequence to deliver (default 1). */
  readonly startSeq?: number;
  /** Stop after this stream sequence. */
  readonly endSeq?: number;
  /** Only the newest message of each subject (KV buckets). */
  readonly lastPerSubject?: boolean;
  /** Deliver headers only, without payloads. */
  readonly headersOnly?: boolean;
  /** Messages pulled per batch at most (default 256). */
  readonly batchMax?: number;
}

export async function* scanStream(
  session: Session,
  stream: string,
  options: ScanOptions,
): AsyncGenerator<JsMsg> {
  const consumer = await guard(stream, () =>
    session.js.consumers.get(stream, {
      filter_subjects: options.filter,
      inactive_threshold: INACTIVE_MS,
      ...(options.headersOnly === true ? { headers_only: true } : {}),
      ...(options.lastPerSubject === true
        ? { deliver_policy: DeliverPolicy.LastPerSubject }
        : { opt_start_seq: Math.max(options.startSeq ?? 1, 1) }),
    }),
  );
  try {
    let remaining = (await consumer.info(true)).num_pending;
    const batchMax = Math.min(options.batchMax ?? BATCH_MAX, BATCH_MAX);
    const expires = Math.max(
      session.settings.requestTimeoutMs,
      FETCH_EXPIRES_MIN_MS,
    );
    while (remaining > 0) {
      const batch = await guard(stream, () =>
        consumer.fetch({
          max_messages: Math.min(batchMax, remaining),
          expires,
        }),
      );
      let received = 0;
      try {
        for await (const msg of batch) {
          received++;
          remaining = msg.info.pending;
          if (options.endSeq !== undefined && msg.seq > options.endSeq) return;
          yield msg;
          if (options.endSeq !== undefined && msg.seq >= options.endSeq) return;
          if (remaining === 0) break;
        }
      } catch (error) {
        throw scanFailed(stream, error);
      } finally {
        batch.stop();
      }
      if (received === 0) {
        throw scanFailed(
          stream,
          new Error(`no message arrived within ${expires} ms`),
        );
      }
    }
  } finally {
    consumer.delete().catch(() => undefined);
  }
}

/**
 * Subjects holding messages in `stream` that match `filter`, page by page
 * as the server lists them (its pages hold up to 100,000 subjects).
 */
export async function* streamSubjects(
  session: Session,
  stream: string,
  filter: string,
): AsyncGenerator<string> {
  let offset = 0;
  for (;;) {
    const msg = await session.wire.request(
      `$JS.API.STREAM.INFO.${stream}`,
      new TextEncoder().encode(
        JSON.stringify({ subjects_filter: filter, offset }),
      ),
    );
    if ((msg.headers?.code ?? 0) !== 0 && msg.data.length === 0) {
      throw scanFailed(stream, new Error(`status ${msg.headers?.code}`));
    }
    const info = parseInfo(stream, msg.data);
    const subjects = Object.keys(info.state?.subjects ?? {});
    for (const subject of subjects) yield subject;
    offset += subjects.length;
    if (
      subjects.length === 0 ||
      info.total === undefined ||
      offset >= info.total
    ) {
      return;
    }
  }
}

/** Bytes a stream holds, from its info. */
export async function streamBytes(
  session: Session,
  stream: string,
): Promise<number> {
  const msg = await session.wire.request(
    `$JS.API.STREAM.INFO.${stream}`,
    EMPTY,
  );
  return parseInfo(stream, msg.data).state?.bytes ?? 0;
}

interface StreamInfoReply {
  total?: number;
  state?: { subjects?: Record<string, number>; bytes?: number };
  error?: { description?: string; code?: number };
}

function parseInfo(stream: string, data: Uint8Array): StreamInfoReply {
  let info: StreamInfoReply;
  try {
    info = JSON.parse(new TextDecoder().decode(data)) as StreamInfoReply;
  } catch (cause) {
    throw scanFailed(stream, cause);
  }
  if (info.error !== undefined) {
    throw scanFailed(
      stream,
      new Error(
        `${info.error.description ?? 'error'} (${info.error.code ?? 0})`,
      ),
    );
  }
  return info;
}

async function guard<T>(stream: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw scanFailed(stream, error);
  }
}

function scanFailed(stream: string, cause: unknown): Error {
  if (isShardchartError(cause)) return cause;
  return new StoreError(
    'STORE_FAILED',
    `Reading stream '${stream}' failed: ${cause instanceof Error ? cause.message : String(cause)}. Retry once the NATS server answers again.`,
    { cause, retryable: true, details: { reason: 'scan', stream } },
  );
}
