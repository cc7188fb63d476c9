import {
  COUNTER_NAMES,
  PROTOCOL_NAMES,
  TCP_STATE_NAMES,
  type ConntrackSample,
  type CounterName,
  type CounterSet,
  type ProtocolName,
  type TcpStateName,
} from './types.js';
import type { RawInterval, RawSample } from './native.js';

export interface SampleContext {
  netns: string | null;
  receiveBufferBytes: number;
}

export const EVENTS_OFF = 'nf_conntrack_events is 0 in this namespace: the kernel sends no conntrack events';

/** Shapes a raw native sample into the public ConntrackSample. Runs once per interval. */
export function toSample(raw: RawSample, ctx: SampleContext): ConntrackSample {
  const seconds = raw.durationNs / 1e9;
  const eventsOff = raw.eventsMode === 0;
  const { counts, totals, unavailable } = intervalCounters(raw, eventsOff ? EVENTS_OFF : null);
  if (raw.socketTimeWait === null) unavailable.socketTimeWait = '/proc/net/sockstat has no TCP line';
  if (raw.buckets === null) {
    unavailable.buckets = '/proc/sys/net/netfilter/nf_conntrack_buckets is not readable';
  }

  // The tracked table: known once the initial dump has run, and only while events flow.
  const tableReason = eventsOff
    ? `${EVENTS_OFF}, so entry states are not tracked`
    : raw.synced
      ? null
      : 'the initial table dump has not completed (see the error event)';
  const tracked = tableReason === null;
  if (!tracked) {
    for (const field of ['timeWait.entries', 'timeWait.share', 'tcpStates', 'protocols']) {
      unavailable[field] = tableReason;
    }
  }
  const timeWaitEntries = tracked ? (raw.tracked.tcpStates[TCP_STATE_NAMES.indexOf('TIME_WAIT')] ?? 0) : null;
  if (raw.timeWaitTimeout === null) {
    unavailable['timeWait.timeoutSeconds'] = 'nf_conntrack_tcp_timeout_time_wait is not readable';
  }
  if (tracked && !raw.max) unavailable['timeWait.share'] = 'nf_conntrack_max is unknown';

  return {
    time: new Date(raw.endWallMs).toISOString(),
    intervalMs: round(raw.durationNs / 1e6),
    source: 'netlink',
    netns: ctx.netns,
    entries: raw.entries,
    max: raw.max,
    fill: raw.entries !== null && raw.max ? raw.entries / raw.max : null,
    buckets: raw.buckets,
    counts,
    rates: ratesOf(counts, seconds),
    totals,
    events: {
      received: raw.eventsReceived,
      lost: raw.eventsLost,
      lostTotal: raw.eventsLostTotal,
      receiveBufferBytes: ctx.receiveBufferBytes,
      updates: raw.eventsUpdates,
      resyncs: raw.resyncs,
      lastResyncMs: raw.lastResyncMs === null ? null : round(raw.lastResyncMs),
    },
    socketTimeWait: raw.socketTimeWait,
    timeWait: {
      entries: timeWaitEntries,
      timeoutSeconds: raw.timeWaitTimeout,
      share: timeWaitEntries !== null && raw.max ? timeWaitEntries / raw.max : null,
    },
    tcpStates: tracked ? byName(TCP_STATE_NAMES, raw.tracked.tcpStates) : null,
    protocols: tracked ? byName(PROTOCOL_NAMES, raw.tracked.protocols) : null,
    eventsMode: raw.eventsMode === 0 || raw.eventsMode === 1 || raw.eventsMode === 2 ? raw.eventsMode : null,
    final: raw.final,
    unavailable,
  };
}

/**
 * The counts and totals of one native interval, with a reason for each null count.
 * `eventsUnknown`: why insert and delete cannot be known (no events are sent), or null.
 */
export function intervalCounters(
  raw: RawInterval,
  eventsUnknown: string | null,
): { counts: CounterSet; totals: CounterSet; unavailable: Partial<Record<string, string>> } {
  const unavailable: Partial<Record<string, string>> = {};
  const counts = {} as CounterSet;
  const totals = {} as CounterSet;
  COUNTER_NAMES.forEach((name, i) => {
    const fromEvents = name === 'insert' || name === 'delete';
    const unknown = fromEvents && eventsUnknown !== null;
    const count = unknown ? null : (raw.counts[i] ?? null);
    counts[name] = count;
    totals[name] = unknown ? null : (raw.totals[i] ?? 0);
    if (count !== null) return;
    unavailable[`counts.${name}`] = unknown
      ? eventsUnknown
      : fromEvents
        ? 'the in-kernel event counter could not be read in this interval; the next one includes its events'
        : raw.kernelStatsOk
          ? `this kernel does not report ${kernelStatName(name)}`
          : 'the conntrack statistics request failed in this interval; the next sample includes its changes';
  });
  if (raw.entries === null || raw.max === null) {
    unavailable.entries = 'the conntrack statistics request failed in this interval';
  }
  return { counts, totals, unavailable };
}

function byName<N extends TcpStateName | ProtocolName>(names: readonly N[], values: number[]): Record<N, number> {
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
