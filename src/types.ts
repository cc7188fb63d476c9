/**
 * Public types of conntrack-monitor. The sample is the library's contract: later versions
 * add fields, never rename these.
 */

/** Counters in every sample, in this order. */
export const COUNTER_NAMES = [
  'insert',
  'delete',
  'drop',
  'earlyDrop',
  'insertFailed',
  'invalid',
  'icmpError',
  'clashResolve',
  'chainTooLong',
  'searchRestart',
] as const;

/**
 * - `insert`: conntrack entries created (NEW events). The kernel's own `insert` stat is dead on
 *   the packet path since Linux 4.x, so it is never used.
 * - `delete`: entries destroyed (DESTROY events).
 * - `drop`: packets dropped because no entry could be created: "nf_conntrack: table full,
 *   dropping packet" (plus rare tracker drops the kernel counts in the same stat).
 * - `earlyDrop`: unassured entries evicted to make room for a new one.
 * - `insertFailed`, `invalid`, `icmpError`, `clashResolve`, `chainTooLong`, `searchRestart`:
 *   the kernel's per-CPU stats of the same names, summed over CPUs.
 */
export type CounterName = (typeof COUNTER_NAMES)[number];

/** One value per counter; `null` where the backend cannot know it (see `unavailable`). */
export type CounterSet = Record<CounterName, number | null>;

/** TCP conntrack states (enum tcp_conntrack), in kernel order. */
export const TCP_STATE_NAMES = [
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
  'SYN_SENT2',
] as const;
export type TcpStateName = (typeof TCP_STATE_NAMES)[number];

export const PROTOCOL_NAMES = ['tcp', 'udp', 'icmp', 'other'] as const;
export type ProtocolName = (typeof PROTOCOL_NAMES)[number];

export type BackendName = 'auto' | 'netlink' | 'proc';

export interface ConntrackMonitorOptions {
  /**
   * Network namespace to monitor: a path such as `/var/run/netns/NAME` or `/proc/PID/ns/net`,
   * or a bare name under /var/run/netns. Default: the process's own namespace.
   */
  netns?: string;
  /** Length of an interval in milliseconds (50 to 3,600,000). Default 1000. */
  intervalMs?: number;
  /**
   * Receive buffer requested for the event socket, in bytes (4,096 to 1 GiB). Default 32 MiB.
   * Set with SO_RCVBUFFORCE, falling back to SO_RCVBUF (capped by net.core.rmem_max) when not
   * permitted. The kernel charges about 1280 bytes per queued event.
   */
  receiveBufferBytes?: number;
  /**
   * Period of the re-dump that reconciles the tracked table with the kernel's, in
   * milliseconds (1,000 to 86,400,000), or 0 for none. Default 60,000. Lost events trigger
   * a re-dump at once whatever this is.
   */
  resyncIntervalMs?: number;
  /**
   * Data source. `'netlink'`: ctnetlink events and stats (CAP_NET_ADMIN). `'proc'`: /proc files,
   * no privileges, fewer fields (null, with reasons). `'auto'` (default): netlink, falling back
   * to proc with a `'fallback'` event when netlink is not permitted or not available.
   */
  backend?: BackendName;
  /**
   * Thresholds of the `'pressure'` event, as fractions of nf_conntrack_max. Default
   * `{ warning: 0.75, critical: 0.9, hysteresis: 0.05 }`; any drop is critical.
   */
  pressure?: Partial<import('./pressure.js').PressureThresholds>;
  /**
   * Take a snapshot of the table (what fills it: see `topEntries`) by itself while the
   * pressure level is warning or critical, at most once a minute (a dump walks the whole hash
   * table), and emit it as `'top'`. `{ limit }`: keys per group (default 10). Default false.
   * Needs ctnetlink: nothing is taken while the monitor runs on /proc.
   */
  snapshotOnPressure?: { limit?: number } | false;
}

export interface EventStats {
  /**
   * How events are read. `'ebpf'`: an eBPF socket filter on the event socket counts every
   * event in the kernel (insert and delete are its counts, exact whatever the rate: nothing is
   * queued for them) and keeps every entry's protocol, TCP state and deadline in a kernel table,
   * so that nothing is queued but what that table cannot hold. `'netlink'`: the classic filter;
   * every count comes from events read from the socket.
   */
  path: 'ebpf' | 'netlink';
  /** Why the eBPF filter is not used, in one line (for example a missing CAP_BPF); null on it. */
  pathReason: string | null;
  /** ctnetlink event messages read in this interval (on the eBPF path, only those it queued). */
  received: number;
  /**
   * Events the kernel could not queue for this monitor in this interval (SK_MEMINFO_DROPS). When
   * it is not 0, `counts.insert`/`counts.delete` are null: some lost events were NEW or DESTROY.
   * On the eBPF path they are not: its counts are taken before the queue.
   */
  lost: number;
  /** Lost events since start. When it is not 0, `totals.insert`/`totals.delete` are null (not on the eBPF path). */
  lostTotal: number;
  /** When the first event was lost since start (ISO 8601), or null. */
  lostSince: string | null;
  /**
   * Events received since start, by type: what this reader read, exact as such, but short of
   * what the kernel sent by the `lostTotal` it could not queue. `newTotal` and `destroyTotal`
   * equal `totals.insert` and `totals.delete` until the first loss. On the eBPF path, every
   * event the kernel sent, counted by its filter before any queue (none can be lost).
   */
  newTotal: number;
  updateTotal: number;
  destroyTotal: number;
  /** Effective receive buffer of the event socket as the kernel reports it (it doubles the request). */
  receiveBufferBytes: number;
  /** Of `received`, UPDATE messages (TCP state changes; the socket filter drops the rest). */
  updates: number;
  /**
   * Re-dumps (listings) of the table since start, after the initial one: periodic, after lost
   * events, or to learn the new deadline of entries a walk found alive past theirs.
   */
  resyncs: number;
  /**
   * Tracked entries past the deadline their last event or listing announced, not checked
   * against the kernel since: while any is, `tcpStates`, `protocols` and `timeWait.entries` are
   * null, with the reason. Normally 0: before each sample the monitor checks them (a walk of the
   * table, which makes the kernel reap the expired ones and tells which are alive); walks are
   * spaced so that they take at most 1% of a core (0.5% for a whole node), and this says how
   * many wait for the next.
   */
  unverified: number;
  /** Walks of the table since start, and how long the latest took (ms). */
  walks: number;
  lastWalkMs: number | null;
  /** How long the latest dump took, in milliseconds (the initial one until a resync runs). */
  lastResyncMs: number | null;
  /** Messages that could not be decoded (truncated or malformed; skipped), since start. */
  malformedTotal: number;
}

