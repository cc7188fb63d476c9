/**
 * Every root integration test holds /tmp/ctmon-kernel.lock shared while it runs: its namespaces
 * are limited by the global nf_conntrack_max and its numbers are the kernel's, so no one may
 * change a global setting under it (a benchmark, another run's test: they take the lock
 * exclusive, and wait). A test that changes one itself takes it exclusive for that moment
 * (test/helpers/kernel-lock.mjs). Released after the test's own clean-up.
 */
import { afterEach, beforeEach } from 'vitest';
import { holdKernelLockShared, releaseKernelLockShared } from './kernel-lock.mjs';

beforeEach(() => holdKernelLockShared());
afterEach(() => releaseKernelLockShared());
