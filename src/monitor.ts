import type { Backend, BackendSink } from './backends/backend.js';
import { ConntrackError, netlinkUnusable } from './errors.js';
import { Lifecycle } from './lifecycle.js';
import { NetlinkBackend } from './backends/netlink.js';
import { loadBinding, type NativeBinding } from './native.js';
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
export class ConntrackMonitor extends Lifecycle<ConntrackMonitorEvents> {
  readonly options: Readonly<ResolvedOptions>;
  private backend: Backend | undefined;
  private warnedEventsMode: number | null = null;
  private readonly pressure: PressureTracker;

  /** Throws an OptionError (a TypeError) for invalid options, before anything native runs. */
  constructor(options: ConntrackMonitorOptions = {}) {
    super();
    this.options = Object.freeze(resolveOptions(options));
    this.pressure = new PressureTracker(this.options.pressure);
  }

  /** Opens the backend the options ask for; 'auto' falls back from netlink to /proc when it must. */
  protected async open(): Promise<void> {
    const sink: BackendSink = {
      sample: (sample) => this.deliver(sample),
      error: (error) => this.reportError(error),
    };
    this.backend = await this.openBackend(sink);
  }

  protected async close(): Promise<void> {
    const backend = this.backend;
    this.backend = undefined;
    await backend?.stop();
  }

  protected setReferenced(referenced: boolean): void {
    if (referenced) this.backend?.ref();
    else this.backend?.unref();
  }

  /**
   * Emits a sample and what follows from it. A listener that throws cannot stop the others or
   * the monitor: its error is rethrown on the next tick, as an uncaught exception like any
   * listener error in Node.
   */
  private deliver(sample: ConntrackSample): void {
    this.checkEventsMode(sample);
    this.emitSafely('sample', sample);
    const change = this.pressure.update(sample);
    if (change) this.emitSafely('pressure', change);
  }

  private async openBackend(sink: BackendSink): Promise<Backend> {
    if (this.options.backend === 'proc') return this.startProc(sink);
    let netlinkError: ConntrackError;
    try {
      const netlink = new NetlinkBackend(this.options, sink, this.loadNativeBinding());
      netlink.start();
      return netlink;
    } catch (err) {
      netlinkError = err instanceof ConntrackError ? err : ConntrackError.addonUnavailable(err);
    }
    if (this.options.backend === 'netlink' || !netlinkUnusable(netlinkError)) throw netlinkError;
    const proc = await this.startProc(sink);
    this.emitSafely('fallback', { from: 'netlink', to: 'proc', reason: netlinkError.message, error: netlinkError });
    return proc;
  }

  /** The addon; tests override this to run the monitor's logic over a fake one, unprivileged. */
  protected loadNativeBinding(): NativeBinding {
    return loadBinding();
  }

  private async startProc(sink: BackendSink): Promise<Backend> {
    const proc = new ProcBackend(this.options, sink);
    await proc.start();
    return proc;
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
              `dumps (${this.options.resyncIntervalMs ? `at start, then every ${this.options.resyncIntervalMs / 1000} s` : 'at start and after lost events'}), so their state changes ` +
              'show at the next dump. Setting it to 1 in that namespace removes the gap.',
          };
    this.emitSafely('warning', warning);
  }
}
