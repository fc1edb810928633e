/**
 * The module `shardchart node` runs in test/cli/cluster.test.ts: one export
 * per entity type (the export name is the type), a default system name and
 * further system options.
 */
export { tallyMachine as tally } from '../cluster/machines.js';

export const system = 'cli-module-default';

/** Entities stay live, so the status counts are exact. */
export const options = { passivateAfterMs: 0 };
