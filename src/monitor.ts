import { EventEmitter } from 'node:events';
import type { Backend } from './backends/backend.js';
import type { BackendSink } from './backends/backend.js';
import { ConntrackError, netlinkUnusable, reportError } from './errors.js';
import { NetlinkBackend } from './backends/netlink.js';
import { ProcBackend } from './backends/proc.js';
import { PressureTracker } from './pressure.js';
import { resolveOptions, type ResolvedOptions } from './options.js';
import type { ConntrackMonitorEvents, ConntrackMonitorOptions, ConntrackSample, ConntrackWarning } from './types.js';

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
 */
export class ConntrackMonitor extends EventEmitter<ConntrackMonitorEvents> {
  readonly options: Readonly<ResolvedOptions>;
  private backend: Backend | undefined;
  private starting: Promise<void> | undefined;
  private referenced = true;
  private warnedEventsMode: number | null = null;
  private readonly pressure: PressureTracker;

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
    await backend.stop();
  }

  /** Lets the process exit while the monitor runs (like timer.unref()). */
  unref(): this {
    this.referenced = false;
    this.backend?.unref();
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
