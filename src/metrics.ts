/**
 * Prometheus metrics through prom-client (an optional peer dependency), in its conventions:
 * metrics go only into the registry the caller passes, and values are set at scrape time from
 * the monitor's latest sample (collect()), never on a timer.
 *
 * Kernel data is named like node_exporter's conntrack collector without its `node_` prefix
 * (node_nf_conntrack_entries is nf_conntrack_entries here: deploy/prometheus/node-exporter.yml
 * records node_exporter's names from these), and fixes its mistakes: kernel counters are
 * counters named `_total`, dead counters (searched, new, insert, ...) are absent, clash_resolve
 * and chaintoolong are present. The exporter's own counters (events it lost, its resyncs,
 * messages it could not decode) are named as the exporter's: `conntrack_monitor_*`. What the
 * backend cannot know is omitted, never 0.
 */
import type { AllNamespacesMonitor, NamespaceReport } from './host/all-namespaces.js';
import type { DropMonitor, DropSample } from './host/drop-monitor.js';
import type { ConntrackMonitor } from './monitor.js';
import type { PressureLevel } from './pressure.js';
import type { TopReport } from './top.js';
import {
  TCP_STATE_NAMES,
  type ConntrackSample,
  type CounterName,
  type CounterSet,
  type ProtocolName,
  type TcpStateName,
} from './types.js';

/** The part of a prom-client Registry this module uses (so prom-client stays optional). */
export interface RegistryLike {
  registerMetric(metric: unknown): void;
}

export interface ConntrackMetricsOptions {
  /** The prom-client Registry to register in. Required: the global one is never touched implicitly. */
  registry: RegistryLike;
  /** Name prefix of the kernel's data. Default `nf_conntrack_`. */
  prefix?: string;
  /** Name prefix of the exporter's own counters (events lost, resyncs, ...). Default `conntrack_monitor_`. */
  monitorPrefix?: string;
  /** Constant labels added to every series, e.g. `{ node: 'web-1' }`. */
  labels?: Record<string, string>;
}

/** Kernel stats exported as counters: `<prefix>stat_<name>_total`. Dead counters are not here. */
const KERNEL_STATS: [CounterName, string, string][] = [
  ['drop', 'drop', 'Packets dropped because no conntrack entry could be created: "table full, dropping packet".'],
  ['earlyDrop', 'early_drop', 'Unassured entries evicted to make room for new ones.'],
  ['insertFailed', 'insert_failed', 'Entries that could not be inserted (races, chain too long).'],
  ['invalid', 'invalid', 'Packets conntrack could not track (invalid state or headers).'],
  ['icmpError', 'icmp_error', 'ICMP errors that did not match a tracked flow.'],
  ['clashResolve', 'clash_resolve', 'Insert races resolved without a drop (Linux >= 5.10).'],
  ['chainTooLong', 'chaintoolong', 'Inserts refused because a hash chain was too long (Linux >= 5.15).'],
  ['searchRestart', 'search_restart', 'Table lookups restarted because of a concurrent resize or move.'],
];

interface PromClient {
  Gauge: new (config: object) => PromMetric;
  Counter: new (config: object) => PromMetric;
}
interface PromMetric {
  name: string;
  reset(): void;
  remove(labels?: Record<string, string>): void;
  set(labels: Record<string, string>, value: number): void;
  inc(labels: Record<string, string>, value: number): void;
}

/** The label a monitored namespace gets: its name under /var/run/netns, else its path. */
export function netnsLabel(path: string | null): string | null {
  if (path === null) return null;
  const named = /^\/(?:var\/)?run\/netns\/([^/]+)$/.exec(path);
  return named ? named[1]! : path;
}

/** The prefixes, once the options are checked; the errors name the function called. */
function checkedPrefix(fn: string, options: ConntrackMetricsOptions): string {
  if (!options || typeof options.registry?.registerMetric !== 'function') {
    throw new TypeError(`${fn}(monitor, { registry }) needs a prom-client Registry`);
  }
  const prefix = options.prefix ?? 'nf_conntrack_';
  for (const p of [prefix, options.monitorPrefix ?? 'conntrack_monitor_']) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(p)) throw new TypeError(`prefix '${p}' is not a valid metric name prefix`);
  }
  return prefix;
}

