/**
 * Ingress: any NATS client sends an event to an entity with a request on
 * `shardchart.<system>.in.<type>.<id>` and gets the result as the reply.
 *
 * The body is JSON (its first non-blank byte is `{`) or msgpack, and is
 * either the event itself (`{ "type": "PAY", ... }`) or
 * `{ "event": { ... }, "eventId": "..." }`; a `Nats-Msg-Id` header also
 * serves as the event id. The reply uses the body's encoding:
 * `{ "ok": true, "state": { seq, value, context, status, changed } }` or
 * `{ "ok": false, "error": { code, message, retryable } }`. The nodes that
 * host shards answer in one queue group, so each request is handled once.
 */
import type {
  Msg,
  NatsConnection,
  Subscription,
} from '@nats-io/transport-node';
import { decode, encode } from '../../codec/index.js';
import {
  ClusterError,
  isShardchartError,
  type ShardchartError,
} from '../../errors.js';
import type { SystemCore } from '../../system/actor-system.js';
import { checkEvent, checkEventId } from '../../system/validate.js';
import { toWireError } from '../protocol.js';
import type { Subjects } from '../subjects.js';
import type { Router } from './router.js';

type AnyEvent = { type: string; [key: string]: unknown };

function isJson(data: Uint8Array): boolean {
  for (const byte of data) {
    if (byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d)
      continue;
    return byte === 0x7b;
  }
  return false;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class Ingress {
  private subscription: Subscription | undefined;
  private inFlight = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly limits: { bytesMax: number; depthMax: number },
    private readonly router: Router,
    private readonly core: SystemCore,
    private readonly invalid: (error: ShardchartError, where: string) => void,
  ) {}

  start(): void {
    this.subscription = this.nc.subscribe(this.subjects.ingressWildcard, {
      queue: `shardchart-${this.subjects.root}-ingress`.replace(/\./g, '_'),
      callback: (err, msg) => {
        if (err) return;
        void this.handle(msg);
      },
    });
  }

  private async handle(msg: Msg): Promise<void> {
    const json = isJson(msg.data);
    let body: unknown;
    this.inFlight++;
    try {
      try {
        if (msg.data.length > this.limits.bytesMax) {
          throw new ClusterError(
            'MESSAGE_INVALID',
            `The request body has ${msg.data.length} bytes, more than messageBytesMax (${this.limits.bytesMax}).`,
            { details: { bytes: msg.data.length } },
          );
        }
        const target = this.subjects.parseIngress(msg.subject);
        if (target === undefined) {
          throw new ClusterError(
            'MESSAGE_INVALID',
            `The subject ${msg.subject} does not name an entity: use ${this.subjects.root}.in.<type>.<id>.`,
          );
        }
        body = this.parse(msg.data, json);
        const { event, eventId } = this.unwrap(body, msg);
        this.core.typeOf(target.type);
        checkEvent(event, this.core.eventLimits);
        checkEventId(eventId);
        const state = await this.router.send(
          target.type,
          target.id,
          event,
          eventId,
          undefined,
        );
        this.respond(msg, { ok: true, state }, json);
      } catch (error) {
        if (isShardchartError(error, 'MESSAGE_INVALID'))
          this.invalid(error, msg.subject);
        this.respond(msg, { ok: false, error: toWireError(error) }, json);
      }
    } finally {
      this.inFlight--;
    }
  }

  private parse(data: Uint8Array, json: boolean): unknown {
    if (!json) {
      try {
        return decode(data, this.limits);
      } catch (error) {
        throw new ClusterError(
          'MESSAGE_INVALID',
          `The request body is neither JSON nor valid msgpack (${error instanceof Error ? error.message : String(error)}).`,
          { cause: error },
        );
      }
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(
        new TextDecoder('utf-8', { fatal: true }).decode(data),
        (key, value: unknown) =>
          key === '__proto__' || key === 'constructor' ? undefined : value,
      );
    } catch (error) {
      throw new ClusterError(
        'MESSAGE_INVALID',
        `The request body is not valid JSON (${error instanceof Error ? error.message : String(error)}).`,
        { cause: error },
      );
    }
    return parsed;
  }

  private unwrap(
    body: unknown,
    msg: Msg,
  ): { event: AnyEvent; eventId: string | undefined } {
    if (!isRecord(body))
      throw new ClusterError(
        'MESSAGE_INVALID',
        'The request body must be an event object such as {"type":"PAY"} or {"event":{...},"eventId":"..."}.',
      );
    const header =
      msg.headers?.get('Nats-Msg-Id') ||
      msg.headers?.get('Shardchart-Event-Id') ||
      undefined;
    if (isRecord(body.event) && body.type === undefined) {
      const eventId = typeof body.eventId === 'string' ? body.eventId : header;
      return { event: body.event as AnyEvent, eventId };
    }
    return { event: body as AnyEvent, eventId: header };
  }

  private respond(msg: Msg, answer: unknown, json: boolean): void {
    if (!msg.reply) return;
    try {
      msg.respond(
        json
          ? new TextEncoder().encode(JSON.stringify(answer))
          : encode(answer),
      );
    } catch {
      // The requester is gone or the answer cannot be encoded; nothing else to tell.
    }
  }

  stop(): void {
    this.subscription?.unsubscribe();
  }
}
