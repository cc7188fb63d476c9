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
 *
 * The kernel map counts by namespace inode, and the kernel reuses a freed namespace's inode at
 * once (the lowest free one). So the namespaces are found again (every `rediscoverMs`, as soon
 * as /var/run/netns changes, and when an inode is seen for the first time) and told apart by
 * what holds them (scanNamespaces), and before drops are counted to a namespace, something
 * that held it must still be there (a stat or two, only for namespaces whose count grew). A
 * namespace that is gone leaves the samples and the kernel map; one that takes a gone one's
 * inode counts from the map's count at the previous read, never from the gone one's total.
 */
import { ConntrackError } from '../errors.js';
import { Lifecycle } from '../lifecycle.js';
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_INTERVAL_MS, integerIn, INTERVAL_MS_RANGE, ownOptions } from '../options.js';
import { ROOTS, scanNamespaces, type NamespaceScan, type NetworkNamespace } from './namespaces.js';
import { loadBinding, type NativeDropProbe } from '../native.js';

export interface DropMonitorOptions {
  /** Sample interval in milliseconds (default 1000). */
  intervalMs?: number;
  /** How many of the most dropped flows each sample lists (default 10, 0 for none). */
  topFlows?: number;
  /** Distinct flows the kernel side keeps between reads (default 4096; least recent go). */
  maxFlows?: number;
  /**
   * How often the host's namespaces are found again, in milliseconds (default 5000; also at
   * once when /var/run/netns changes or a namespace drops for the first time).
   */
  rediscoverMs?: number;
}

export interface NamespaceDrops {
  inode: number;
  /** Its name under /var/run/netns, or null. */
  name: string | null;
  /** A process in it, or null. */
  pid: number | null;
  /** Table-full drops in this interval. */
  drops: number;
  /** Since the monitor started, or since this namespace took the inode of one that is gone. */
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
  /**
   * Every namespace with a table-full drop since start that still exists (as of the latest
   * discovery), most dropped in the interval first.
   */
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
  const o = ownOptions('options', options, ['intervalMs', 'topFlows', 'maxFlows', 'rediscoverMs'] as const);
  return {
    intervalMs: integerIn('intervalMs', o.intervalMs, DEFAULT_INTERVAL_MS, INTERVAL_MS_RANGE),
    topFlows: integerIn('topFlows', o.topFlows, 10, [0, 1000]),
    maxFlows: integerIn('maxFlows', o.maxFlows, 4096, [16, 1 << 20]),
    rediscoverMs: integerIn('rediscoverMs', o.rediscoverMs, 5000, [100, 86_400_000]),
  };
}

/** The namespace that holds an inode now, and where its counts start in the kernel map. */
interface Occupant {
  /** What held it at the latest discovery (NamespaceScan.holders); null until it was found. */
  holders: Set<string> | null;
  name: string | null;
  pid: number | null;
  /** The map's count for the inode when this namespace took it: its total starts there. */
  base: number;
  /** The map's count at the previous read. */
  last: number;
}

const overlaps = (a: Set<string>, b: Set<string>) => [...a].some((x) => b.has(x));

