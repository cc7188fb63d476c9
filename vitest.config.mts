import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native addons belong in child processes, not worker threads (vitest docs, "pool").
    pool: 'forks',
    // Integration tests share the global nf_conntrack_max and the host's event listener
    // state: files run one after another.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
