/**
 * The one sample builder. Each backend says what it read and, for every value it does not
 * have, why (it is the one that knows: a failed request and its errno, a dump still running, a
 * file this kernel lacks); buildSample() derives the rest (fill, rates, TIME_WAIT's share), gives
 * every derived null its reason, and shapes the public ConntrackSample. Runs once per interval.
 */
import { errnoName } from './errors.js';
import type { RawInterval, RawSample, RawTableCounts } from './native.js';
import {
  COUNTER_NAMES,
  PROTOCOL_NAMES,
  TCP_STATE_NAMES,
  type ConntrackSample,
  type CounterName,
  type CounterSet,
  type EventStats,
  type ProtocolName,
  type TcpStateName,
} from './types.js';

/** What a backend read in one interval; each null has its reason in `unavailable`. */
export interface SampleParts {
  endWallMs: number;
  durationNs: number;
  final: boolean;
  source: ConntrackSample['source'];
  netns: string | null;
  entries: number | null;
  max: number | null;
  buckets: number | null;
  counts: CounterSet;
  totals: CounterSet;
  events: EventStats | null;
  /**
   * Tracked entries by TCP state and protocol (in TCP_STATE_NAMES / PROTOCOL_NAMES order); each
   * of timeWait.entries, tcpStates and protocols is null anyway where `unavailable` says why.
   */
  tracked: { tcpStates: readonly number[]; protocols: readonly number[] } | null;
  timeWaitTimeout: number | null;
  eventsMode: number | null;
  socketTimeWait: number | null;
  samplesMissed: number;
  /** Why each null above is null, keyed by the sample's field names (`counts.drop`, `entries`). */
  unavailable: Partial<Record<string, string>>;
}

export function buildSample(p: SampleParts): ConntrackSample {
  const unavailable = { ...p.unavailable };
  const because = (field: string, reason: string | undefined) => {
    unavailable[field] ??= reason ?? 'unknown';
  };
  const fill = p.entries !== null && p.max ? p.entries / p.max : null;
  if (fill === null) because('fill', unavailable.entries ?? unavailable.max ?? 'nf_conntrack_max is 0');
  const known = (field: string) => (p.tracked && p.unavailable[field] === undefined ? p.tracked : null);
  const timeWaitEntries = known('timeWait.entries')?.tcpStates[TCP_STATE_NAMES.indexOf('TIME_WAIT')] ?? null;
  if (timeWaitEntries !== null && !p.max) because('timeWait.share', unavailable.max ?? 'nf_conntrack_max is unknown');
  if (timeWaitEntries === null) because('timeWait.share', unavailable['timeWait.entries']);
  for (const name of COUNTER_NAMES) {
    if (p.counts[name] === null) because(`rates.${name}`, unavailable[`counts.${name}`]);
  }
  const eventsMode = p.eventsMode === 0 || p.eventsMode === 1 || p.eventsMode === 2 ? p.eventsMode : null;
  return {
    time: new Date(p.endWallMs).toISOString(),
    intervalMs: round(p.durationNs / 1e6),
    source: p.source,
    netns: p.netns,
    entries: p.entries,
    max: p.max,
    fill,
    buckets: p.buckets,
    counts: p.counts,
    rates: ratesOf(p.counts, p.durationNs / 1e9),
    totals: p.totals,
    events: p.events,
    socketTimeWait: p.socketTimeWait,
    timeWait: {
      entries: timeWaitEntries,
      timeoutSeconds: p.timeWaitTimeout,
      share: timeWaitEntries !== null && p.max ? timeWaitEntries / p.max : null,
    },
    tcpStates: known('tcpStates') && byName(TCP_STATE_NAMES, p.tracked!.tcpStates),
    protocols: known('protocols') && byName(PROTOCOL_NAMES, p.tracked!.protocols),
    eventsMode,
    timeToFullSeconds: null, // the monitor's forecast (src/forecast.ts) fills it in
    final: p.final,
    samplesMissed: p.samplesMissed,
    unavailable,
  };
}

export interface NetlinkContext {
  netns: string | null;
  receiveBufferBytes: number;
  eventsPath: 'ebpf' | 'netlink';
  eventsPathReason: string | null;
}

export const EVENTS_OFF = 'nf_conntrack_events is 0 in this namespace: the kernel sends no conntrack events';

