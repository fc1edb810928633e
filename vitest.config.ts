import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Resolve `shardchart` (self-reference) to the TypeScript sources, so tests
    // and examples run without a build step.
    conditions: ['shardchart-source', 'module', 'node', 'import', 'default'],
  },
  ssr: { resolve: { conditions: ['shardchart-source', 'module', 'node', 'import', 'default'] } },
  test: {
    include: ['test/**/*.test.ts', 'machines/**/*.test.ts', 'examples/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
});