/** What both registrations export per table: a sample, or one namespace of a node report. */
interface TableSource {
  entries: number | null;
  max: number | null;
  totals: CounterSet;
  events: {
    lostTotal: number;
    newTotal: number;
    destroyTotal: number;
    /** UPDATE events received; absent where UPDATEs are not read (the node monitor). */
    updateTotal?: number;
    malformedTotal: number;
  } | null;
  tcpStates: Record<TcpStateName, number> | null;
  protocols: Record<ProtocolName, number> | null;
}
interface Row<S> {
  labels: Record<string, string>;
  source: S;
}
type Put = (value: number | null | undefined, labels?: Record<string, string>) => void;
type Define<S> = (
  kind: 'Gauge' | 'Counter',
  name: string,
  help: string,
  extraLabels: string[],
  fill: (put: Put, s: S) => void,
) => void;

/**
 * A metric definer: each metric, at each scrape, is reset and filled from `rows()` (one row
 * per labelled table), so the series of a table that is gone disappear at once. A metric is
 * named `prefix + name`, or `name` as given when it starts with the monitor prefix.
 */
function definer<S>(
  options: ConntrackMetricsOptions,
  prefix: string,
  rowLabels: string[],
  rows: () => Row<S>[],
  names: string[],
): Define<S> {
  const client = loadPromClient();
  const monitorPrefix = options.monitorPrefix ?? 'conntrack_monitor_';
  const constant: Record<string, string> = { ...options.labels };
  const constantNames = [...Object.keys(constant), ...rowLabels];
  return (kind, name, help, extraLabels, fill) => {
    const full = name.startsWith(monitorPrefix) ? name : prefix + name;
    names.push(full);
    new client[kind]({
      name: full,
      help,
      labelNames: [...constantNames, ...extraLabels],
      registers: [options.registry],
      collect(this: PromMetric) {
        this.reset();
        if (constantNames.length + extraLabels.length === 0) this.remove(); // reset() leaves a 0
        for (const row of rows()) {
          const put: Put = (value, labels = {}) => {
            if (value === null || value === undefined) return;
            const all = { ...constant, ...row.labels, ...labels };
            if ((this as unknown as { set?: unknown }).set) this.set(all, value);
            else this.inc(all, value);
          };
          fill(put, row.source);
        }
      },
    });
  };
}

/**
 * The metrics of a table wherever it is read: entries, limit, kernel stats, events received,
 * the exporter's own loss and decode counters, states.
 */
function defineTableMetrics<S extends TableSource>(define: Define<S>, monitorPrefix: string): void {
  define('Gauge', 'entries', 'Entries in the conntrack table of the monitored namespace.', [], (put, s) =>
    put(s.entries),
  );
  define(
    'Gauge',
    'entries_limit',
    "nf_conntrack_max: the limit each namespace's entries are compared with.",
    [],
    (put, s) => put(s.max),
  );
  for (const [counter, stat, help] of KERNEL_STATS) {
    define('Counter', `stat_${stat}_total`, help, [], (put, s) => put(s.totals[counter]));
  }
  // Events *received*: exact as that, whatever was lost. Entries created and destroyed are
  // these only while events_lost_total is 0; no series claims more (the sample's
  // totals.insert/delete are null after a loss for the same reason). On the eBPF event path
  // the kernel's filter counts every event before the queue: these are all it sent.
  define(
    'Counter',
    'events_total',
    'ctnetlink events by type: received (events the kernel could not queue are in events_lost_total, not here), or on the eBPF event path every one the kernel sent, counted in the kernel.',
    ['type'],
    (put, s) => {
      if (!s.events) return;
      put(s.events.newTotal, { type: 'new' });
      put(s.events.updateTotal, { type: 'update' });
      put(s.events.destroyTotal, { type: 'destroy' });
    },
  );
  // The exporter's own counters: what happened to this reader, not to the kernel's table.
  define(
    'Counter',
    `${monitorPrefix}events_lost_total`,
    'ctnetlink events the kernel could not queue for this exporter (its socket buffer was full).',
    [],
    (put, s) => put(s.events?.lostTotal),
  );
  define(
    'Counter',
    `${monitorPrefix}malformed_messages_total`,
    'ctnetlink messages this exporter could not decode (truncated or malformed) and skipped.',
    [],
    (put, s) => put(s.events?.malformedTotal),
  );
  define(
    'Gauge',
    'entries_by_state',
    'Tracked entries by protocol and TCP state (non-TCP protocols have state="").',
    ['protocol', 'state'],
    (put, s) => {
      if (!s.tcpStates || !s.protocols) return;
      for (const state of TCP_STATE_NAMES) put(s.tcpStates[state], { protocol: 'tcp', state: state.toLowerCase() });
      for (const protocol of ['udp', 'icmp', 'other'] as const) put(s.protocols[protocol], { protocol, state: '' });
    },
  );
}

