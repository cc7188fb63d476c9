import type { Backend, BackendSink } from './backends/backend.js';
import { ConntrackError, netlinkUnusable } from './errors.js';
import { Lifecycle } from './lifecycle.js';
import { NetlinkBackend } from './backends/netlink.js';
import { holdersOf, namespaceAt, stillNames, type NamespaceId } from './host/namespace-file.js';

/** The namespace the path names now, or null (replaced meanwhile by something else: not watched). */
function namespaceAtOrNull(path: string): NamespaceId | null {
  try {
    return namespaceAt(path);
  } catch {
    return null;
  }
}
import { loadBinding, type NativeBinding } from './native.js';
import { ProcBackend } from './backends/proc.js';
import { FillHistory } from './forecast.js';
import { PressureTracker } from './pressure.js';
import { DEFAULT_TOP_TIMEOUT_MS, resolveOptions, type ResolvedOptions } from './options.js';
import { startSnapshot, type RunningSnapshot } from './top.js';
import type { ConntrackMonitorEvents, ConntrackMonitorOptions, ConntrackSample, ConntrackWarning } from './types.js';

/** How often, at most, the host is searched for what else holds a namespace whose path is gone. */
const HOLDER_SCAN_MS = 5000;
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
 * rather than exceptions. A listener that throws is another matter: its exception is rethrown
 * on the next tick, as Node does for any emitter, and takes the process down unless the
 * application handles uncaught exceptions; the monitor itself goes on. `'warning'` tells of
 * namespace settings that limit what can be seen (nf_conntrack_events 0 or 2).
 * With `snapshotOnPressure`, `'top'` brings what fills the table while it is under pressure.
 *
 * A watched namespace that is deleted (no path names it and nothing else holds it: only the
 * monitor's own sockets kept it alive) stops the monitor: the final sample, then an `'error'`
 * with code NAMESPACE_GONE, and the sockets are released so the kernel can free it.
 */
export class ConntrackMonitor extends Lifecycle<ConntrackMonitorEvents> {
  readonly options: Readonly<ResolvedOptions>;
  private backend: Backend | undefined;
  private warnedEventsMode: number | null = null;
  private readonly pressure: PressureTracker;
  /** The namespace being watched, by inode, while the monitor runs on one named by a path. */
  private watched: NamespaceId | null = null;
  private checking = false;
  private lastHolderScan = -Infinity;
  private readonly fillHistory = new FillHistory();
  private snapshot: RunningSnapshot | null = null;
  private snapshotDone: Promise<void> = Promise.resolve();
  private lastSnapshotMs = -Infinity;

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
    // The backend refuses a path that is no namespace before anything opens it (a FIFO would
    // block), and stats it with a bound; once it is open the path is known to be on nsfs.
    this.backend = await this.openBackend(sink);
    const path = this.options.netnsPath;
    this.watched = path === null ? null : namespaceAtOrNull(path);
  }

  protected async close(): Promise<void> {
    const backend = this.backend;
    this.backend = undefined;
    this.watched = null;
    this.snapshot?.cancel();
    await backend?.stop();
    await this.snapshotDone;
  }

  protected setReferenced(referenced: boolean): void {
    if (referenced) this.backend?.ref();
    else this.backend?.unref();
    if (!referenced) this.snapshot?.unref();
  }

  /**
   * Emits a sample and what follows from it. A listener that throws cannot stop the others or
   * the monitor: its error is rethrown on the next tick, as an uncaught exception like any
   * listener error in Node.
   */
  private deliver(sample: ConntrackSample): void {
    const forecast = this.fillHistory.add(sample);
    sample.timeToFullSeconds = forecast.seconds;
    if (forecast.reason !== null) sample.unavailable.timeToFullSeconds = forecast.reason;
    this.checkEventsMode(sample);
    this.emitSafely('sample', sample);
    const change = this.pressure.update(sample);
    if (change) this.emitSafely('pressure', change);
    this.snapshotUnderPressure(sample);
    if (this.watched && !this.checking && !sample.final) void this.checkNamespace(this.watched);
  }

  /**
   * Once per interval: a stat of the path. Only when it no longer names the namespace (deleted,
   * or another namespace now) is the host searched for anything else that holds it, at most
   * every HOLDER_SCAN_MS while something does.
   */
  private async checkNamespace(id: NamespaceId): Promise<void> {
    const path = this.options.netnsPath!;
    this.checking = true;
    try {
      if (await stillNames(path, id)) return;
      if (performance.now() - this.lastHolderScan < HOLDER_SCAN_MS) return;
      this.lastHolderScan = performance.now();
      const { holder, unreadable } = await holdersOf(id);
      if (holder !== null || this.watched !== id) return;
      await this.stop();
      const unseen = unreadable.length
        ? ` (not counted: ${unreadable.length === 1 ? 'pid' : 'pids'} ${unreadable.slice(0, 5).join(', ')}${unreadable.length > 5 ? ', ...' : ''}, whose namespace cannot be read)`
        : '';
      this.reportError(
        new ConntrackError(
          `network namespace ${path} is gone: no path names it (inode ${id.ino}) and no process or mount holds it${unseen}; ` +
            'the monitor stopped and released it',
          { code: 'NAMESPACE_GONE' },
        ),
      );
    } finally {
      this.checking = false;
    }
  }

  /**
   * Under pressure (warning or critical), one snapshot of what fills the table, at most once
   * every SNAPSHOT_SPACING_MS: a dump walks the whole global hash, ~0.7 s of kernel time at
   * 262,144 entries. Only on ctnetlink; never two at once; close() cancels a running one.
   */
  private snapshotUnderPressure(sample: ConntrackSample): void {
    const options = this.options.snapshotOnPressure;
    if (!options || this.snapshot || sample.final || sample.source !== 'netlink') return;
    if (this.pressure.current === 'ok' || !this.backend) return;
    const now = performance.now();
    if (now - this.lastSnapshotMs < SNAPSHOT_SPACING_MS) return;
    this.lastSnapshotMs = now;
    let running: RunningSnapshot;
    try {
      running = startSnapshot(
        { netnsPath: this.options.netnsPath, limit: options.limit, timeoutMs: DEFAULT_TOP_TIMEOUT_MS },
        this.loadNativeBinding(),
      );
    } catch (err) {
      this.reportError(err instanceof ConntrackError ? err : ConntrackError.addonUnavailable(err));
      return;
    }
    if (!this.referenced) running.unref();
    this.snapshot = running;
    this.snapshotDone = running.report.then(
      (report) => {
        this.snapshot = null;
        if (this.backend) this.emitSafely('top', report); // not after stop()
      },
      (err: ConntrackError) => {
        this.snapshot = null;
        if (this.backend && err.code !== 'ECANCELED') this.reportError(err);
      },
    );
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

  /**
   * Warns once per change of the namespace's nf_conntrack_events mode. Only for ctnetlink: the
   * proc backend reads no events and makes no dumps, so the mode changes nothing it shows.
   */
  private checkEventsMode(sample: ConntrackSample): void {
    const mode = sample.eventsMode;
    if (sample.source !== 'netlink' || mode === this.warnedEventsMode || mode === null || mode === 1) return;
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
              'nf_conntrack_events is 2 (the kernel default) in the monitored namespace: entries made while no ' +
              'event listener existed send no events; they are counted from table dumps ' +
              `(${this.options.resyncIntervalMs ? `at start, then every ${this.options.resyncIntervalMs / 1000} s` : 'at start and after lost events'}). ` +
              'Setting it to 1 there shows them at once.',
          };
    this.emitSafely('warning', warning);
  }
}
