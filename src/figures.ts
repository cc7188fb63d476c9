/**
 * The figures the library exports, in one table that both registrations read: for each, its
 * Prometheus metric (prom-client, src/metrics.ts), its OpenTelemetry instrument
 * (src/opentelemetry.ts), its meaning, and the field of a sample (or of one namespace of a
 * node report) it comes from. A figure has one meaning and one source whatever the exporter.
 *
 * Prometheus names are node_exporter's conntrack names without `node_` (see src/metrics.ts).
 * OpenTelemetry names: `system.network.conntrack.count` and `.max` exactly as the Collector's
 * hostmetrics receiver defines them (non-monotonic sums of integers, unit `{entries}`, its
 * descriptions); the rest under `conntrack.`, with annotation units (`{entries}`,
 * `{packets}`, ...) and `s`, counters as monotonic sums of the samples' totals.
 */
import {
  TCP_STATE_NAMES,
  type ConntrackSample,
  type CounterName,
  type CounterSet,
  type ProtocolName,
  type TcpStateName,
} from './types.js';

/** What both registrations export per table: a sample, or one namespace of a node report. */
export interface TableSource {
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

/**
 * Puts one value of a figure with the labels of its series (named as the Prometheus labels;
 * an empty value is no label). Null and undefined put nothing: unknown is absent, never 0.
 */
export type Put = (value: number | null | undefined, labels?: Record<string, string>) => void;

export interface Figure<S> {
  /**
   * The Prometheus metric: its name after the kernel data's prefix (`nf_conntrack_`), or,
   * for the exporter's own counters (`own`), after the monitor prefix (`conntrack_monitor_`).
   * Null when the figure has none.
   */
  prometheus: { name: string; type: 'gauge' | 'counter'; own?: true } | null;
  /**
   * The OpenTelemetry instrument (asynchronous), its unit and whether its values are integers;
   * `description` when it is not `help`. Null when the figure has none.
   */
  openTelemetry: {
    name: string;
    instrument: 'counter' | 'updowncounter' | 'gauge';
    unit: string;
    integer: boolean;
    description?: string;
  } | null;
  help: string;
  /** The labels it puts beyond the table's own (Prometheus names; see OTEL_ATTRIBUTE). */
  labels: string[];
  /** The field it reads, as the docs name it. */
  source: string;
  read: (put: Put, s: S) => void;
}

/** The OpenTelemetry attribute of each figure label (see docs/opentelemetry.md for why these). */
export const OTEL_ATTRIBUTE: Record<string, string> = {
  type: 'conntrack.event.type',
  protocol: 'network.transport',
  state: 'conntrack.tcp.state',
};

/** Kernel stats: the sample's counter, the stat's name, its meaning, the OTel name and unit. Dead stats are not here. */
const KERNEL_STATS: [CounterName, string, string, string, string][] = [
  [
    'drop',
    'drop',
    'Packets dropped because no conntrack entry could be created: "table full, dropping packet".',
    'conntrack.drops',
    '{packets}',
  ],
  [
    'earlyDrop',
    'early_drop',
    'Unassured entries evicted to make room for new ones.',
    'conntrack.early_drops',
    '{entries}',
  ],
  [
    'insertFailed',
    'insert_failed',
    'Entries that could not be inserted (races, chain too long).',
    'conntrack.insert_failed',
    '{entries}',
  ],
  [
    'invalid',
    'invalid',
    'Packets conntrack could not track (invalid state or headers).',
    'conntrack.invalid',
    '{packets}',
  ],
  ['icmpError', 'icmp_error', 'ICMP errors that did not match a tracked flow.', 'conntrack.icmp_errors', '{packets}'],
  [
    'clashResolve',
    'clash_resolve',
    'Insert races resolved without a drop (Linux >= 5.10).',
    'conntrack.clash_resolve',
    '{entries}',
  ],
  [
    'chainTooLong',
    'chaintoolong',
    'Inserts refused because a hash chain was too long (Linux >= 5.15).',
    'conntrack.chaintoolong',
    '{entries}',
  ],
  [
    'searchRestart',
    'search_restart',
    'Table lookups restarted because of a concurrent resize or move.',
    'conntrack.search_restarts',
    '{restarts}',
  ],
];

const counter = (name: string, unit: string) => ({ name, instrument: 'counter' as const, unit, integer: true });

/** The figures of a table wherever it is read: a monitor's sample or a node report's namespace. */
export const TABLE_FIGURES: Figure<TableSource>[] = [
  {
    prometheus: { name: 'entries', type: 'gauge' },
    openTelemetry: {
      name: 'system.network.conntrack.count',
      instrument: 'updowncounter',
      unit: '{entries}',
      integer: true,
      description: 'The count of entries in conntrack table.',
    },
    help: 'Entries in the conntrack table of the monitored namespace.',
    labels: [],
    source: 'entries',
    read: (put, s) => put(s.entries),
  },
  {
    prometheus: { name: 'entries_limit', type: 'gauge' },
    openTelemetry: {
      name: 'system.network.conntrack.max',
      instrument: 'updowncounter',
      unit: '{entries}',
      integer: true,
      description: 'The limit for entries in the conntrack table.',
    },
    help: "nf_conntrack_max: the limit each namespace's entries are compared with.",
    labels: [],
    source: 'max',
    read: (put, s) => put(s.max),
  },
  // Entries created and destroyed, exact: null (absent) from the first lost event on, except
  // on the eBPF path, whose counts are taken in the kernel before any queue. Prometheus has
  // nf_conntrack_events_total{type} instead (events received), as node_exporter's users expect.
  {
    prometheus: null,
    openTelemetry: counter('conntrack.inserts', '{entries}'),
    help: 'Conntrack entries created (NEW events) since the monitor started; absent once events were lost, unless counted in the kernel.',
    labels: [],
    source: 'totals.insert',
    read: (put, s) => put(s.totals.insert),
  },
  {
    prometheus: null,
    openTelemetry: counter('conntrack.deletes', '{entries}'),
    help: 'Conntrack entries destroyed (DESTROY events) since the monitor started; absent once events were lost, unless counted in the kernel.',
    labels: [],
    source: 'totals.delete',
    read: (put, s) => put(s.totals.delete),
  },
  ...KERNEL_STATS.map(([field, stat, help, name, unit]): Figure<TableSource> => ({
    prometheus: { name: `stat_${stat}_total`, type: 'counter' },
    openTelemetry: counter(name, unit),
    help,
    labels: [],
    source: `totals.${field}`,
    read: (put, s) => put(s.totals[field]),
  })),
  // Events *received*: exact as that, whatever was lost. Entries created and destroyed are
  // these only while no event was lost; no series claims more (the sample's totals.insert and
  // totals.delete are null after a loss for the same reason). On the eBPF event path the
  // kernel's filter counts every event before the queue: these are all it sent.
  {
    prometheus: { name: 'events_total', type: 'counter' },
    openTelemetry: {
      ...counter('conntrack.events.received', '{events}'),
      description:
        'ctnetlink events by conntrack.event.type: received (events the kernel could not queue are in conntrack.events.lost, not here), or on the eBPF event path every one the kernel sent, counted in the kernel.',
    },
    help: 'ctnetlink events by type: received (events the kernel could not queue are in events_lost_total, not here), or on the eBPF event path every one the kernel sent, counted in the kernel.',
    labels: ['type'],
    source: 'events.{new,update,destroy}Total',
    read: (put, s) => {
      if (!s.events) return;
      put(s.events.newTotal, { type: 'new' });
      put(s.events.updateTotal, { type: 'update' });
      put(s.events.destroyTotal, { type: 'destroy' });
    },
  },
  // The exporter's own counters: what happened to this reader, not to the kernel's table.
  {
    prometheus: { name: 'events_lost_total', type: 'counter', own: true },
    openTelemetry: counter('conntrack.events.lost', '{events}'),
    help: 'ctnetlink events the kernel could not queue for this exporter (its socket buffer was full).',
    labels: [],
    source: 'events.lostTotal',
    read: (put, s) => put(s.events?.lostTotal),
  },
  {
    prometheus: { name: 'malformed_messages_total', type: 'counter', own: true },
    openTelemetry: counter('conntrack.messages.malformed', '{messages}'),
    help: 'ctnetlink messages this exporter could not decode (truncated or malformed) and skipped.',
    labels: [],
    source: 'events.malformedTotal',
    read: (put, s) => put(s.events?.malformedTotal),
  },
  {
    prometheus: { name: 'entries_by_state', type: 'gauge' },
    openTelemetry: {
      name: 'conntrack.entry.count',
      instrument: 'updowncounter',
      unit: '{entries}',
      integer: true,
      description: 'Tracked entries by network.transport (tcp, udp, icmp, other) and, for TCP, conntrack.tcp.state.',
    },
    help: 'Tracked entries by protocol and TCP state (non-TCP protocols have state="").',
    labels: ['protocol', 'state'],
    source: 'tcpStates, protocols',
    read: (put, s) => {
      if (!s.tcpStates || !s.protocols) return;
      for (const state of TCP_STATE_NAMES) put(s.tcpStates[state], { protocol: 'tcp', state: state.toLowerCase() });
      for (const protocol of ['udp', 'icmp', 'other'] as const) put(s.protocols[protocol], { protocol, state: '' });
    },
  },
];

const gauge = (name: string, unit: string, integer: boolean) => ({
  name,
  instrument: 'gauge' as const,
  unit,
  integer,
});

/** The figures of a single monitor's sample: the table's, and what only a full monitor knows. */
export const SAMPLE_FIGURES: Figure<ConntrackSample>[] = [
  {
    prometheus: { name: 'buckets', type: 'gauge' },
    openTelemetry: gauge('conntrack.buckets', '{buckets}', true),
    help: 'nf_conntrack_buckets: size of the conntrack hash table.',
    labels: [],
    source: 'buckets',
    read: (put, s) => put(s.buckets),
  },
  ...TABLE_FIGURES,
  {
    prometheus: { name: 'resyncs_total', type: 'counter', own: true },
    openTelemetry: counter('conntrack.resyncs', '{resyncs}'),
    help: "Re-dumps of the table by this exporter to reconcile its tracked entries with the kernel's.",
    labels: [],
    source: 'events.resyncs',
    read: (put, s) => put(s.events?.resyncs),
  },
  {
    prometheus: { name: 'samples_missed_total', type: 'counter', own: true },
    openTelemetry: counter('conntrack.samples.missed', '{samples}'),
    help: "Intervals this exporter's JavaScript thread missed (it stalled longer than the native queue holds); their counts are still in the totals.",
    labels: [],
    source: 'samplesMissed',
    read: (put, s) => put(s.events === null ? null : s.samplesMissed),
  },
  {
    prometheus: { name: 'time_to_full_seconds', type: 'gauge' },
    openTelemetry: gauge('conntrack.time_to_full', 's', false),
    help: 'Seconds until the table is full at the net growth of the last 60 s; absent when it is not growing.',
    labels: [],
    source: 'timeToFullSeconds',
    read: (put, s) => put(s.timeToFullSeconds),
  },
  {
    prometheus: { name: 'tcp_timeout_time_wait_seconds', type: 'gauge' },
    openTelemetry: gauge('conntrack.time_wait.timeout', 's', true),
    help: 'nf_conntrack_tcp_timeout_time_wait of the monitored namespace.',
    labels: [],
    source: 'timeWait.timeoutSeconds',
    read: (put, s) => put(s.timeWait.timeoutSeconds),
  },
];

/** The name a monitored namespace goes by: its name under /var/run/netns, else its path. */
export function netnsLabel(path: string | null): string | null {
  if (path === null) return null;
  const named = /^\/(?:var\/)?run\/netns\/([^/]+)$/.exec(path);
  return named ? named[1]! : path;
}

/**
 * The name of one namespace of a node report: its name under /var/run/netns, else
 * `inode:<number>`; empty for the node's own namespace.
 */
export function namespaceNetns(n: { inode: number; name: string | null; host: boolean }): string {
  return n.host ? '' : (n.name ?? `inode:${n.inode}`);
}
