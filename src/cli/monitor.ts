/**
 * The monitor as every subcommand runs it: built from parsed flags, with fallback and warnings
 * reported once, and the way a command waits for its end (SIGINT/SIGTERM, a duration, a closed
 * stdout, or the watched namespace being deleted) and then stops without losing the final
 * sample to a second signal.
 */
import { withFlags } from './args.js';
import { ConntrackMonitor } from '../monitor.js';
import type { ConntrackMonitorOptions } from '../types.js';
import { printable } from '../errors.js';

export interface MonitorLog {
  /** Where lines go (default: stderr). */
  log?: (line: string) => void;
  /**
   * Also report EVENTS_AUTO (nf_conntrack_events=2, the kernel's default): with --verbose, or
   * where it matters (the live view's warnings). Otherwise it is not worth a line per command.
   */
  eventsAuto?: boolean;
}

export function createMonitor(options: ConntrackMonitorOptions, how: MonitorLog = {}): ConntrackMonitor {
  const log = how.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const monitor = withFlags(() => new ConntrackMonitor(options));
  monitor.on('fallback', (f) =>
    log(
      `conntrack-monitor: using /proc instead of ctnetlink: ${printable(f.reason)}. ` +
        'Without ctnetlink there are no insert/delete rates and no conntrack TIME_WAIT or state counts.',
    ),
  );
  monitor.on('warning', (w) => {
    if (w.code !== 'EVENTS_AUTO' || how.eventsAuto === true) log(`conntrack-monitor: warning: ${printable(w.message)}`);
  });
  monitor.on('error', (e) => log(`conntrack-monitor: ${printable(e.message)}`));
  return monitor;
}

/** Starts the monitor; on failure says why on stderr and returns false (the caller exits 1). */
export async function startOrExplain(monitor: { start(): Promise<void> }): Promise<boolean> {
  try {
    await monitor.start();
    return true;
  } catch (err) {
    process.stderr.write(`conntrack-monitor: cannot start: ${printable((err as Error).message)}\n`);
    return false;
  }
}

/** Why a command stops: a signal's name, the duration, a closed stdout, or the namespace gone. */
export type StopReason = NodeJS.Signals | 'duration' | 'stdout closed' | 'namespace gone' | 'quit';

/** Resolves with the NAMESPACE_GONE error's message once the monitor stopped for it. */
export function namespaceGone(monitor: ConntrackMonitor): Promise<string> {
  return new Promise((resolve) => {
    const onError = (e: { code: string; message: string }) => {
      if (e.code !== 'NAMESPACE_GONE') return;
      monitor.off('error', onError);
      resolve(e.message);
    };
    monitor.on('error', onError);
  });
}

/** A second SIGINT this long after the first is a person insisting, not a duplicate delivery. */
export const INSIST_MS = 1000;

export interface Shutdown {
  /** Resolves with the first reason to stop. */
  readonly requested: Promise<StopReason>;
  /** Resolves if a person insists (SIGINT again, INSIST_MS or more after the first signal). */
  readonly forced: Promise<void>;
}

/**
 * Waits for the end of a command. The signal handlers stay for the rest of the process's life:
 * the final sample must be written before anything ends it. `timeout` (as scripts use it) sends
 * SIGTERM to the command and then again to its process group, and a second signal that found
 * no handler while stop() drains (after a flood) would kill the process with no final sample.
 * Later signals are absorbed, except a second Ctrl-C from a person, which resolves `forced`.
 */
export function awaitShutdown(durationMs?: number, gone?: Promise<unknown>, quit?: Promise<unknown>): Shutdown {
  let request!: (why: StopReason) => void;
  let force!: () => void;
  const requested = new Promise<StopReason>((r) => (request = r));
  const forced = new Promise<void>((r) => (force = r));
  let firstSignalAt: number | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt === null) {
      firstSignalAt = performance.now();
      request(signal);
    } else if (signal === 'SIGINT' && performance.now() - firstSignalAt >= INSIST_MS) {
      force();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const timer = durationMs === undefined ? undefined : setTimeout(() => request('duration'), durationMs);
  process.stdout.once('error', () => request('stdout closed'));
  void gone?.then(() => request('namespace gone'));
  void quit?.then(() => request('quit'));
  void requested.then(() => clearTimeout(timer));
  return { requested, forced };
}

/**
 * Runs the stop steps in order (each emits its final sample) unless a person forces the exit
 * first; resolves true when they all finished.
 */
export async function stopUnlessForced(shutdown: Shutdown, ...steps: (() => Promise<unknown>)[]): Promise<boolean> {
  const all = (async () => {
    for (const step of steps) await step();
    return true;
  })();
  return Promise.race([all, shutdown.forced.then(() => false)]);
}

/** What a command says, and its exit code, when a person forced the exit before the end. */
export function forcedExit(): number {
  process.stderr.write('conntrack-monitor: interrupted again: exiting without waiting for the final sample\n');
  return 130;
}
