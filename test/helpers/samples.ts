import type { ConntrackMonitor, ConntrackSample } from '../../dist/index.js';

/** Records every sample a monitor emits; fails the test on an 'error' event. */
export function recordSamples(monitor: ConntrackMonitor): ConntrackSample[] {
  const samples: ConntrackSample[] = [];
  monitor.on('sample', (s) => samples.push(s));
  monitor.on('error', (e) => {
    throw e;
  });
  return samples;
}

/** Resolves after `n` more samples. */
export function nextSamples(monitor: ConntrackMonitor, n = 1): Promise<void> {
  return new Promise((resolve) => {
    let left = n;
    const on = () => {
      if (--left === 0) {
        monitor.off('sample', on);
        resolve();
      }
    };
    monitor.on('sample', on);
  });
}

/**
 * The next sample whose tracked counts are known, and how many before it were not. Entries past
 * their deadline count as null until a walk checks them, and walks are spaced so that they take
 * at most 1% of a core (0.5% for a whole node), what they reap included, so this waits up to
 * `timeoutMs`, saying why for each sample it passes over. After `timeoutMs`, the last sample, null or not.
 */
export async function nextKnownSample(
  monitor: ConntrackMonitor,
  samples: ConntrackSample[],
  label: string,
  timeoutMs = 10_000,
): Promise<{ sample: ConntrackSample; skipped: number }> {
  const deadline = Date.now() + timeoutMs;
  for (let skipped = 0; ; skipped++) {
    await nextSamples(monitor, 1);
    const sample = samples.at(-1)!;
    if (sample.protocols !== null || Date.now() > deadline) return { sample, skipped };
    console.info(`${label}: states unknown (${sample.unavailable.protocols}); next sample`);
  }
}
