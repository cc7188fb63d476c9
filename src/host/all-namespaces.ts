/**
 * One view of every network namespace on the node, at a cost that does not grow with the
 * namespaces' traffic: ONE native reader thread for all namespaces
 * (native/ctnetlink/node_monitor.h), which per namespace reads the kernel's counters once per
 * interval, counts every event and, on the eBPF path, keeps every entry's protocol and TCP state
 * in the kernel's flow table, so that every namespace gets TIME_WAIT and state counts. Where
 * the eBPF program cannot be loaded it counts NEW and DESTROY from a classic filter's 20-byte
 * headers, and states need a full ConntrackMonitor: only the namespaces named in `trackStates`
 * get one. Namespaces are found by listNamespaces() (names under /var/run/netns and every
 * process's namespace), again every `rediscoverMs` and as soon as /var/run/netns changes; each
 * is named by its Kubernetes pod where the container runtime's files say so (./pods.ts).
 *
 * The limit matters per namespace: nf_conntrack_max is global, but the kernel compares it with
 * each namespace's own count (__nf_conntrack_alloc), so one busy pod fills "its" table while
 * the host's namespace looks empty.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stopOnExit } from '../backends/netlink.js';
import { ConntrackError, type NativeErrorLike } from '../errors.js';
import { Lifecycle } from '../lifecycle.js';
import { ConntrackMonitor } from '../monitor.js';
import {
  loadBinding,
  type CountingPath,
  type NativeBinding,
  type NativeNodeMonitor,
  type NodeRecord,
  type RawNamespaceInterval,
} from '../native.js';
import { resolveAllNamespacesOptions, type ResolvedAllNamespacesOptions } from '../options.js';
import { byName, EVENTS_OFF, intervalCounters, ratesOf, round, unverifiedReasons } from '../sample.js';
import {
  COUNTER_NAMES,
  PROTOCOL_NAMES,
  TCP_STATE_NAMES,
  type ConntrackSample,
  type CounterSet,
  type ProtocolName,
  type TcpStateName,
} from '../types.js';
import { findNamespaces, ROOTS, type NamespaceRoots, type NetworkNamespace } from './namespaces.js';
import { podsByInode, SandboxFinder, type PodIdentity } from './pods.js';

export type { PodIdentity } from './pods.js';

export interface AllNamespacesOptions {
  /** Interval of the reports, 50 to 3,600,000 ms. Default 1000. */
  intervalMs?: number;
  /**
   * How often to look for new and vanished namespaces (100 to 86,400,000 ms; default 4000),
   * besides at once when a name appears or goes under /var/run/netns.
   */
  rediscoverMs?: number;
  /**
   * How events are counted: `'ebpf'` in the kernel (nothing is queued, nothing can be lost;
   * needs CAP_BPF), `'filter'` from the 20-byte headers a classic socket filter passes, or
   * `'auto'` (default): eBPF where it can be loaded, else the filter, with the reason.
   */
  counting?: 'auto' | 'ebpf' | 'filter';
  /** Receive buffer of each namespace's event socket on the filter path (default 32 MiB). */
  receiveBufferBytes?: number;
  /**
   * Where counting in the kernel is not possible (the filter path), namespaces that still get
   * TIME_WAIT and TCP-state counts: names under /var/run/netns, or pods as `NAMESPACE/NAME`.
   * Each gets a full ConntrackMonitor (its own reader thread and periodic table dumps), so name
   * only the few you need. On the eBPF path every namespace has them and this is not needed.
   * Default none.
   */
  trackStates?: string[];
  /** Re-dump period of the trackStates monitors, ms (the eBPF path lists a namespace only when needed). */
  resyncIntervalMs?: number;
  /** containerd's state directory, for pod names (default /run/containerd; null: not read). */
  containerdRoot?: string | null;
  /** CRI-O's storage run root, for pod names (default /run/containers/storage; null: not read). */
  crioRoot?: string | null;
  /** 'auto' or 'netlink' (the node monitor always reads ctnetlink); kept for compatibility. */
  backend?: 'auto' | 'netlink';
}

