import { EventEmitter } from 'node:events';
import type { Backend } from './backends/backend.js';
import type { BackendSink } from './backends/backend.js';
import { ConntrackError, netlinkUnusable, reportError } from './errors.js';
import { NetlinkBackend } from './backends/netlink.js';
import { ProcBackend } from './backends/proc.js';
import { FillHistory } from './forecast.js';
import { PressureTracker } from './pressure.js';
import { DEFAULT_TOP_TIMEOUT_MS, resolveOptions, type ResolvedOptions } from './options.js';
import { startSnapshot, type RunningSnapshot } from './top.js';
import type { ConntrackMonitorEvents, ConntrackMonitorOptions, ConntrackSample, ConntrackWarning } from './types.js';

/** At most one snapshot under pressure per this many milliseconds. */
export const SNAPSHOT_SPACING_MS = 60_000;

/**
 * Watches one network namespace's conntrack table and emits one `'sample'` per interval.
 *
 * ```ts
 * const monitor = new ConntrackMonitor({ intervalMs: 1000 });
 * monitor.on('sample', (s) => console.log(s.fill, s.rates.insert, s.rates.drop));
 * await monitor.start();
 * ```
 *
 * Errors after start (a failing stats request, a read error) are not fatal: the monitor keeps
 * running and emits `'error'`. Without an `'error'` listener they become process warnings
 * rather than exceptions, so a monitor never takes its host process down. `'warning'` tells
 * of namespace settings that limit what can be seen (nf_conntrack_events 0 or 2).
 * With `snapshotOnPressure`, `'top'` brings what fills the table while it is under pressure.
 */
export class ConntrackMonitor extends EventEmitter<ConntrackMonitorEvents> {
  readonly options: Readonly<ResolvedOptions>;
  private backend: Backend | undefined;
  private starting: Promise<void> | undefined;
  private referenced = true;
  private warnedEventsMode: number | null = null;
  private readonly pressure: PressureTracker;
  private readonly fillHistory = new FillHistory();
  private snapshot: RunningSnapshot | null = null;
  private snapshotDone: Promise<void> = Promise.resolve();
  private lastSnapshotMs = -Infinity;

  /** Throws a TypeError for invalid options, before anything native runs. */
  constructor(options: ConntrackMonitorOptions = {}) {
    super();
    this.options = Object.freeze(resolveOptions(options));
    this.pressure = new PressureTracker(this.options.pressure);
  }

  /** True between a successful start() and stop(). */
  get running(): boolean {
    return this.backend !== undefined;
  }

  /**
   * Subscribes to conntrack events and starts the interval clock. Rejects with a
   * ConntrackError (code EPERM, ENOENT, ...) when the monitor cannot run. Idempotent.
   */
  async start(): Promise<void> {
    if (this.backend) return;
    // Concurrent start() calls share one attempt; stop() waits for it.
    this.starting ??= this.openBackend({
      sample: (sample) => this.deliver(sample),
      error: (error) => this.reportError(error),
    })
      .then((backend) => {
        if (!this.referenced) backend.unref();
        this.backend = backend;
      })
      .finally(() => {
        this.starting = undefined;
      });
    return this.starting;
  }

  /**
   * Emits a sample and what follows from it. A listener that throws cannot stop the others or
   * the monitor: its error is rethrown on the next tick, as an uncaught exception like any
   * listener error in Node.
   */
  private deliver(sample: ConntrackSample): void {
    const rethrow = (err: unknown) =>
      process.nextTick(() => {
        throw err;
      });
    const forecast = this.fillHistory.add(sample);
    sample.timeToFullSeconds = forecast.seconds;
    if (forecast.reason !== null) sample.unavailable.timeToFullSeconds = forecast.reason;
    try {
      this.checkEventsMode(sample);
      this.emit('sample', sample);
    } catch (err) {
      rethrow(err);
    }
    try {
      const change = this.pressure.update(sample);
      if (change) this.emit('pressure', change);
    } catch (err) {
      rethrow(err);
    }
    this.snapshotUnderPressure(sample);
  }

