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
 * backend cannot know is omitted, never 0. The figures and their meaning are src/figures.ts,
 * which the OpenTelemetry instruments read too.
 */
import type { AllNamespacesMonitor, NamespaceReport } from './host/all-namespaces.js';
import type { DropMonitor, DropSample } from './host/drop-monitor.js';
import type { ConntrackMonitor } from './monitor.js';
import type { PressureLevel } from './pressure.js';
import type { TopReport } from './top.js';
import { SAMPLE_FIGURES, TABLE_FIGURES, namespaceNetns, netnsLabel, type Figure, type Put } from './figures.js';
import type { ConntrackSample } from './types.js';

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

interface Row<S> {
  labels: Record<string, string>;
  source: S;
}
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

/** Defines the Prometheus metric of each figure that has one, in the table's order. */
function defineFigures<S>(define: Define<S>, figures: Figure<S>[], monitorPrefix: string): void {
  for (const f of figures) {
    if (!f.prometheus) continue;
    const name = f.prometheus.own ? monitorPrefix + f.prometheus.name : f.prometheus.name;
    define(f.prometheus.type === 'gauge' ? 'Gauge' : 'Counter', name, f.help, f.labels, f.read);
  }
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
  defineFigures(define, SAMPLE_FIGURES, monitorPrefix);
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
    netns: namespaceNetns(n),
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
  defineFigures(define, TABLE_FIGURES, monitorPrefix);
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