/**
 * Registers the conntrack metrics of `monitor` in `options.registry` and returns the metric
 * names. Values come from the latest sample at each scrape; before the first sample, and for
 * fields the backend cannot know, the series are absent.
 */
export function registerConntrackMetrics(monitor: ConntrackMonitor, options: ConntrackMetricsOptions): string[] {
  const prefix = checkedPrefix('registerConntrackMetrics', options);
  const monitorPrefix = options.monitorPrefix ?? 'conntrack_monitor_';
  const netns = netnsLabel(monitor.options.netnsPath);
  const labels: Record<string, string> = netns === null ? {} : { netns };
  let latest: ConntrackSample | null = null;
  monitor.on('sample', (s) => (latest = s));
  const names: string[] = [];
  const define = definer<ConntrackSample>(
    options,
    prefix,
    Object.keys(labels),
    () => (latest ? [{ labels, source: latest }] : []),
    names,
  );
  define('Gauge', 'buckets', 'nf_conntrack_buckets: size of the conntrack hash table.', [], (put, s) => put(s.buckets));
  defineTableMetrics(define, monitorPrefix);
  define(
    'Counter',
    `${monitorPrefix}resyncs_total`,
    "Re-dumps of the table by this exporter to reconcile its tracked entries with the kernel's.",
    [],
    (put, s) => put(s.events?.resyncs),
  );
  define(
    'Counter',
    `${monitorPrefix}samples_missed_total`,
    "Intervals this exporter's JavaScript thread missed (it stalled longer than the native queue holds); their counts are still in the totals.",
    [],
    (put, s) => put(s.events === null ? null : s.samplesMissed),
  );
  define(
    'Gauge',
    'time_to_full_seconds',
    'Seconds until the table is full at the net growth of the last 60 s; absent when it is not growing.',
    [],
    (put, s) => put(s.timeToFullSeconds),
  );
  define(
    'Gauge',
    'tcp_timeout_time_wait_seconds',
    'nf_conntrack_tcp_timeout_time_wait of the monitored namespace.',
    [],
    (put, s) => put(s.timeWait.timeoutSeconds),
  );
  return names;
}

/**
 * The labels of one namespace in the node-wide metrics: `netns` (its name under
 * /var/run/netns, `inode:<number>` when it has none, and empty for the host's, whose series
 * are then those of `serve` without --netns) and its pod's `pod_namespace` and `pod` (empty
 * when it is no pod's).
 */
export function namespaceLabels(n: Pick<NamespaceReport, 'inode' | 'name' | 'host' | 'pod'>): Record<string, string> {
  return {
    netns: n.host ? '' : (n.name ?? `inode:${n.inode}`),
    pod_namespace: n.pod?.namespace ?? '',
    pod: n.pod?.name ?? '',
  };
}

/**
 * Registers the node-wide metrics of an AllNamespacesMonitor in `options.registry`: the same
 * names as registerConntrackMetrics, one series per namespace, labelled by namespaceLabels().
 * The label sets stay bounded: a namespace that is gone leaves the next scrape at once.
 * Returns the metric names.
 */
export function registerAllNamespacesMetrics(
  monitor: AllNamespacesMonitor,
  options: ConntrackMetricsOptions,
): string[] {
  const prefix = checkedPrefix('registerAllNamespacesMetrics', options);
  const monitorPrefix = options.monitorPrefix ?? 'conntrack_monitor_';
  const names: string[] = [];
  const define = definer<NamespaceReport>(
    options,
    prefix,
    ['netns', 'pod_namespace', 'pod'],
    () =>
      (monitor.latest?.namespaces ?? [])
        .filter((n) => n.error === null)
        .map((n) => ({ labels: namespaceLabels(n), source: n })),
    names,
  );
  defineTableMetrics(define, monitorPrefix);
  return names;
}

/**
 * Registers `<prefix>table_full_drops_total{netns}` from a DropMonitor: table-full drops per
 * network namespace since the monitor started, host-wide. `netns` is the namespace's name
 * under /var/run/netns, else `inode:<number>` (a container's namespace). Returns the names.
 */
