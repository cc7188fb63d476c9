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
import { ConntrackError } from '../errors.js';
import { Lifecycle } from '../lifecycle.js';
import { DEFAULT_INTERVAL_MS, integerIn, INTERVAL_MS_RANGE, ownOptions } from '../options.js';
import { listNamespaces, type NetworkNamespace } from './namespaces.js';
import { loadBinding, type NativeDropProbe } from '../native.js';

export interface DropMonitorOptions {
  /** Sample interval in milliseconds (default 1000). */
  intervalMs?: number;
  /** How many of the most dropped flows each sample lists (default 10, 0 for none). */
  topFlows?: number;
  /** Distinct flows the kernel side keeps between reads (default 4096; least recent go). */
  maxFlows?: number;
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

/** A ConntrackError from the addon's error (errno, syscall, context), with the errno's name as code. */
function probeError(err: unknown): ConntrackError {
  return ConntrackError.fromNative(err as Parameters<typeof ConntrackError.fromNative>[0], null);
}

const PROTOCOLS: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6', 132: 'sctp', 136: 'udplite' };
const PORTED = new Set([6, 17, 132, 136]);

function validate(options: unknown): Required<DropMonitorOptions> {
  const o = ownOptions('options', options, ['intervalMs', 'topFlows', 'maxFlows'] as const);
  return {
    intervalMs: integerIn('intervalMs', o.intervalMs, DEFAULT_INTERVAL_MS, INTERVAL_MS_RANGE),
    topFlows: integerIn('topFlows', o.topFlows, 10, [0, 1000]),
    maxFlows: integerIn('maxFlows', o.maxFlows, 4096, [16, 1 << 20]),
  };
}

export class DropMonitor extends Lifecycle<DropMonitorEvents> {
  readonly options: Readonly<Required<DropMonitorOptions>>;
  private probe: NativeDropProbe | null = null;
  private timer: NodeJS.Timeout | undefined;
  /** Monotonic ms at the end of the last interval read. */
  private last = 0;
  /** Cumulative drops per namespace at the last read, for this probe's life. */
  private readonly totals = new Map<number, number>();
  private names = new Map<number, NetworkNamespace>();
  private namesAt = 0;
  /** Inodes looked up and not found (gone, or 0: not resolved): no rescan for them again. */
  private readonly unnamed = new Set<number>();
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

  /** Throws an OptionError (a TypeError) for invalid options. */
  constructor(options: DropMonitorOptions = {}) {
    super();
    this.options = Object.freeze(validate(options));
  }

  /** Loads and attaches the program; rejects with the reason when it cannot. */
  protected async open(): Promise<void> {
    let probe: NativeDropProbe;
    try {
      probe = new (loadBinding().NativeDropProbe)({ maxFlows: this.options.maxFlows });
    } catch (err) {
      throw probeError(err);
    }
    // A new probe counts from zero.
    this.totals.clear();
    this.unnamed.clear();
    this.probe = probe;
    this.last = performance.now();
    this.timer = setInterval(() => void this.tick(false), this.options.intervalMs);
    await this.refreshNames(true);
  }

  /** Emits the partial interval (final: true), then detaches the program. */
  protected async close(): Promise<void> {
    const probe = this.probe;
    if (!probe) return;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.tick(true);
    this.probe = null;
    probe.close();
  }

  protected setReferenced(referenced: boolean): void {
    if (referenced) this.timer?.ref();
    else this.timer?.unref();
  }

  private async refreshNames(force: boolean): Promise<void> {
    if (!force && Date.now() - this.namesAt < 5000) return;
    this.namesAt = Date.now();
    this.names = new Map((await listNamespaces()).map((ns) => [ns.inode, ns]));
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
      this.reportError(probeError(err));
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
