/**
 * The monitor as every subcommand runs it: built from parsed flags, with fallback and warnings
 * reported once on stderr, and a way to wait for SIGINT/SIGTERM or a duration.
 */
import { withFlags } from './args.js';
import { ConntrackMonitor } from '../monitor.js';
import type { ConntrackMonitorOptions } from '../types.js';

export function createMonitor(
  options: ConntrackMonitorOptions,
  log: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): ConntrackMonitor {
  const monitor = withFlags(() => new ConntrackMonitor(options));
  monitor.on('fallback', (f) =>
    log(
      `conntrack-monitor: using /proc instead of ctnetlink: ${f.reason}. ` +
        'Without ctnetlink there are no insert/delete rates and no conntrack TIME_WAIT or state counts.',
    ),
  );
  monitor.on('warning', (w) => log(`conntrack-monitor: warning: ${w.message}`));
  monitor.on('error', (e) => log(`conntrack-monitor: ${e.message}`));
  return monitor;
}

/** Starts the monitor; on failure says why on stderr and returns false (the caller exits 1). */
export async function startOrExplain(monitor: { start(): Promise<void> }): Promise<boolean> {
  try {
    await monitor.start();
    return true;
  } catch (err) {
    process.stderr.write(`conntrack-monitor: cannot start: ${(err as Error).message}\n`);
    return false;
  }
}

/** Resolves on SIGINT, SIGTERM, a closed stdout (EPIPE) or after `durationMs`. */
export function untilStopped(durationMs?: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = durationMs === undefined ? undefined : setTimeout(finish, durationMs);
    function finish() {
      clearTimeout(timer);
      process.off('SIGINT', finish);
      process.off('SIGTERM', finish);
      resolve();
    }
    process.once('SIGINT', finish);
    process.once('SIGTERM', finish);
    process.stdout.once('error', finish);
  });
}
