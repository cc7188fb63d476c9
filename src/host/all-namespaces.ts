/**
 * One view of every network namespace on the host: a ConntrackMonitor per namespace (each its
 * own reader thread and sockets inside that namespace, as ctnetlink requires), namespaces found
 * by listNamespaces() and re-discovered as they come and go, and one combined report per
 * interval: each namespace's entries, max, fill, and drops and inserts over the interval.
 * A report goes out once every monitor has delivered a sample since the last one (their
 * clocks are independent), or 1.5 intervals after the last report at the latest.
 *
 * The limit matters per namespace: nf_conntrack_max is global, but the kernel compares it with
 * each namespace's own count (__nf_conntrack_alloc), so one busy pod fills "its" table while
 * the host's namespace looks empty.
 */
import { EventEmitter } from 'node:events';
import { ConntrackError, reportError } from '../errors.js';
import { ConntrackMonitor } from '../monitor.js';
import { integerIn } from '../options.js';
import { findNamespaces, type NamespaceRoots, type NetworkNamespace, ROOTS } from './namespaces.js';
import type { ConntrackMonitorOptions, ConntrackSample } from '../types.js';

/** The monitors' options (intervalMs is also the report's interval), and discovery's. */
export interface AllNamespacesOptions extends Omit<ConntrackMonitorOptions, 'netns'> {
  /** How often to look for new and vanished namespaces (default 5000 ms). */
  rediscoverMs?: number;
  /** Where to look (tests). */
  roots?: NamespaceRoots;
}

export interface NamespaceReport {
  inode: number;
  name: string | null;
  pid: number | null;
  host: boolean;
  /** Latest entry count, max and fill; null until the namespace's first sample. */
  entries: number | null;
  max: number | null;
  fill: number | null;
  /** Packets dropped for a full table over the report's interval, and per second. */
  drops: number | null;
  dropRate: number | null;
  /** Entries created over the interval (NEW events), and per second; null on /proc. */
  inserts: number | null;
  insertRate: number | null;
  /** Drops since this namespace's monitor started. */
  totalDrops: number | null;
  source: 'netlink' | 'proc' | null;
  /** Why this namespace is not monitored, when it is not. */
  error: string | null;
}

export interface AllNamespacesReport {
  time: string;
  intervalMs: number;
  final: boolean;
  namespaces: NamespaceReport[];
}

interface Watched {
  ns: NetworkNamespace;
  monitor: ConntrackMonitor | null;
  latest: ConntrackSample | null;
  /** Counts and time accumulated from the samples since the last report. */
  drops: number | null;
  inserts: number | null;
  ms: number;
  error: string | null;
  failure: Error | null;
}

export interface AllNamespacesEvents {
  report: [report: AllNamespacesReport];
  error: [error: ConntrackError];
}

export class AllNamespacesMonitor extends EventEmitter<AllNamespacesEvents> {
  private readonly intervalMs: number;
  private readonly rediscoverMs: number;
  private readonly watched = new Map<number, Watched>();
  private timer: NodeJS.Timeout | undefined;
  private lastReport = 0; // performance.now() ms
  private lastDiscovery = 0;
  private stopping: Promise<void> | null = null;
  private unreferenced = false;
  private discovering: Promise<void> | null = null;
  private started = false;

  private readonly monitorOptions: Omit<ConntrackMonitorOptions, 'netns'>;
  private readonly roots: NamespaceRoots | undefined;

  constructor(options: AllNamespacesOptions = {}) {
    super();
    const { rediscoverMs = 5000, roots, ...monitorOptions } = options;
    integerIn('rediscoverMs', rediscoverMs, 5000, [100, 86_400_000]);
    // Validates the monitors' options once, with the library's own messages.
    this.intervalMs = new ConntrackMonitor(monitorOptions).options.intervalMs;
    this.monitorOptions = monitorOptions;
    this.rediscoverMs = rediscoverMs;
    this.roots = roots;
  }

  /**
   * Finds the namespaces and starts a monitor in each. Rejects, with the first namespace's
   * error, when not one of them could be monitored (no privileges, say).
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.lastReport = performance.now(); // reports may start while discovery still runs
    await this.discover();
    if (!this.started) return; // stopped while discovering
    const watched = [...this.watched.values()];
    if (watched.length > 0 && watched.every((w) => w.monitor === null)) {
      const cause = watched[0]!.failure;
      await this.stop();
      throw new ConntrackError(`no network namespace could be monitored: ${cause?.message}`, {
        code: cause instanceof ConntrackError ? cause.code : 'ERR_NO_NAMESPACE',
        cause,
      });
    }
    this.timer = setInterval(
      () => {
        const now = performance.now();
        if (now - this.lastReport >= this.intervalMs * 1.5) this.flush(false);
        if (now - this.lastDiscovery >= this.rediscoverMs && !this.discovering) void this.discover();
      },
      Math.max(10, this.intervalMs / 4),
    );
    if (this.unreferenced) this.timer.unref();
  }

  /** Stops every monitor (each delivers its final partial sample) and emits a final report. */
  stop(): Promise<void> {
    this.stopping ??= this.close().finally(() => (this.stopping = null));
    return this.stopping;
  }