export interface TimeWaitStats {
  /** Tracked TCP entries in TIME_WAIT: entries the kernel lists, not those it has yet to reap. */
  entries: number | null;
  /** nf_conntrack_tcp_timeout_time_wait of the namespace, in seconds. */
  timeoutSeconds: number | null;
  /** entries / max: how much of the table TIME_WAIT takes. */
  share: number | null;
}

export interface ConntrackSample {
  /** End of the interval, ISO 8601. */
  time: string;
  /** Actual length of the interval in milliseconds. */
  intervalMs: number;
  /** Which backend produced the sample. */
  source: 'netlink' | 'proc';
  /** The monitored namespace's path, or null for the process's own. */
  netns: string | null;
  /** Entries in the monitored namespace's table at the end of the interval. */
  entries: number | null;
  /** nf_conntrack_max: global, but compared with each namespace's own count. */
  max: number | null;
  /** entries / max. */
  fill: number | null;
  /** nf_conntrack_buckets (hash table size). */
  buckets: number | null;
  /** Integers in this interval. */
  counts: CounterSet;
  /** counts per second of the actual interval. */
  rates: CounterSet;
  /** Since start. */
  totals: CounterSet;
  /** Event stream statistics; null for the proc backend, which reads no events. */
  events: EventStats | null;
  /**
   * TCP *sockets* in TIME_WAIT in the namespace (`tw` in /proc/net/sockstat): this host's own
   * endpoints, not conntrack entries; see `timeWait` for those.
   */
  socketTimeWait: number | null;
  /** TIME_WAIT occupancy. */
  timeWait: TimeWaitStats;
  /** Tracked TCP entries by state. */
  tcpStates: Record<TcpStateName, number> | null;
  /** Tracked entries by protocol (icmp includes ICMPv6). */
  protocols: Record<ProtocolName, number> | null;
  /** net.netfilter.nf_conntrack_events of the namespace: 0 off, 1 on, 2 auto. */
  eventsMode: 0 | 1 | 2 | null;
  /**
   * Seconds until `entries` reaches `max` at the net growth of the last 60 s (least-squares
   * slope of the samples, at least 5 of them over at least 5 s); 0 when full; null when the
   * table is not growing or there are too few samples yet (see `unavailable`).
   */
  timeToFullSeconds: number | null;
  /** True for the partial interval that stop() closes, so that totals are complete. */
  final: boolean;
  /**
   * Samples never delivered since start because the JavaScript thread stalled for longer than
   * the native queue holds (1024 intervals). Their counts are still in `totals`.
   */
  samplesMissed: number;
  /** For each null field, a one-line reason. Empty when everything is known. */
  unavailable: Partial<Record<string, string>>;
}

/** Something the monitor cannot fix but the operator should know; the monitor keeps running. */
export interface ConntrackWarning {
  /**
   * - `EVENTS_OFF`: nf_conntrack_events=0, the kernel sends no events in this namespace.
   * - `EVENTS_AUTO`: nf_conntrack_events=2, entries created while no listener existed send none.
   */
  code: 'EVENTS_OFF' | 'EVENTS_AUTO';
  message: string;
}

/** The monitor runs on /proc because ctnetlink could not be used. */
export interface ConntrackFallback {
  from: 'netlink';
  to: 'proc';
  /** One line: why netlink could not be used. */
  reason: string;
  error: import('./errors.js').ConntrackError;
}

/** Events of ConntrackMonitor, as a typed EventEmitter map. */
export interface ConntrackMonitorEvents {
  sample: [sample: ConntrackSample];
  fallback: [fallback: ConntrackFallback];
  error: [error: import('./errors.js').ConntrackError];
  warning: [warning: ConntrackWarning];
  pressure: [event: import('./pressure.js').PressureEvent];
  /** A snapshot taken under pressure (option `snapshotOnPressure`). */
  top: [report: import('./top.js').TopReport];
}
