import { defineConfig } from 'vitest/config';
import { LOCK_WAIT_SECONDS } from './test/helpers/kernel-lock.mjs';

// Two projects, one `npm test`. Unit tests (test/*.test.ts) touch nothing global and run in
// parallel. Root integration tests (test/integration/) make namespaces, lower the global
// nf_conntrack_max and count the host's event listeners: one file at a time, first, in a group
// of their own (sequence.groupOrder), so that the long serial part starts at once.
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
          // A test that changes a global setting may first wait for another holder of
          // /tmp/ctmon-kernel.lock (test/helpers/kernel-lock.mjs): that wait is not its own time.
          testTimeout: 60_000 + LOCK_WAIT_SECONDS * 1000,
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
