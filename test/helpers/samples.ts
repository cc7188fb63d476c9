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
