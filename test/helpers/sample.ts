import { COUNTER_NAMES, type ConntrackSample, type CounterSet, type NamespaceReport } from '../../dist/index.js';

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object | null ? DeepPartial<NonNullable<T[K]>> | T[K] : T[K] };

/**
 * A netlink sample for tests of pure functions (renderer, advisor, check, pressure): a quiet
 * 1 s interval unless `over` says otherwise. `entries`/`max` set `fill`.
 */
export function sample(over: DeepPartial<ConntrackSample> & { t?: number } = {}): ConntrackSample {
  const zero = {
    insert: 0,
    delete: 0,
    drop: 0,
    earlyDrop: 0,
    insertFailed: 0,
    invalid: 0,
    icmpError: 0,
    clashResolve: 0,
    chainTooLong: 0,
    searchRestart: 0,
  };
  const entries = over.entries === undefined ? 100 : over.entries;
  const max = over.max === undefined ? 1000 : over.max;
  const tw = over.timeWait?.entries ?? 0;
  const base: ConntrackSample = {
    time: new Date(Date.UTC(2026, 10, 27, 12, 0, over.t ?? 0)).toISOString(),
    intervalMs: 1000,
    source: 'netlink',
    netns: null,
    entries,
    max,
    fill: entries === null || max === null ? null : entries / max,
    buckets: 1024,
    counts: { ...zero, ...over.counts },
    rates: { ...zero, ...over.counts },
    totals: { ...zero, ...over.totals },
    events: {
      path: 'ebpf',
      pathReason: null,
      received: 0,
      lost: 0,
      lostTotal: 0,
      lostSince: null,
      newTotal: over.totals?.insert ?? 0,
      updateTotal: 0,
      destroyTotal: over.totals?.delete ?? 0,
      receiveBufferBytes: 67108864,
      updates: 0,
      resyncs: 0,
      lastResyncMs: 1,
      malformedTotal: 0,
      ...over.events,
    },
    socketTimeWait: 0,
    timeWait: { entries: tw, timeoutSeconds: 120, share: max ? tw / max : null, ...over.timeWait },
    tcpStates: {
      NONE: 0,
      SYN_SENT: 0,
      SYN_RECV: 0,
      ESTABLISHED: 0,
      FIN_WAIT: 0,
      CLOSE_WAIT: 0,
      LAST_ACK: 0,
      TIME_WAIT: tw,
      CLOSE: 0,
      SYN_SENT2: 0,
    },
    protocols: { tcp: tw, udp: 0, icmp: 0, other: 0 },
    eventsMode: 1,
    timeToFullSeconds: null,
    final: false,
    samplesMissed: 0,
    unavailable: {},
  };
  return base;
}

/** Every counter at `v`. */
export function counters(v: number | null): CounterSet {
  return Object.fromEntries(COUNTER_NAMES.map((k) => [k, v])) as CounterSet;
}

/**
 * One namespace of a node report for tests of pure functions (node view, metrics): a quiet,
 * monitored namespace that is no pod's, unless `over` says otherwise.
 */
export function namespaceReport(over: Partial<NamespaceReport> = {}): NamespaceReport {
  return {
    inode: 4026532000,
    name: null,
    pid: null,
    host: false,
    pod: null,
    intervalMs: 1000,
    entries: 10,
    max: 262144,
    fill: 10 / 262144,
    counts: counters(0),
    rates: counters(0),
    totals: counters(0),
    events: {
      counting: 'ebpf',
      countingFallback: null,
      received: 0,
      lost: 0,
      lostTotal: 0,
      lostSince: null,
      newTotal: 0,
      destroyTotal: 0,
      malformedTotal: 0,
      receiveBufferBytes: 0,
    },
    timeWait: null,
    tcpStates: null,
    protocols: null,
    drops: 0,
    dropRate: 0,
    inserts: 0,
    insertRate: 0,
    totalDrops: 0,
    source: 'netlink',
    error: null,
    unavailable: {},
    ...over,
  };
}