  /** Lets the process exit while it runs (like timer.unref()). */
  unref(): this {
    this.unreferenced = true;
    this.timer?.unref();
    for (const w of this.watched.values()) w.monitor?.unref();
    return this;
  }

  private async close(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.discovering;
    await Promise.all([...this.watched.values()].map((w) => w.monitor?.stop()));
    this.flush(true);
    this.watched.clear();
  }

  private flush(final: boolean): void {
    const now = performance.now();
    const report = this.report(now - this.lastReport, final);
    this.lastReport = now;
    this.emit('report', report);
  }

  /** Reports as soon as every running monitor has a sample in, so each row is one interval. */
  private maybeReport(): void {
    if (!this.started) return;
    const running = [...this.watched.values()].filter((w) => w.monitor !== null);
    if (running.length > 0 && running.every((w) => w.ms > 0)) this.flush(false);
  }

  private async discover(): Promise<void> {
    const run = async () => {
      this.lastDiscovery = performance.now();
      const found = await findNamespaces(this.roots ?? ROOTS);
      const seen = new Set(found.map((ns) => ns.inode));
      for (const [inode, w] of this.watched) {
        if (seen.has(inode)) continue;
        this.watched.delete(inode); // gone: its monitor would otherwise keep it alive
        await w.monitor?.stop();
      }
      // New namespaces, and those whose monitor could not start last time (a transient error).
      await Promise.all(found.filter((ns) => !this.watched.get(ns.inode)?.monitor).map((ns) => this.watch(ns)));
    };
    this.discovering = run()
      .catch((err: unknown) => {
        if (this.listenerCount('error') > 0)
          this.emit('error', ConntrackError.fromFs(err as NodeJS.ErrnoException, 'find network namespaces'));
      })
      .finally(() => (this.discovering = null));
    return this.discovering;
  }

  private async watch(ns: NetworkNamespace): Promise<void> {
    const w: Watched = {
      ns,
      monitor: null,
      latest: null,
      drops: null,
      inserts: null,
      ms: 0,
      error: null,
      failure: null,
    };
    this.watched.set(ns.inode, w);
    let monitor: ConntrackMonitor;
    try {
      monitor = new ConntrackMonitor({ ...this.monitorOptions, netns: ns.path });
    } catch (err) {
      w.failure = err as Error;
      w.error = w.failure.message;
      return;
    }
    if (this.unreferenced) monitor.unref();
    monitor.on('sample', (s) => {
      w.latest = s;
      w.ms += s.intervalMs;
      if (s.counts.drop !== null) w.drops = (w.drops ?? 0) + s.counts.drop;
      if (s.counts.insert !== null) w.inserts = (w.inserts ?? 0) + s.counts.insert;
      if (!s.final) this.maybeReport();
    });
    monitor.on('error', (e) => reportError(this, e));
    try {
      await monitor.start();
      if (this.watched.get(ns.inode) === w && this.started) w.monitor = monitor;
      else await monitor.stop(); // vanished or stopped while starting
    } catch (err) {
      w.failure = err as Error;
      w.error = w.failure.message;
    }
  }

  private report(elapsedMs: number, final: boolean): AllNamespacesReport {
    const namespaces = [...this.watched.values()].map((w): NamespaceReport => {
      const s = w.latest;
      const seconds = w.ms / 1000;
      // No sample since the last report (a namespace just found): its counts go in the next.
      const drops = seconds > 0 ? w.drops : null;
      const inserts = seconds > 0 ? w.inserts : null;
      const row: NamespaceReport = {
        inode: w.ns.inode,
        name: w.ns.name,
        pid: w.ns.pid,
        host: w.ns.host,
        entries: s?.entries ?? null,
        max: s?.max ?? null,
        fill: s?.fill ?? null,
        drops,
        dropRate: drops === null ? null : drops / seconds,
        inserts,
        insertRate: inserts === null ? null : inserts / seconds,
        totalDrops: s?.totals.drop ?? null,
        source: s?.source ?? null,
        error: w.error,
      };
      if (seconds > 0) {
        w.drops = w.drops === null ? null : 0;
        w.inserts = w.inserts === null ? null : 0;
        w.ms = 0;
      }
      return row;
    });
    return { time: new Date().toISOString(), intervalMs: Math.round(elapsedMs), final, namespaces };
  }
}