export function registerDropMetrics(monitor: DropMonitor, options: ConntrackMetricsOptions): string[] {
  const prefix = checkedPrefix('registerDropMetrics', options);
  const client = loadPromClient();
  const constant: Record<string, string> = { ...options.labels };
  let latest: DropSample | null = null;
  monitor.on('sample', (s) => (latest = s));
  const name = `${prefix}table_full_drops_total`;
  new client.Counter({
    name,
    help: "Packets dropped because the namespace's conntrack table was full, attributed by eBPF (skb:kfree_skb).",
    labelNames: [...Object.keys(constant), 'netns'],
    registers: [options.registry],
    collect(this: PromMetric) {
      this.reset();
      for (const ns of latest?.namespaces ?? [])
        this.inc({ ...constant, netns: ns.name ?? `inode:${ns.inode}` }, ns.totalDrops);
    },
  });
  return [name];
}

/** The `group` label of each TopReport group. */
const TOP_GROUPS = [
  ['bySource', 'source'],
  ['byDestination', 'destination'],
  ['byDestinationPort', 'destination_port'],
  ['byState', 'state'],
] as const;

/**
 * Registers what the latest snapshot under pressure found (the monitor needs the
 * `snapshotOnPressure` option): `<prefix>top_entries{group, key}` for the top N keys of each
 * group (`source`, `destination`, `destination_port`, `state`) and their `key="other"` rest,
 * `<prefix>evictable_entries` (what the kernel can reclaim), `<prefix>unassured_entries` and
 * `<prefix>tcp_closing_entries` (its two classes). Cardinality is bounded: at most 4 x (N + 1)
 * series, replaced by each snapshot, so a key that leaves the top N leaves the exposition.
 * Absent while the pressure level is ok: the last snapshot is stale then. Returns the metric
 * names.
 */
export function registerTopMetrics(monitor: ConntrackMonitor, options: ConntrackMetricsOptions): string[] {
  const prefix = checkedPrefix('registerTopMetrics', options);
  if (!monitor.options.snapshotOnPressure) {
    throw new TypeError('registerTopMetrics(monitor) needs a monitor made with the snapshotOnPressure option');
  }
  const client = loadPromClient();
  const constant: Record<string, string> = { ...options.labels };
  const netns = netnsLabel(monitor.options.netnsPath);
  if (netns !== null) constant.netns = netns;
  let latest: TopReport | null = null;
  let level: PressureLevel = 'ok';
  monitor.on('top', (r) => (latest = r));
  monitor.on('pressure', (e) => (level = e.level));
  const current = () => (level === 'ok' ? null : latest);
  const top = `${prefix}top_entries`;
  const evictable = `${prefix}evictable_entries`;
  new client.Gauge({
    name: top,
    help: 'Entries of the heaviest keys of the latest snapshot under pressure, by group (source, destination, destination_port, state); key="other" sums the rest.',
    labelNames: [...Object.keys(constant), 'group', 'key'],
    registers: [options.registry],
    collect(this: PromMetric) {
      this.reset();
      const r = current();
      if (!r) return;
      for (const [field, group] of TOP_GROUPS)
        for (const item of r[field]) this.set({ ...constant, group, key: item.key }, item.entries);
    },
  });
  // What the kernel can reclaim (src/verdict.ts): the union, and each class on its own (an
  // unassured TCP entry in CLOSE is in both, so they are separate gauges, not one label).
  const reclaim = [
    [
      evictable,
      'evictable',
      'Entries the kernel can reclaim in the latest snapshot under pressure: unassured or closing TCP, each once.',
    ],
    [
      `${prefix}unassured_entries`,
      'unassured',
      'Entries without IPS_ASSURED in the latest snapshot under pressure: what early_drop evicts for new entries.',
    ],
    [
      `${prefix}tcp_closing_entries`,
      'tcpClosing',
      'TCP entries in FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT or CLOSE in the latest snapshot under pressure: what the garbage collector evicts once an insert failed at 95% full.',
    ],
  ] as const;
  for (const [name, field, help] of reclaim) {
    new client.Gauge({
      name,
      help,
      labelNames: Object.keys(constant),
      registers: [options.registry],
      collect(this: PromMetric) {
        this.reset();
        if (Object.keys(constant).length === 0) this.remove(); // reset() leaves a 0
        const r = current();
        if (r) this.set(constant, r[field]);
      },
    });
  }
  return [top, ...reclaim.map(([name]) => name)];
}

function loadPromClient(): PromClient {
  try {
    // Resolved from where this package is installed, so normally the application's own
    // prom-client: the metric classes must come from the same copy as the registry.
    return require('prom-client') as PromClient;
  } catch {
    throw new Error('registerConntrackMetrics needs prom-client: npm install prom-client');
  }
}