export class DropMonitor extends Lifecycle<DropMonitorEvents> {
  readonly options: Readonly<Required<DropMonitorOptions>>;
  private probe: NativeDropProbe | null = null;
  private timer: NodeJS.Timeout | undefined;
  private discoveryTimer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  /** Monotonic ms at the end of the last interval read. */
  private last = 0;
  /** The namespace at each inode the kernel map counts, for this probe's life. */
  private readonly occupants = new Map<number, Occupant>();
  /** The latest discovery, and its namespaces by inode. */
  private scan: NamespaceScan = { namespaces: [], holders: new Map() };
  private found = new Map<number, NetworkNamespace>();
  /** Reads and discoveries run one after another: both use the map and the occupants. */
  private queue: Promise<void> = Promise.resolve();

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
    this.occupants.clear();
    this.probe = probe;
    this.last = performance.now();
    this.timer = setInterval(() => void this.enqueue(() => this.read(false)), this.options.intervalMs);
    this.discoveryTimer = setInterval(
      () => void this.enqueue(async () => void (await this.discover())),
      this.options.rediscoverMs,
    );
    try {
      // Names come and go under /var/run/netns (ip netns add/del): found again at once.
      this.watcher = watch(ROOTS.netnsDir, () => this.discoverSoon());
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      // No /var/run/netns yet: the periodic discovery covers it.
    }
    await this.enqueue(async () => void (await this.discover()));
  }

  /** Emits the partial interval (final: true), then detaches the program. */
  protected async close(): Promise<void> {
    const probe = this.probe;
    if (!probe) return;
    clearInterval(this.timer);
    clearInterval(this.discoveryTimer);
    clearTimeout(this.soon);
    this.watcher?.close();
    this.timer = this.discoveryTimer = this.soon = this.watcher = undefined;
    await this.enqueue(() => this.read(true));
    this.probe = null;
    probe.close();
  }

  protected setReferenced(referenced: boolean): void {
    for (const handle of [this.timer, this.discoveryTimer, this.watcher]) {
      if (referenced) handle?.ref();
      else handle?.unref();
    }
  }

  private discoverSoon(): void {
    if (this.soon || !this.probe) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.enqueue(async () => void (await this.discover()));
    }, 50); // ip netns add creates the file, then mounts the namespace on it
    if (!this.referenced) this.soon.unref();
  }

  /** Runs `step` after the reads and discoveries before it; a step that throws does not stop the queue. */
  private enqueue(step: () => Promise<void> | void): Promise<void> {
    // A listener that throws surfaces as it would from any emitter (on its own tick, with its
    // stack), and the queue goes on.
    this.queue = this.queue.then(step).catch((err: unknown) => {
      process.nextTick(() => {
        throw err;
      });
    });
    return this.queue;
  }

  /**
   * Finds the host's namespaces again and updates the occupants: a gone namespace leaves (and
   * the kernel map, so that its count cannot pass to the next namespace given the inode); a
   * namespace whose holders are all new took a gone one's inode and counts from the map's count
   * at the previous read, when the gone one was last seen to hold it. Returns the inodes let go.
   */
  private async discover(): Promise<Set<number>> {
    const scan = await scanNamespaces(ROOTS);
    this.scan = scan;
    this.found = new Map(scan.namespaces.map((n) => [n.inode, n]));
    const forgotten = new Set<number>();
    const probe = this.probe;
    if (!probe) return forgotten;
    for (const [inode, occupant] of this.occupants) {
      if (inode === 0) continue; // drops whose namespace the program could not tell
      const holders = scan.holders.get(inode);
      if (!holders) {
        this.occupants.delete(inode);
        forgotten.add(inode);
        try {
          probe.forget(inode);
        } catch {
          // already gone from the map
        }
        continue;
      }
      const ns = this.found.get(inode)!;
      if (occupant.holders !== null && !overlaps(occupant.holders, holders)) {
        const base = occupant.last;
        this.occupants.set(inode, { holders, name: ns.name, pid: ns.pid, base, last: base });
        continue;
      }
      Object.assign(occupant, { holders, name: ns.name, pid: ns.pid });
    }
    return forgotten;
  }

  /**
   * Whether something that held the namespace at inode `inode` at the latest discovery still
   * does: a process still in it, or the same bind mount (same name, same inode, same ctime).
   * A stat or two, for namespaces whose count grew: drops are only ever given to a namespace
   * seen to hold the inode when they are read.
   */
  private async stillHeld(inode: number, holders: Set<string>): Promise<boolean> {
    for (const holder of holders) {
      const [kind, rest] = [holder.slice(0, holder.indexOf(':')), holder.slice(holder.indexOf(':') + 1)];
      const name = kind === 'mount' ? rest.slice(0, rest.lastIndexOf(':')) : null;
      const path = name === null ? join(ROOTS.proc, rest, 'ns', 'net') : join(ROOTS.netnsDir, name);
      const st = await stat(path).catch(() => null);
      if (st?.ino === inode && (name === null || String(st.ctimeMs) === rest.slice(rest.lastIndexOf(':') + 1)))
        return true;
    }
    return false;
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
    // Before drops are given to a namespace: a namespace not seen before is found now (one
    // scan per read at most), not at the next periodic discovery, and so is one that took the
    // inode of a namespace that is gone (its holders are not there any more). Even when another
    // scan ran a moment ago (a change of /var/run/netns): it may have run before this namespace
    // was made, and would leave it without a name or a pid until the next periodic discovery.
    let changed = false;
    for (const { inode, drops: count } of counts) {
      const occupant = this.occupants.get(inode);
      if (inode === 0 || final) continue;
      if (!occupant) changed ||= !this.scan.holders.has(inode);
      else if (occupant.holders && count > occupant.last) changed ||= !(await this.stillHeld(inode, occupant.holders));
    }
    const forgotten = changed ? await this.discover() : new Set<number>();
    const namespaces: NamespaceDrops[] = [];
    for (const { inode, drops: count } of counts) {
      if (forgotten.has(inode)) continue; // gone: its count left the map with it
      let occupant = this.occupants.get(inode);
      if (!occupant) {
        const ns = this.found.get(inode);
        occupant = {
          holders: this.scan.holders.get(inode) ?? null,
          name: ns?.name ?? null,
          pid: ns?.pid ?? null,
          base: 0,
          last: 0,
        };
        this.occupants.set(inode, occupant);
      }
      const drops = count - occupant.last;
      occupant.last = count;
      const totalDrops = count - occupant.base;
      if (totalDrops > 0) namespaces.push({ inode, name: occupant.name, pid: occupant.pid, drops, totalDrops });
    }
    namespaces.sort((a, b) => b.drops - a.drops || b.totalDrops - a.totalDrops || a.inode - b.inode);
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