export interface NamespaceEvents {
  /** How this namespace's events are counted: in the kernel ('ebpf') or from the filter's headers. */
  counting: CountingPath;
  /** Why the in-kernel counter is not used, on the filter path; null on the eBPF path. */
  countingFallback: string | null;
  /** Event messages read in this interval (on the eBPF path: counted in the kernel). */
  received: number;
  /** Events the kernel could not queue in this interval (SK_MEMINFO_DROPS); always 0 on the eBPF path. */
  lost: number;
  lostTotal: number;
  /** When the first loss was seen (ISO time), null while none was. */
  lostSince: string | null;
  /**
   * NEW and DESTROY events received (counted) since the namespace was found: exact as that
   * whatever was lost; totals.insert and totals.delete are null from the first loss on.
   */
  newTotal: number;
  destroyTotal: number;
  /** Messages that were no conntrack NEW or DESTROY header (the filter path), since found. */
  malformedTotal: number;
  /** The event socket's receive buffer as the kernel reports it. */
  receiveBufferBytes: number;
  /**
   * On the eBPF path: entries past the deadline their last event announced, not checked against
   * the kernel since (while any is, what it touches of tcpStates, protocols and timeWait is null
   * with the reason; normally 0).
   */
  unverified: number;
  /** Listings of the namespace's table after the first (when entries proved alive past their deadline, after loss, or when it held more than the kernel counts). */
  listings: number;
}

export interface NamespaceReport {
  inode: number;
  /** Its name under /var/run/netns, if any. */
  name: string | null;
  /** A process in it (the lowest pid), if any. */
  pid: number | null;
  host: boolean;
  /** The Kubernetes pod whose sandbox holds this namespace, from the runtime's files; null if none. */
  pod: PodIdentity | null;
  /** This namespace's own interval, ms (shorter for one found during the interval). */
  intervalMs: number | null;
  entries: number | null;
  max: number | null;
  fill: number | null;
  /**
   * In this interval: insert and delete (NEW and DESTROY events), and the kernel's per-CPU
   * counters of the namespace: drop (table full), earlyDrop, insertFailed (the DNS race),
   * clashResolve, invalid, icmpError, chainTooLong, searchRestart. Null where unknown.
   */
  counts: CounterSet;
  rates: CounterSet;
  /** Since the namespace was found. */
  totals: CounterSet;
  /** Null when the namespace is not monitored (see `error`). */
  events: NamespaceEvents | null;
  /** TIME_WAIT entries and their share of max (on the eBPF path, or for namespaces in `trackStates`). */
  timeWait: { entries: number | null; share: number | null } | null;
  tcpStates: Record<TcpStateName, number> | null;
  protocols: Record<ProtocolName, number> | null;
  /** Packets dropped for a full table in this interval (= counts.drop), and per second. */
  drops: number | null;
  dropRate: number | null;
  /** Entries created in this interval (= counts.insert), and per second. */
  inserts: number | null;
  insertRate: number | null;
  /** Drops since the namespace was found (= totals.drop). */
  totalDrops: number | null;
  source: 'netlink' | null;
  /** Why this namespace is not monitored, when it is not. */
  error: string | null;
  /** For each null field, a one-line reason. */
  unavailable: Partial<Record<string, string>>;
}

export interface AllNamespacesReport {
  time: string;
  intervalMs: number;
  final: boolean;
  namespaces: NamespaceReport[];
}

export interface AllNamespacesEvents {
  report: [report: AllNamespacesReport];
}

interface Watched {
  ns: NetworkNamespace;
  /** The native monitor's id for it (a new one per attempt). */
  id: number;
  state: 'opening' | 'open' | 'failed';
  counting: CountingPath;
  countingFallback: string | null;
  receiveBufferBytes: number;
  failure: ConntrackError | null;
  /** Its full monitor, when it is in trackStates. */
  tracked: ConntrackMonitor | null;
  trackedLatest: ConntrackSample | null;
}

const INSERT = COUNTER_NAMES.indexOf('insert');
const DELETE = COUNTER_NAMES.indexOf('delete');
const NOT_TRACKED =
  'TIME_WAIT and state counts need the eBPF path or a full monitor: name this namespace in trackStates (--track-states)';

