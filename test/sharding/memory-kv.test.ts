// The in-memory ClusterKv against the shared behaviour suite, plus what only
// it promises: clients made by connect() share one bucket.
import { expect, test } from 'vitest';

import { createMemoryKv } from '../../src/sharding/memory-kv.js';
import { describeClusterKvBehaviour } from './kv-behaviour.js';

describeClusterKvBehaviour('memory', async () => {
  const kv = createMemoryKv();
  return { a: kv.connect(), b: kv.connect() };
});

test('memory kv - connect() gives clients of one bucket, each closed on its own', async () => {
  const kv = createMemoryKv();
  const a = kv.connect();
  const b = kv.connect();
  await a.create('k', new Uint8Array([1]));
  expect((await b.get('k'))?.value).toEqual(new Uint8Array([1]));
  expect(kv.revision).toBe(1);
  const watch = await b.watch();
  await a.close();
  await kv.put('k', new Uint8Array([2]));
  const it = watch[Symbol.asyncIterator]();
  const seen = [await it.next(), await it.next(), await it.next()].map(
    (r) => r.value?.kind,
  );
  expect(seen).toEqual(['put', 'ready', 'put']);
  await b.close();
  expect((await it.next()).done).toBe(true);
});

test('memory kv - a watch whose consumer falls pendingMax events behind ends with CLUSTER_UNAVAILABLE', async () => {
  const kv = createMemoryKv();
  const watch = await kv.watch('', { pendingMax: 10 });
  for (let i = 0; i < 20; i++) await kv.put(`k.${i}`, new Uint8Array([i]));
  const it = watch[Symbol.asyncIterator]();
  const kinds: string[] = [];
  let failure: unknown;
  try {
    for (;;) {
      const next = await it.next();
      if (next.done === true) break;
      kinds.push(next.value.kind);
    }
  } catch (err) {
    failure = err;
  }
  expect(kinds).toEqual(['ready', ...Array(9).fill('put')]);
  expect(failure).toMatchObject({
    code: 'CLUSTER_UNAVAILABLE',
    retryable: true,
  });
});
