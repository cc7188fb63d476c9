/**
 * Which namespaces and which flows a full conntrack table is dropping, host-wide, from an eBPF
 * program on the skb:kfree_skb tracepoint (native/drop_probe.h). Counters say that packets are
 * dropped; this says whose: per network namespace (inode, with its name under /var/run/netns
 * and the pid of a process in it) and the flows most dropped in the interval.
 *
 * A table-full drop is told apart from other drops by its signature at the tracepoint: reason
 * SKB_DROP_REASON_NETFILTER_DROP, freed from inside nf_hook_slow, and no conntrack entry
 * attached (skb->_nfct == 0). nftables rule drops are freed in nft_do_chain and not counted.
 * Needs CAP_BPF and CAP_PERFMON (or root), BTF, readable /proc/kallsyms; `DropMonitor.available()`
 * says what is missing.
 */
import { EventEmitter } from 'node:events';
import { ConntrackError, errnoName, reportError } from '../errors.js';
import { integerIn } from '../options.js';
import { listNamespaces, type NamespaceRoots, type NetworkNamespace } from './namespaces.js';
import { loadBinding, type NativeDropProbe } from '../native.js';

export interface DropMonitorOptions {
  /** Sample interval in milliseconds (default 1000). */
  intervalMs?: number;
  /** How many of the most dropped flows each sample lists (default 10, 0 for none). */
  topFlows?: number;
  /** Distinct flows the kernel side keeps between reads (default 4096; least recent go). */
  maxFlows?: number;
  /** Where to look up namespace names and pids (tests). */
  roots?: NamespaceRoots;
}

export interface NamespaceDrops {
  inode: number;
  /** Its name under /var/run/netns, or null. */
  name: string | null;
  /** A process in it, or null. */
  pid: number | null;
  /** Table-full drops in this interval. */
  drops: number;
  /** Since the monitor started. */
  totalDrops: number;
}

export interface DroppedFlow {
  netnsInode: number;
  /** tcp, udp, icmp, icmpv6, sctp, or the protocol number. */
  protocol: string;
  src: string;
  dst: string;
  /** null for protocols without ports. */
  sport: number | null;
  dport: number | null;
  /** Drops of this flow in the interval. */
  count: number;
}

export interface DropSample {
  time: string;
  intervalMs: number;
  final: boolean;
  /** Every namespace with a table-full drop since start, most dropped in the interval first. */
  namespaces: NamespaceDrops[];
  /** The most dropped flows of the interval. */
  flows: DroppedFlow[];
}

export interface DropMonitorEvents {
  sample: [sample: DropSample];
  error: [error: ConntrackError];
}

/** A ConntrackError from the addon's Error (errno, syscall), with the errno's name as code. */
function probeError(what: string, err: unknown): ConntrackError {
  const e = err as Error & { errno?: number; syscall?: string };
  return new ConntrackError(`${what}: ${e.message}`, {
    code: e.errno ? errnoName(e.errno) : 'ENOTSUP',
    errno: e.errno || undefined,
    syscall: e.syscall || undefined,
    cause: err,
  });
}

const PROTOCOLS: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6', 132: 'sctp', 136: 'udplite' };
const PORTED = new Set([6, 17, 132, 136]);

function validate(options: DropMonitorOptions): Required<Omit<DropMonitorOptions, 'roots'>> {
  const known = new Set(['intervalMs', 'topFlows', 'maxFlows', 'roots']);
  for (const key of Object.keys(options)) if (!known.has(key)) throw new TypeError(`unknown option '${key}'`);
  return {
    intervalMs: integerIn('intervalMs', options.intervalMs, 1000, [50, 3_600_000]),
    topFlows: integerIn('topFlows', options.topFlows, 10, [0, 1000]),
    maxFlows: integerIn('maxFlows', options.maxFlows, 4096, [16, 1 << 20]),
  };
}

export class DropMonitor extends EventEmitter<DropMonitorEvents> {
  readonly options: Required<Omit<DropMonitorOptions, 'roots'>>;
  private readonly roots: NamespaceRoots | undefined;
  private probe: NativeDropProbe | null = null;
  private timer: NodeJS.Timeout | undefined;
  private referenced = true;
  /** Monotonic ms at the end of the last interval read. */
  private last = 0;
  /** Cumulative drops per namespace at the last read, for this probe's life. */
  private readonly totals = new Map<number, number>();
  private names = new Map<number, NetworkNamespace>();
  private namesAt = 0;
  /** Inodes looked up and not found (gone, or 0: not resolved): no rescan for them again. */
  private readonly unnamed = new Set<number>();
  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  /** Ticks run one after another: a tick may wait for a name lookup, and deltas need order. */
  private ticking: Promise<void> = Promise.resolve();

  /** '' when a DropMonitor can run here, else why not (capabilities, BTF, kallsyms, lockdown). */
  static available(): string {
    try {
      return loadBinding().dropProbeAvailable();
    } catch (err) {
      return ConntrackError.addonUnavailable(err).message;
    }
  }