export class AllNamespacesMonitor extends Lifecycle<AllNamespacesEvents> {
  readonly options: Readonly<ResolvedAllNamespacesOptions>;
  private readonly sandboxes: SandboxFinder;
  private native: NativeNodeMonitor | null = null;
  private readonly watched = new Map<number, Watched>(); // by inode
  private readonly byId = new Map<number, Watched>();
  private pods = new Map<number, PodIdentity>();
  /** Why no row can name a pod (no runtime state found), or null when the runtimes were read. */
  private podsUnknown: string | null = null;
  private nextId = 1;
  private timer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private soon: NodeJS.Timeout | undefined;
  private lastReport = 0; // performance.now() ms
  private latestReport: AllNamespacesReport | null = null;
  private discovering: Promise<void> | null = null;
  private rediscover = false; // a change was seen while discovering
  private opensSettled: (() => void) | null = null;
  /** Between open() and close(): discovery and records act only then. */
  private started = false;

  /** Throws an OptionError (a TypeError) for invalid options, before anything native runs. */
  constructor(options: AllNamespacesOptions = {}) {
    super();
    this.options = Object.freeze(resolveAllNamespacesOptions(options));
    this.sandboxes = new SandboxFinder({ containerd: this.options.containerdRoot, crio: this.options.crioRoot });
  }

  /** The addon (tests override it with a fake). */
  protected loadNativeBinding(): Pick<NativeBinding, 'NativeNodeMonitor'> {
    return loadBinding();
  }

  /** Where namespaces are looked for (tests override it with a fixture tree). */
  protected namespaceRoots(): NamespaceRoots {
    return ROOTS;
  }

  /**
   * Starts the node's reader thread, finds the namespaces and opens each (start() calls it).
   * Rejects when the reader cannot start, or when not one namespace could be monitored (no
   * privileges, say), with the first namespace's error.
   */
  protected async open(): Promise<void> {
    this.started = true;
    const native = new (this.loadNativeBinding().NativeNodeMonitor)(
      {
        intervalMs: this.options.intervalMs,
        receiveBufferBytes: this.options.receiveBufferBytes,
        counting: this.options.counting,
      },
      (records) => this.deliver(records),
    );
    try {
      native.start();
    } catch (err) {
      this.started = false;
      throw ConntrackError.fromNative(err as Parameters<typeof ConntrackError.fromNative>[0], null);
    }
    this.native = native;
    stopOnExit(native, true);
    this.lastReport = performance.now();
    await this.discover();
    await new Promise<void>((resolve) => {
      this.opensSettled = resolve;
      this.checkOpensSettled();
    });
    const all = [...this.watched.values()];
    if (all.length > 0 && all.every((w) => w.state === 'failed')) {
      const cause = all[0]!.failure;
      await this.close(false); // a start that fails reports nothing, not a final report of errors
      throw new ConntrackError(`no network namespace could be monitored: ${cause?.message}`, {
        code: cause?.code ?? 'ERR_NO_NAMESPACE',
        cause,
      });
    }
    this.timer = setInterval(() => this.discoverSoon(0), this.options.rediscoverMs);
    try {
      // Names appear under /var/run/netns the moment a pod's sandbox is made (containerd and
      // CRI-O pin them there): look again at once rather than at the next period.
      this.watcher = watch(this.namespaceRoots().netnsDir, () => this.discoverSoon(50));
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      // No such directory yet: the periodic discovery finds names too.
    }
  }

  /**
   * The latest report, less the namespaces that have gone since (a scrape between a
   * namespace's removal and the next report must not show it); null before the first.
   */
  get latest(): AllNamespacesReport | null {
    return this.latestReport;
  }

  protected setReferenced(referenced: boolean): void {
    const how = referenced ? 'ref' : 'unref';
    this.native?.[how]();
    this.timer?.[how]();
    this.soon?.[how]();
    this.watcher?.[how]();
    for (const w of this.watched.values()) w.tracked?.[how]();
  }

  /**
   * Stops the reader (which emits the final report for the partial interval, unless `final` is
   * false) and every tracked monitor.
   */
  protected async close(final = true): Promise<void> {
    if (!this.started) return;
    this.started = false;
    clearInterval(this.timer);
    clearTimeout(this.soon);
    this.watcher?.close();
    this.timer = this.soon = this.watcher = undefined;
    this.checkOpensSettled();
    await this.discovering;
    const native = this.native;
    this.native = null;
    if (native) {
      stopOnExit(native, false);
      const records = native.stop();
      this.deliver(final ? records : records.filter((r) => r.type !== 'report'), true);
    }
    await Promise.all([...this.watched.values()].map((w) => w.tracked?.stop()));
    this.watched.clear();
    this.byId.clear();
  }

