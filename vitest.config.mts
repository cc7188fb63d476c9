import { defineConfig } from 'vitest/config';
import { LOCK_WAIT_SECONDS } from './test/helpers/kernel-lock.mjs';

// Two projects, one `npm test`. Unit tests (test/*.test.ts) touch nothing global and run in
// parallel. Root integration tests (test/integration/) make namespaces and lower the global
// nf_conntrack_max: one file at a time, first, in a group of their own (sequence.groupOrder),
// so that the long serial part starts at once.
export default defineConfig({
  test: {
    // Native addons belong in child processes, not worker threads (vitest docs, "pool").
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
          // The world-readable copy for the tests run as nobody, and a check of the kernel lock's state.
          globalSetup: ['test/helpers/integration-setup.ts'],
          // Each test holds /tmp/ctmon-kernel.lock shared (exclusive where it changes a global
          // setting), after waiting for another holder: that wait is not the test's own time.
          setupFiles: ['test/helpers/integration-each.ts'],
          testTimeout: 60_000 + LOCK_WAIT_SECONDS * 1000,
          hookTimeout: 60_000 + LOCK_WAIT_SECONDS * 1000,
        },
      },
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/*.test.ts'],
          // Every core (two on the CI machine): vitest's default leaves one idle.
          maxWorkers: '100%',
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
