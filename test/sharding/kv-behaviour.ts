// The behaviour every ClusterKv keeps (src/sharding/kv.ts), as one suite run
// against each implementation: the in-memory one (memory-kv.test.ts) and
// JetStream KV on a real nats-server (nats-kv.test.ts). Each test gets two
// clients of one fresh bucket, standing for two processes.
import { describe, expect, test } from 'vitest';

import { ConfigError, isShardchartError } from '../../src/errors.js';
import {
  isKvConflict,
  KvConflictError,
  type ClusterKv,
  type KvWatchEvent,
} from '../../src/sharding/kv.js';

export interface KvPair {
  readonly a: ClusterKv;
  readonly b: ClusterKv;
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (value: Uint8Array): string => new TextDecoder().decode(value);

/** Reads events from a watch until `until` says stop, or fails after `timeoutMs`. */
export async function collect(
  iterator: AsyncIterator<KvWatchEvent>,
  until: (events: KvWatchEvent[]) => boolean,
  timeoutMs = 10_000,
): Promise<KvWatchEvent[]> {
  const events: KvWatchEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!until(events)) {
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new Error(
        `watch timed out; got ${JSON.stringify(events.map(show))}`,
      );
    }
    let timer: NodeJS.Timeout | undefined;
    const next = await Promise.race([
      iterator.next(),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), left);
      }),
    ]);
    clearTimeout(timer);
    if (next === 'timeout') continue;
    if (next.done === true)
      throw new Error(`watch ended; got ${JSON.stringify(events.map(show))}`);
    events.push(next.value);
  }
  return events;
}

/** A compact form of an event for assertions: `put k=v @rev` etc. */
export function show(event: KvWatchEvent): string {
  switch (event.kind) {
    case 'put':
      return `put ${event.key}=${text(event.value)}`;
    case 'delete':
      return `delete ${event.key}`;
    default:
      return event.kind;
  }
}

const hasReady = (events: KvWatchEvent[]): boolean =>
  events.some((e) => e.kind === 'ready');