  private checkOpensSettled(): void {
    if (!this.opensSettled) return;
    if (this.started && [...this.watched.values()].some((w) => w.state === 'opening')) return;
    this.opensSettled();
    this.opensSettled = null;
  }

  private discoverSoon(delayMs: number): void {
    if (!this.started || this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      if (this.discovering) this.rediscover = true;
      else void this.discover();
    }, delayMs);
    if (!this.referenced) this.soon.unref();
  }

  private discover(): Promise<void> {
    const run = async () => {
      const roots = this.namespaceRoots();
      const found = await findNamespaces(roots);
      const host = found.find((n) => n.host)?.inode ?? null;
      try {
        this.pods = await podsByInode(await this.sandboxes.find(), roots.proc, host, this.sandboxes.stuck);
        this.podsUnknown = this.sandboxes.unreadable ?? (this.sandboxes.sawRuntime ? null : podsUnknown(this.options));
      } catch (err) {
        this.reportError(ConntrackError.fromFs(err as NodeJS.ErrnoException, 'read the container runtime state'));
      }
      if (!this.started) return;
      const seen = new Map(found.map((ns) => [ns.inode, ns]));
      for (const [inode, w] of this.watched) {
        const now = seen.get(inode);
        if (now) {
          w.ns = now; // names and pids change
          continue;
        }
        // Gone: the node monitor's sockets would otherwise keep it alive. Closed at once.
        this.forget(w);
      }
      // New namespaces, and those that failed last time (a transient error).
      for (const ns of found) {
        const w = this.watched.get(ns.inode);
        if (!w || w.state === 'failed') this.add(ns);
      }
      await this.trackStates();
    };
    this.discovering = run()
      .catch((err: unknown) =>
        this.reportError(ConntrackError.fromFs(err as NodeJS.ErrnoException, 'find network namespaces')),
      )
      .finally(() => {
        this.discovering = null;
        if (this.rediscover) {
          this.rediscover = false;
          this.discoverSoon(0);
        }
      });
    return this.discovering;
  }

  private add(ns: NetworkNamespace): void {
    const old = this.watched.get(ns.inode);
    if (old) this.byId.delete(old.id);
    const w: Watched = {
      ns,
      id: this.nextId++,
      state: 'opening',
      counting: 'filter',
      countingFallback: null,
      receiveBufferBytes: 0,
      failure: null,
      tracked: old?.tracked ?? null,
      trackedLatest: old?.trackedLatest ?? null,
    };
    this.watched.set(ns.inode, w);
    this.byId.set(w.id, w);
    this.native!.add(w.id, ns.path, ns.inode);
  }

  private forget(w: Watched): void {
    if (this.latestReport) {
      const namespaces = this.latestReport.namespaces.filter((n) => n.inode !== w.ns.inode);
      this.latestReport = { ...this.latestReport, namespaces };
    }
    this.watched.delete(w.ns.inode);
    this.byId.delete(w.id);
    if (w.state !== 'failed') this.native?.remove(w.id);
    void w.tracked?.stop();
    w.tracked = null;
  }

  /** A full monitor for each namespace named in trackStates (by netns name or pod), once found. */
  private async trackStates(): Promise<void> {
    if (this.options.trackStates.length === 0) return;
    const wanted = new Set(this.options.trackStates);
    const starts: Promise<void>[] = [];
    for (const w of this.watched.values()) {
      const pod = this.pods.get(w.ns.inode);
      const named =
        (w.ns.name !== null && wanted.has(w.ns.name)) || (pod && wanted.has(`${pod.namespace}/${pod.name}`));
      // On the eBPF path the node monitor keeps its states: no full monitor is needed.
      if (!named || w.tracked || w.state !== 'open' || w.counting === 'ebpf') continue;
      const monitor = new ConntrackMonitor({
        netns: w.ns.path,
        intervalMs: this.options.intervalMs,
        receiveBufferBytes: this.options.receiveBufferBytes,
        resyncIntervalMs: this.options.resyncIntervalMs,
        backend: 'netlink',
      });
      w.tracked = monitor;
      monitor.on('sample', (s) => (w.trackedLatest = s));
      monitor.on('error', (e) => this.reportError(e));
      if (!this.referenced) monitor.unref();
      starts.push(
        monitor.start().then(
          () => {
            if (this.watched.get(w.ns.inode) !== w || !this.started) void monitor.stop();
          },
          (err: ConntrackError) => {
            if (w.tracked === monitor) w.tracked = null;
            this.reportError(err);
          },
        ),
      );
    }
    await Promise.all(starts);
  }

  // JS thread: the node monitor's records. Nothing may throw back into the native callback.
  private deliver(records: NodeRecord[], stopping = false): void {
    for (const record of records) {
      try {
        if (record.type === 'opened') this.opened(record);
        else if (record.type === 'report') this.report(record.namespaces, record.final);
        else this.nativeError(record.id, record.error);
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
      }
    }
    if (stopping) this.checkOpensSettled();
  }

  private opened(r: Extract<NodeRecord, { type: 'opened' }>): void {
    const w = this.byId.get(r.id);
    if (!w) return; // forgotten meanwhile (its sockets are closed by the remove that followed)
    if (r.ok) {
      w.state = 'open';
      w.counting = r.counting;
      w.countingFallback = r.fallbackReason;
      w.receiveBufferBytes = r.receiveBufferBytes;
    } else {
      w.state = 'failed';
      w.failure = ConntrackError.fromNative(r.error!, w.ns.path);
    }
    this.checkOpensSettled();
  }

  /** An error while running: of one namespace (named in the message), or of the reader (id 0). */
  private nativeError(id: number, error: NativeErrorLike): void {
    const w = this.byId.get(id);
    if (id !== 0 && !w) return; // a namespace already forgotten
    const e = ConntrackError.fromNative(error, w?.ns.path ?? null);
    if (!w) return this.reportError(e);
    this.reportError(
      new ConntrackError(`${label(w.ns)}: ${e.message}`, {
        code: e.code,
        errno: e.errno,
        syscall: e.syscall,
        cause: e,
      }),
    );
  }

  private report(raws: RawNamespaceInterval[], final: boolean): void {
    const now = performance.now();
    const byId = new Map(raws.map((r) => [r.id, r]));
    const namespaces: NamespaceReport[] = [];
    for (const w of this.watched.values()) {
      const raw = byId.get(w.id);
      if (raw) namespaces.push(this.row(w, raw));
      else if (w.state === 'failed') namespaces.push(this.failedRow(w));
    }
    const time = raws.length > 0 ? new Date(Math.max(...raws.map((r) => r.endWallMs))) : new Date();
    const report: AllNamespacesReport = {
      time: time.toISOString(),
      intervalMs: Math.round(now - this.lastReport),
      final,
      namespaces,
    };
    this.lastReport = now;
    this.latestReport = report;
    this.emitSafely('report', report);
  }

  private row(w: Watched, raw: RawNamespaceInterval): NamespaceReport {
    const { counts, totals, unavailable } = intervalCounters(
      raw,
      raw.eventsMode === 0 ? EVENTS_OFF : null,
      w.receiveBufferBytes,
    );
    const rates = ratesOf(counts, raw.durationNs / 1e9);
    if (this.podsUnknown !== null) unavailable.pod = this.podsUnknown;
    const states = this.states(w, raw);
    Object.assign(unavailable, states.unavailable);
    return {
      inode: w.ns.inode,
      name: w.ns.name,
      pid: w.ns.pid,
      host: w.ns.host,
      pod: this.pods.get(w.ns.inode) ?? null,
      intervalMs: round(raw.durationNs / 1e6),
      entries: raw.entries,
      max: raw.max,
      fill: raw.entries !== null && raw.max ? raw.entries / raw.max : null,
      counts,
      rates,
      totals,
      events: {
        counting: raw.counting,
        countingFallback: raw.counting === 'filter' ? w.countingFallback : null,
        received: raw.eventsReceived,
        lost: raw.eventsLost,
        lostTotal: raw.eventsLostTotal,
        lostSince: raw.firstLossEverWallMs === null ? null : new Date(raw.firstLossEverWallMs).toISOString(),
        newTotal: raw.totals[INSERT] ?? 0,
        destroyTotal: raw.totals[DELETE] ?? 0,
        malformedTotal: raw.malformedTotal,
        receiveBufferBytes: w.receiveBufferBytes,
        unverified: raw.unverified.entries,
        listings: raw.listings,
      },
      timeWait: states.timeWait,
      tcpStates: states.tcpStates,
      protocols: states.protocols,
      drops: counts.drop,
      dropRate: rates.drop,
      inserts: counts.insert,
      insertRate: rates.insert,
      totalDrops: totals.drop,
      source: 'netlink',
      error: null,
      unavailable,
    };
  }

  /**
   * A namespace's TIME_WAIT and state counts: on the eBPF path from the kernel's flow table (once
   * its first listing completed), else from its full monitor when it has one; with the reason
   * for each that is null.
   */
  private states(
    w: Watched,
    raw: RawNamespaceInterval,
  ): Pick<NamespaceReport, 'timeWait' | 'tcpStates' | 'protocols'> & { unavailable: Partial<Record<string, string>> } {
    if (raw.tracked) {
      const unavailable = unverifiedReasons(raw.unverified, 'timeWait');
      const tcpStates = byName(TCP_STATE_NAMES, raw.tracked.tcpStates);
      const entries = tcpStates.TIME_WAIT;
      return {
        timeWait: unavailable.timeWait ? null : { entries, share: raw.max ? entries / raw.max : null },
        tcpStates: unavailable.tcpStates ? null : tcpStates,
        protocols: unavailable.protocols ? null : byName(PROTOCOL_NAMES, raw.tracked.protocols),
        unavailable,
      };
    }
    const t = w.trackedLatest;
    const why =
      raw.counting === 'ebpf'
        ? "the namespace's first listing has not completed yet"
        : !w.tracked
          ? NOT_TRACKED
          : !t
            ? 'its full monitor has not delivered a sample yet'
            : null;
    if (why !== null)
      return {
        timeWait: null,
        tcpStates: null,
        protocols: null,
        unavailable: { timeWait: why, tcpStates: why, protocols: why },
      };
    const unavailable: Partial<Record<string, string>> = {};
    if (t!.timeWait.entries === null) unavailable.timeWait = t!.unavailable['timeWait.entries'];
    if (t!.tcpStates === null) unavailable.tcpStates = t!.unavailable.tcpStates;
    if (t!.protocols === null) unavailable.protocols = t!.unavailable.protocols;
    return {
      timeWait: t!.timeWait.entries === null ? null : { entries: t!.timeWait.entries, share: t!.timeWait.share },
      tcpStates: t!.tcpStates,
      protocols: t!.protocols,
      unavailable,
    };
  }

  private failedRow(w: Watched): NamespaceReport {
    const why = w.failure?.message ?? 'not monitored';
    const none = Object.fromEntries(COUNTER_NAMES.map((n) => [n, null])) as CounterSet;
    return {
      inode: w.ns.inode,
      name: w.ns.name,
      pid: w.ns.pid,
      host: w.ns.host,
      pod: this.pods.get(w.ns.inode) ?? null,
      intervalMs: null,
      entries: null,
      max: null,
      fill: null,
      counts: none,
      rates: { ...none },
      totals: { ...none },
      events: null,
      timeWait: null,
      tcpStates: null,
      protocols: null,
      drops: null,
      dropRate: null,
      inserts: null,
      insertRate: null,
      totalDrops: null,
      source: null,
      error: why,
      unavailable: { entries: why, counts: why, events: why },
    };
  }
}

/** How a namespace is named in messages: its pod-free identity. */
function label(ns: NetworkNamespace): string {
  return ns.host ? 'host namespace' : ns.name ? `namespace ${ns.name}` : `namespace ${ns.inode} (pid ${ns.pid})`;
}

function podsUnknown(o: ResolvedAllNamespacesOptions): string {
  const where = [o.containerdRoot && `containerd: ${o.containerdRoot}`, o.crioRoot && `CRI-O: ${o.crioRoot}`]
    .filter(Boolean)
    .join(', ');
  return where ? `no container runtime state was found (${where})` : 'pod names are not read (no runtime root)';
}