/** The parts of a native (ctnetlink) interval, with the reasons only the native side knows. */
export function netlinkParts(raw: RawSample, ctx: NetlinkContext): SampleParts {
  const eventsOff = raw.eventsMode === 0;
  // On the eBPF path the kernel's filter counts every event before it is queued: loss of what
  // it queues takes nothing from insert and delete.
  const { counts, totals, unavailable } = intervalCounters(
    raw,
    eventsOff ? EVENTS_OFF : null,
    ctx.receiveBufferBytes,
    ctx.eventsPath === 'ebpf',
  );
  if (raw.buckets === null) unavailable.buckets = '/proc/sys/net/netfilter/nf_conntrack_buckets is not readable';
  if (raw.socketTimeWait === null) unavailable.socketTimeWait = '/proc/net/sockstat has no TCP line';
  if (raw.timeWaitTimeout === null) {
    unavailable['timeWait.timeoutSeconds'] = 'nf_conntrack_tcp_timeout_time_wait is not readable';
  }
  if (raw.eventsMode === null) unavailable.eventsMode = 'nf_conntrack_events is not readable';

  // The tracked table: known once the initial dump has completed, and only while events flow.
  const tableReason = eventsOff
    ? `${EVENTS_OFF}, so entry states are not tracked`
    : raw.synced
      ? null
      : raw.dumpError
        ? `the initial table dump failed (${errnoName(raw.dumpError)}); it is retried at the next resync`
        : 'the initial table dump has not completed yet';
  if (tableReason !== null) {
    for (const field of ['timeWait.entries', 'tcpStates', 'protocols']) unavailable[field] = tableReason;
  } else {
    Object.assign(unavailable, unverifiedReasons(raw.unverified, 'timeWait.entries'));
  }
  return {
    endWallMs: raw.endWallMs,
    durationNs: raw.durationNs,
    final: raw.final,
    source: 'netlink',
    netns: ctx.netns,
    entries: raw.entries,
    max: raw.max,
    buckets: raw.buckets,
    counts,
    totals,
    events: {
      path: ctx.eventsPath,
      pathReason: ctx.eventsPathReason,
      received: raw.eventsReceived,
      lost: raw.eventsLost,
      lostTotal: raw.eventsLostTotal,
      lostSince: raw.firstLossEverWallMs === null ? null : new Date(raw.firstLossEverWallMs).toISOString(),
      newTotal: raw.totals[COUNTER_NAMES.indexOf('insert')] ?? 0,
      updateTotal: raw.eventsUpdatesTotal,
      destroyTotal: raw.totals[COUNTER_NAMES.indexOf('delete')] ?? 0,
      receiveBufferBytes: ctx.receiveBufferBytes,
      updates: raw.eventsUpdates,
      resyncs: raw.resyncs,
      lastResyncMs: raw.lastResyncMs === null ? null : round(raw.lastResyncMs),
      unverified: raw.unverified.entries,
      walks: raw.walks,
      lastWalkMs: raw.lastWalkMs === null ? null : round(raw.lastWalkMs),
      malformedTotal: raw.malformedTotal,
    },
    tracked: tableReason === null ? raw.tracked : null,
    timeWaitTimeout: raw.timeWaitTimeout,
    eventsMode: raw.eventsMode,
    socketTimeWait: raw.socketTimeWait,
    samplesMissed: raw.droppedRecords,
    unavailable,
  };
}

/**
 * Why tracked counts are unknown where tracked entries are past the deadline the kernel last
 * announced and could not be checked before the sample (each is either expired and not yet
 * reaped, or alive and refreshed by packets that send no event): `protocols` when any is,
 * `tcpStates` when a TCP one is, TIME_WAIT when one in TIME_WAIT is. `timeWaitField` names the
 * TIME_WAIT field where it is reported (a sample's `timeWait.entries`, a node row's `timeWait`).
 */
export function unverifiedReasons(unverified: RawTableCounts, timeWaitField: string): Partial<Record<string, string>> {
  const why = (n: number, what: string) =>
    `${n} tracked${what}${n === 1 ? ' entry' : ' entries'} past the deadline the kernel last announced ${n === 1 ? 'was' : 'were'} not checked in this interval (walks of the table are spaced so that they take at most 1% of a core, 0.5% for a whole node, the expired entries they reap included, which the kernel reaps meanwhile); a later interval checks them`;
  const reasons: Partial<Record<string, string>> = {};
  const tcp = unverified.protocols[PROTOCOL_NAMES.indexOf('tcp')] ?? 0;
  const timeWait = unverified.tcpStates[TCP_STATE_NAMES.indexOf('TIME_WAIT')] ?? 0;
  if (unverified.entries > 0) reasons.protocols = why(unverified.entries, '');
  if (tcp > 0) reasons.tcpStates = why(tcp, ' TCP');
  if (timeWait > 0) reasons[timeWaitField] = why(timeWait, ' TIME_WAIT');
  return reasons;
}

