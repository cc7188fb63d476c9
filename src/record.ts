/**
 * record(fn): runs an async function (a load test) while a monitor watches, and resolves with
 * what it returned, every sample and their summary. The monitor starts before fn runs and
 * stops (with its final partial sample, so totals are complete) after fn settles, whether it
 * resolved or threw.
 *
 * If fn throws, record rejects with that same error, unchanged, once the monitor has stopped;
 * pass `onSample` to keep the samples in that case (or to write them out as they come).
 */
import { ConntrackMonitor } from './monitor.js';
import { summarize, type RunSummary } from './report/summary.js';
import type { ConntrackMonitorOptions, ConntrackSample } from './types.js';

export interface RecordOptions extends ConntrackMonitorOptions {
  /** Called with each sample as it arrives, including the final one. */
  onSample?: (sample: ConntrackSample) => void;
}

export interface RecordResult<T> {
  /** What fn resolved with. */
  result: T;
  samples: ConntrackSample[];
  summary: RunSummary;
}

/**
 * Runs `fn` while monitoring. Rejects with the monitor's ConntrackError, without calling fn,
 * if monitoring cannot start; with fn's own error if fn fails. fn gets the running monitor
 * (to listen for 'pressure', say).
 */
export async function record<T>(
  fn: (monitor: ConntrackMonitor) => T | Promise<T>,
  options: RecordOptions = {},
): Promise<RecordResult<T>> {
  const { onSample, ...monitorOptions } = options;
  const monitor = new ConntrackMonitor(monitorOptions);
  const samples: ConntrackSample[] = [];
  monitor.on('sample', (s) => {
    samples.push(s);
    onSample?.(s);
  });
  await monitor.start();
  let result: T;
  try {
    result = await fn(monitor);
  } catch (err) {
    await monitor.stop().catch(() => {});
    throw err;
  }
  await monitor.stop();
  return { result, samples, summary: summarize(samples) };
}