export function describeClusterKvBehaviour(
  name: string,
  open: () => Promise<KvPair>,
): void {
  describe(`${name} - ClusterKv behaviour`, () => {
    test('kv - create stores a value once; a second create conflicts', async () => {
      const { a, b } = await open();
      expect(await a.get('nodes.n1')).toBeUndefined();
      const revision = await a.create('nodes.n1', bytes('one'));
      expect(revision).toBeGreaterThan(0);
      const entry = await b.get('nodes.n1');
      expect(entry?.revision).toBe(revision);
      expect(text(entry!.value)).toBe('one');
      const err = await b
        .create('nodes.n1', bytes('two'))
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvConflictError);
      expect((err as KvConflictError).code).toBe('STORE_CONFLICT');
      expect((err as KvConflictError).details).toMatchObject({
        key: 'nodes.n1',
        expectedRevision: 0,
      });
      expect(text((await a.get('nodes.n1'))!.value)).toBe('one');
    });

    test('kv - update is a compare-and-set on the latest revision', async () => {
      const { a, b } = await open();
      const r1 = await a.create('shards.1', bytes('a'));
      const r2 = await b.update('shards.1', bytes('b'), r1);
      expect(r2).toBeGreaterThan(r1);
      const stale = await a
        .update('shards.1', bytes('c'), r1)
        .catch((e: unknown) => e);
      expect(isKvConflict(stale)).toBe(true);
      expect((stale as KvConflictError).details).toMatchObject({
        key: 'shards.1',
        expectedRevision: r1,
      });
      const entry = await a.get('shards.1');
      expect(entry?.revision).toBe(r2);
      expect(text(entry!.value)).toBe('b');
      // A key never written has no revision to match.
      await expect(a.update('shards.2', bytes('x'), r2)).rejects.toBeInstanceOf(
        KvConflictError,
      );
    });

    test('kv - delete and purge honour an expected revision; create works again after them', async () => {
      const { a, b } = await open();
      const r1 = await a.create('nodes.n1', bytes('v'));
      await expect(
        b.delete('nodes.n1', { expectedRevision: r1 + 100 }),
      ).rejects.toBeInstanceOf(KvConflictError);
      expect(await a.get('nodes.n1')).toBeDefined();
      await b.delete('nodes.n1', { expectedRevision: r1 });
      expect(await a.get('nodes.n1')).toBeUndefined();
      const r2 = await a.create('nodes.n1', bytes('again'));
      expect(r2).toBeGreaterThan(r1);
      await expect(
        a.purge('nodes.n1', { expectedRevision: r1 }),
      ).rejects.toBeInstanceOf(KvConflictError);
      await a.purge('nodes.n1', { expectedRevision: r2 });
      expect(await b.get('nodes.n1')).toBeUndefined();
      await b.create('nodes.n1', bytes('third'));
      await a.delete('nodes.n1');
      expect(await b.get('nodes.n1')).toBeUndefined();
    });

    test('kv - revisions grow across keys of the bucket', async () => {
      const { a, b } = await open();
      const revisions = [
        await a.create('x.1', bytes('1')),
        await b.create('y.1', bytes('2')),
        await a.put('x.1', bytes('3')),
        await b.put('z', bytes('4')),
      ];
      expect([...revisions].sort((p, q) => p - q)).toEqual(revisions);
      expect(new Set(revisions).size).toBe(4);
    });

    test('kv - keys and list by prefix, sorted, without deleted keys', async () => {
      const { a, b } = await open();
      await a.create('nodes.b', bytes('B'));
      await a.create('nodes.a', bytes('A'));
      await a.create('shards.0', bytes('S'));
      await a.create('nodes.c', bytes('C'));
      await b.delete('nodes.c');
      expect(await b.keys('nodes.')).toEqual(['nodes.a', 'nodes.b']);
      const listed = await b.list('nodes.');
      expect(listed.map((e) => [e.key, text(e.value)])).toEqual([
        ['nodes.a', 'A'],
        ['nodes.b', 'B'],
      ]);
      expect(await b.keys()).toEqual(['nodes.a', 'nodes.b', 'shards.0']);
      expect(await b.keys('absent.')).toEqual([]);
    });

    test('kv - invalid keys, prefixes, revisions and oversized values are refused with ConfigError', async () => {
      const { a } = await open();
      await expect(a.get('bad key')).rejects.toBeInstanceOf(ConfigError);
      await expect(a.create('a..b', bytes('x'))).rejects.toBeInstanceOf(
        ConfigError,
      );
      await expect(a.create('a.*', bytes('x'))).rejects.toBeInstanceOf(
        ConfigError,
      );
      await expect(a.list('nodes')).rejects.toBeInstanceOf(ConfigError);
      await expect(a.update('k', bytes('x'), 0)).rejects.toBeInstanceOf(
        ConfigError,
      );
      await expect(
        a.create('k', new Uint8Array(2_000_000)),
      ).rejects.toBeInstanceOf(ConfigError);
    });

    test('kv - stored values are copies of the bytes given', async () => {
      const { a, b } = await open();
      const value = bytes('abc');
      await a.create('k', value);
      value[0] = 0x7a;
      expect(text((await b.get('k'))!.value)).toBe('abc');
    });

    test('kv - watch delivers live values, then ready, then writes in revision order', async () => {
      const { a, b } = await open();
      await a.create('nodes.n1', bytes('1'));
      await a.create('shards.0', bytes('s'));
      await a.create('nodes.gone', bytes('x'));
      await a.delete('nodes.gone');
      await a.create('nodes.n2', bytes('2'));
      const watch = await b.watch('nodes.');
      const it = watch[Symbol.asyncIterator]();
      const initial = await collect(it, hasReady);
      expect(initial.map(show)).toEqual([
        'put nodes.n1=1',
        'put nodes.n2=2',
        'ready',
      ]);
      const r = await a.update(
        'nodes.n1',
        bytes('1b'),
        (initial[0] as { revision: number }).revision,
      );
      await a.put('shards.0', bytes('ignored'));
      await a.delete('nodes.n2');
      await a.create('nodes.n3', bytes('3'));
      const later = await collect(it, (events) => events.length >= 3);
      expect(later.map(show)).toEqual([
        'put nodes.n1=1b',
        'delete nodes.n2',
        'put nodes.n3=3',
      ]);
      expect((later[0] as { revision: number }).revision).toBe(r);
      const revisions = later.map((e) => (e as { revision: number }).revision);
      expect([...revisions].sort((p, q) => p - q)).toEqual(revisions);
      await watch.stop();
      expect((await it.next()).done).toBe(true);
    });

    test('kv - a watch of an empty prefix is ready at once', async () => {
      const { a, b } = await open();
      const watch = await a.watch('nothing.');
      const it = watch[Symbol.asyncIterator]();
      expect((await collect(it, hasReady)).map(show)).toEqual(['ready']);
      await b.create('nothing.here', bytes('now'));
      expect((await collect(it, (e) => e.length === 1)).map(show)).toEqual([
        'put nothing.here=now',
      ]);
      await watch.stop();
    });

    test('kv - a watch has one consumer', async () => {
      const { a } = await open();
      const watch = await a.watch();
      watch[Symbol.asyncIterator]();
      expect(() => watch[Symbol.asyncIterator]()).toThrow(ConfigError);
      await watch.stop();
    });

    test('kv - compare-and-set races between two clients have exactly one winner', async () => {
      // Two clients race 25 rounds of updates from the same revision, and
      // 25 creates of fresh keys: each round must have one winner and one
      // KvConflictError, never two winners and never another error.
      const { a, b } = await open();
      let revision = await a.create('shards.7', bytes('start'));
      for (let round = 0; round < 25; round++) {
        const results = await Promise.allSettled([
          a.update('shards.7', bytes(`a${round}`), revision),
          b.update('shards.7', bytes(`b${round}`), revision),
        ]);
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r) => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(1);
        expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(
          KvConflictError,
        );
        revision = (won[0] as PromiseFulfilledResult<number>).value;
        const entry = await b.get('shards.7');
        expect(entry?.revision).toBe(revision);
      }
      for (let round = 0; round < 25; round++) {
        const results = await Promise.allSettled([
          a.create(`race.${round}`, bytes('a')),
          b.create(`race.${round}`, bytes('b')),
        ]);
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        const lost = results.find((r) => r.status === 'rejected');
        expect(isKvConflict(lost?.reason)).toBe(true);
      }
    });

    test('kv - a closed client refuses operations with CLUSTER_UNAVAILABLE', async () => {
      const { a, b } = await open();
      await a.close();
      const err = await a.get('k').catch((e: unknown) => e);
      expect(isShardchartError(err, 'CLUSTER_UNAVAILABLE')).toBe(true);
      // The other client is unaffected.
      await b.create('k', bytes('v'));
    });
  });
}