/**
 * The counts and totals of one native interval (a single monitor's, or one namespace's in a
 * node report), with the reason for each null, and for null entries and max.
 * `eventsUnknown`: why insert and delete cannot be known (the kernel sends no events), or null.
 * insert and delete count NEW and DESTROY events: where events were lost, some of the lost ones
 * were NEW or DESTROY (the kernel does not say which), so the interval's count is null, and the
 * total from the first loss on.
 */
export function intervalCounters(
  raw: RawInterval,
  eventsUnknown: string | null,
  receiveBufferBytes: number,
  countedBeforeQueue = false,
): { counts: CounterSet; totals: CounterSet; unavailable: Partial<Record<string, string>> } {
  // Once per interval per namespace on a node: no closure, and the failure texts only when used.
  const unavailable: Partial<Record<string, string>> = {};
  const statsFailed = () => `the conntrack statistics request failed in this interval (${errnoName(raw.statsError)})`;
  // insert and delete count NEW and DESTROY events: where events were lost, some of the lost
  // ones were NEW or DESTROY (the kernel does not say which), so the count would be short;
  // unless they were counted before the queue (countedBeforeQueue: the eBPF event path).
  const lostNow = !countedBeforeQueue && raw.eventsLost > 0 ? lostInInterval(raw, receiveBufferBytes) : null;
  const lostEver = !countedBeforeQueue && raw.eventsLostTotal > 0 ? lostSinceStart(raw) : null;
  const counts = {} as CounterSet;
  const totals = {} as CounterSet;
  for (let i = 0; i < COUNTER_NAMES.length; i++) {
    const name = COUNTER_NAMES[i]!;
    const fromEvents = name === 'insert' || name === 'delete';
    const countReason = fromEvents ? (eventsUnknown ?? lostNow) : null;
    const totalReason = fromEvents ? (eventsUnknown ?? lostEver) : null;
    counts[name] = countReason === null ? (raw.counts[i] ?? null) : null;
    totals[name] = totalReason === null ? (raw.totals[i] ?? 0) : null;
    if (totalReason !== null) unavailable[`totals.${name}`] = totalReason;
    if (counts[name] !== null) continue;
    unavailable[`counts.${name}`] =
      countReason ??
      (fromEvents
        ? 'the in-kernel event counter could not be read in this interval; the next one includes its events'
        : raw.kernelStatsOk
          ? `this kernel does not report ${kernelStatName(name)}`
          : `${statsFailed()}; the next sample includes its changes`);
    if (totals[name] === null) unavailable[`totals.${name}`] ??= unavailable[`counts.${name}`];
  }
  if (raw.entries === null) unavailable.entries = statsFailed();
  if (raw.max === null) unavailable.max = statsFailed();
  return { counts, totals, unavailable };
}

function clock(wallMs: number | null): string {
  return wallMs === null ? '?' : new Date(wallMs).toISOString().slice(11, 23);
}

function lostInInterval(raw: RawInterval, receiveBufferBytes: number): string {
  return (
    `${raw.eventsLost} events lost in this interval (from ${clock(raw.firstLossWallMs)} UTC): the event ` +
    `socket's receive buffer (${receiveBufferBytes} bytes) was full; NEW and DESTROY among them were not counted`
  );
}

function lostSinceStart(raw: RawInterval): string {
  const since = raw.firstLossEverWallMs === null ? 'start' : new Date(raw.firstLossEverWallMs).toISOString();
  return `${raw.eventsLostTotal} events lost since ${since}: NEW and DESTROY among them were not counted (events.newTotal and events.destroyTotal count those received)`;
}

export function byName<N extends TcpStateName | ProtocolName>(
  names: readonly N[],
  values: readonly number[],
): Record<N, number> {
  return Object.fromEntries(names.map((name, i) => [name, values[i] ?? 0])) as Record<N, number>;
}

function kernelStatName(name: CounterName): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Per-second rates of an interval's counts; null stays null. */
export function ratesOf(counts: CounterSet, seconds: number): CounterSet {
  const rates = {} as CounterSet;
  for (const name of COUNTER_NAMES) {
    const count = counts[name];
    rates[name] = count === null || seconds <= 0 ? null : round(count / seconds);
  }
  return rates;
}

export function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
