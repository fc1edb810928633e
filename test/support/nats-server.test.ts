import { test, expect } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsServer } from './nats-server.js';
test('harness', async () => {
  const s = await startNatsServer();
  const nc = await connect({ servers: s.url });
  const jsm = await jetstreamManager(nc);
  const info = await jsm.getAccountInfo();
  expect(info).toBeTruthy();
  await nc.close();
  await s.restart();
  const nc2 = await connect({ servers: s.url });
  await nc2.close();
  await s.stop();
});
