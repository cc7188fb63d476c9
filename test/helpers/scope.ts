/**
 * Per-test resources for integration tests: namespaces and monitors made in a test are removed
 * and stopped after it, last made first, whether it passed or not.
 */
import { afterEach } from 'vitest';
import { ConntrackMonitor, type ConntrackMonitorOptions, type ConntrackWarning } from '../../dist/index.js';
import { loadBinding } from '../../dist/native.js';
import { TestNamespace } from './netns';
import { recordSamples } from './samples';

const steps: (() => unknown)[] = [];
afterEach(async () => {
  for (const step of steps.splice(0).reverse()) await step();
});

/** Runs `step` after the current test. */
export function defer(step: () => unknown): void {
  steps.push(step);
}

/** A test namespace with conntrack on, removed after the test. */
export async function namespace(label: string): Promise<TestNamespace> {
  const ns = await TestNamespace.create(label);
  defer(() => ns.remove());
  return ns;
}

/** A started monitor on `ns` (200 ms intervals unless told otherwise), stopped after the test. */
export async function startMonitor(ns: TestNamespace, options: ConntrackMonitorOptions = {}) {
  const monitor = new ConntrackMonitor({ netns: ns.name, intervalMs: 200, ...options });
  const samples = recordSamples(monitor);
  const warnings: ConntrackWarning[] = [];
  monitor.on('warning', (w) => warnings.push(w));
  await monitor.start();
  defer(() => monitor.stop());
  return { monitor, samples, warnings };
}

/**
 * Monitors started in this test use the classic socket filter, as where the kernel refuses the
 * eBPF program: their program is loaded as XDP, which the verifier refuses (fault_injection.h).
 */
export function useClassicFilter(): void {
  const binding = loadBinding();
  const previous = binding._injectFaults({ eventProgramType: 6 /* BPF_PROG_TYPE_XDP */ });
  defer(() => binding._injectFaults(previous));
}
