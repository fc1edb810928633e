/**
 * The settings every node of a system must share, checked before a node
 * joins: the first node writes `config` (create, so two first nodes cannot
 * both win), every later one compares its own against it and refuses to
 * join on a mismatch, since nodes with different shard counts would map the
 * same entity to different shards.
 * @internal
 */
import type { Logger } from 'pino';

import { ConfigError } from '../errors.js';
import { isKvConflict, type ClusterKv } from './kv.js';
import {
  CONFIG_KEY,
  decodeConfigRecord,
  encodeConfigRecord,
  PROTOCOL_VERSION,
} from './records.js';

/**
 * Creates or checks the config record. Retries while the store is
 * unreachable (until `stopped()`); throws `ConfigError` on a mismatch or an
 * unreadable record.
 * @internal
 */
export async function ensureClusterConfig(
  kv: ClusterKv,
  shardCount: number,
  how: {
    stopped: () => boolean;
    delay: (ms: number) => Promise<void>;
    log: Logger;
  },
): Promise<void> {
  for (let attempt = 0; !how.stopped(); attempt++) {
    try {
      const entry = await kv.get(CONFIG_KEY);
      if (entry === undefined) {
        await kv.create(
          CONFIG_KEY,
          encodeConfigRecord({ v: PROTOCOL_VERSION, shardCount }),
        );
        return;
      }
      const decoded = decodeConfigRecord(entry.value);
      if (!decoded.ok) {
        throw new ConfigError(
          `The cluster config record cannot be read (${decoded.reason}): the bucket was written by an incompatible release. Run matching releases, or use a new bucket.`,
        );
      }
      if (decoded.record.shardCount !== shardCount) {
        throw new ConfigError(
          `This node was configured with shardCount ${shardCount}, but the cluster uses ${decoded.record.shardCount}: the shard count is fixed for the life of a system. Start the node with shardCount ${decoded.record.shardCount}.`,
          {
            details: {
              configured: shardCount,
              cluster: decoded.record.shardCount,
            },
          },
        );
      }
      return;
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      // A lost create race is answered by reading again at once.
      if (!isKvConflict(err)) {
        how.log.warn(
          { err, attempt },
          'cluster KV unavailable while reading the config; retrying',
        );
        await how.delay(Math.min(2_000, 100 * 2 ** attempt));
      }
    }
  }
}