  /**
   * Under pressure (warning or critical), one snapshot of what fills the table, at most once
   * every SNAPSHOT_SPACING_MS: a dump walks the whole global hash, ~0.7 s of kernel time at
   * 262,144 entries. Only on ctnetlink; never two at once.
   */
  private snapshotUnderPressure(sample: ConntrackSample): void {
    const options = this.options.snapshotOnPressure;
    if (!options || this.snapshot || sample.final || sample.source !== 'netlink') return;
    if (this.pressure.current === 'ok' || !this.backend) return;
    const now = performance.now();
    if (now - this.lastSnapshotMs < SNAPSHOT_SPACING_MS) return;
    this.lastSnapshotMs = now;
    const running = startSnapshot({
      netnsPath: this.options.netnsPath,
      limit: options.limit,
      timeoutMs: DEFAULT_TOP_TIMEOUT_MS,
    });
    if (!this.referenced) running.unref();
    this.snapshot = running;
    this.snapshotDone = running.report.then(
      (report) => {
        this.snapshot = null;
        if (!this.backend) return; // stopped meanwhile
        try {
          this.emit('top', report);
        } catch (err) {
          process.nextTick(() => {
            throw err;
          });
        }
      },
      (err: ConntrackError) => {
        this.snapshot = null;
        if (this.backend && err.code !== 'ECANCELED') this.reportError(err);
      },
    );
  }

  /** The backend the options ask for; 'auto' falls back from netlink to /proc when it must. */
  private async openBackend(sink: BackendSink): Promise<Backend> {
    if (this.options.backend === 'proc') return this.startProc(sink);
    let netlinkError: ConntrackError;
    try {
      const netlink = new NetlinkBackend(this.options, sink);
      netlink.start();
      return netlink;
    } catch (err) {
      netlinkError = err instanceof ConntrackError ? err : ConntrackError.addonUnavailable(err);
    }
    if (this.options.backend === 'netlink' || !netlinkUnusable(netlinkError)) throw netlinkError;
    const proc = await this.startProc(sink);
    this.emit('fallback', { from: 'netlink', to: 'proc', reason: netlinkError.message, error: netlinkError });
    return proc;
  }

  private async startProc(sink: BackendSink): Promise<Backend> {
    const proc = new ProcBackend(this.options, sink);
    await proc.start();
    return proc;
  }

  /**
   * Stops monitoring. The partial interval since the last sample is emitted first (with
   * `final: true`), so totals are complete when this resolves. Idempotent.
   */
  async stop(): Promise<void> {
    await this.starting?.catch(() => {});
    const backend = this.backend;
    if (!backend) return;
    this.backend = undefined;
    this.snapshot?.cancel();
    await backend.stop();
    await this.snapshotDone;
  }

  /** Lets the process exit while the monitor runs (like timer.unref()). */
  unref(): this {
    this.referenced = false;
    this.backend?.unref();
    this.snapshot?.unref();
    return this;
  }

  /** Undoes unref(). */
  ref(): this {
    this.referenced = true;
    this.backend?.ref();
    return this;
  }

  /** Warns once per change of the namespace's nf_conntrack_events mode. */
  private checkEventsMode(sample: ConntrackSample): void {
    const mode = sample.eventsMode;
    if (mode === this.warnedEventsMode || mode === null || mode === 1) return;
    this.warnedEventsMode = mode;
    const warning: ConntrackWarning =
      mode === 0
        ? {
            code: 'EVENTS_OFF',
            message:
              'net.netfilter.nf_conntrack_events is 0 in the monitored namespace: the kernel sends no ' +
              'conntrack events, so insert/delete rates and TCP states are unknown (null). Setting it to 1 ' +
              'in that namespace turns events on.',
          }
        : {
            code: 'EVENTS_AUTO',
            message:
              'net.netfilter.nf_conntrack_events is 2 (auto) in the monitored namespace: entries created ' +
              'while no event listener existed on the host never send events. They are counted from table ' +
              `dumps (at start, then every ${this.options.resyncIntervalMs / 1000} s), so their state changes ` +
              'show at the next dump. Setting it to 1 in that namespace removes the gap.',
          };
    if (this.listenerCount('warning') > 0) this.emit('warning', warning);
  }

  private reportError(error: ConntrackError): void {
    reportError(this, error);
  }
}