  constructor(options: DropMonitorOptions = {}) {
    super();
    if (options === null || typeof options !== 'object')
      throw new TypeError(`options must be an object, got ${JSON.stringify(options)}`);
    this.options = validate(options);
    this.roots = options.roots;
  }

  /** Loads and attaches the program; rejects with the reason when it cannot. Idempotent. */
  start(): Promise<void> {
    this.starting ??= this.open().finally(() => (this.starting = null));
    return this.starting;
  }

  /** Emits the partial interval (final: true), then detaches the program. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.close().finally(() => (this.stopping = null));
    return this.stopping;
  }

  /** Lets the process exit while the monitor runs (like timer.unref()). */
  unref(): this {
    this.referenced = false;
    this.timer?.unref();
    return this;
  }

  ref(): this {
    this.referenced = true;
    this.timer?.ref();
    return this;
  }

  private async open(): Promise<void> {
    await this.stopping;
    if (this.probe) return;
    let probe: NativeDropProbe;
    try {
      probe = new (loadBinding().NativeDropProbe)({ maxFlows: this.options.maxFlows });
    } catch (err) {
      throw probeError('cannot attach the drop probe', err);
    }
    // A new probe counts from zero.
    this.totals.clear();
    this.unnamed.clear();
    this.probe = probe;
    this.last = performance.now();
    this.timer = setInterval(() => void this.tick(false), this.options.intervalMs);
    if (!this.referenced) this.timer.unref();
    await this.refreshNames(true);
  }

  private async close(): Promise<void> {
    await this.starting?.catch(() => {});
    const probe = this.probe;
    if (!probe) return;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.tick(true);
    this.probe = null;
    probe.close();
  }

  private async refreshNames(force: boolean): Promise<void> {
    if (!force && Date.now() - this.namesAt < 5000) return;
    this.namesAt = Date.now();
    this.names = new Map((await listNamespaces(this.roots)).map((ns) => [ns.inode, ns]));
    this.unnamed.clear();
    // Namespaces that are gone: the kernel reuses their inodes, and their series would stay
    // forever. Forget them here and in the probe's map (bounded at 4096 namespaces).
    for (const inode of this.totals.keys()) {
      if (inode === 0 || this.names.has(inode)) continue;
      this.totals.delete(inode);
      try {
        this.probe?.forget(inode);
      } catch {
        // already gone from the map
      }
    }
  }

  private tick(final: boolean): Promise<void> {
    // A listener that throws surfaces as it would from any emitter (on its own tick, with its
    // stack), and the chain of ticks goes on.
    this.ticking = this.ticking
      .then(() => this.read(final))
      .catch((err: unknown) => {
        process.nextTick(() => {
          throw err;
        });
      });
    return this.ticking;
  }

  private async read(final: boolean): Promise<void> {
    const probe = this.probe;
    if (!probe) return;
    let counts: { inode: number; drops: number }[];
    let flows: ReturnType<NativeDropProbe['flows']>;
    try {
      counts = probe.namespaces();
      // Drained even when no flows are wanted: a full LRU map costs the program an eviction
      // per new dropped flow.
      flows = probe.flows();
    } catch (err) {
      // The interval goes on; the next read covers it.
      reportError(this, probeError("read the drop probe's maps", err));
      return;
    }
    const now = performance.now();
    const intervalMs = now - this.last;
    this.last = now;
    // A namespace not seen before: look its name up now, not at the next periodic refresh.
    const fresh = counts.filter((c) => !this.names.has(c.inode) && !this.unnamed.has(c.inode));
    if (fresh.length > 0) {
      await this.refreshNames(false);
      for (const c of fresh) if (!this.names.has(c.inode)) this.unnamed.add(c.inode);
    }
    const namespaces = counts
      .map(({ inode, drops: total }): NamespaceDrops => {
        const drops = total - (this.totals.get(inode) ?? 0);
        this.totals.set(inode, total);
        const ns = this.names.get(inode);
        return { inode, name: ns?.name ?? null, pid: ns?.pid ?? null, drops, totalDrops: total };
      })
      .sort((a, b) => b.drops - a.drops || b.totalDrops - a.totalDrops || a.inode - b.inode);
    const top = flows
      .sort((a, b) => b.count - a.count)
      .slice(0, this.options.topFlows)
      .map((f): DroppedFlow => ({
        netnsInode: f.netns,
        protocol: PROTOCOLS[f.protocol] ?? String(f.protocol),
        src: f.src,
        dst: f.dst,
        sport: PORTED.has(f.protocol) ? f.sport : null,
        dport: PORTED.has(f.protocol) ? f.dport : null,
        count: f.count,
      }));
    this.emit('sample', {
      time: new Date().toISOString(),
      intervalMs: Math.round(intervalMs),
      final,
      namespaces,
      flows: top,
    });
  }
}
