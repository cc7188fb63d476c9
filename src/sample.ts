import { COUNTER_NAMES, type ConntrackSample, type CounterName, type CounterSet } from './types.js';
import type { RawSample } from './native.js';

export interface SampleContext {
  netns: string | null;
  receiveBufferBytes: number;
}

/** Shapes a raw native sample into the public ConntrackSample. Runs once per interval. */
export function toSample(raw: RawSample, ctx: SampleContext): ConntrackSample {
  const intervalMs = round(raw.durationNs / 1e6);
  const seconds = raw.durationNs / 1e9;
  const counts = {} as CounterSet;
  const rates = {} as CounterSet;
  const totals = {} as CounterSet;
  const unavailable: Partial<Record<string, string>> = {};
  COUNTER_NAMES.forEach((name, i) => {
    const count = raw.counts[i] ?? null;
    counts[name] = count;
    rates[name] = count === null || seconds <= 0 ? null : round(count / seconds);
    totals[name] = raw.totals[i] ?? 0;
    if (count === null) {
      unavailable[`counts.${name}`] = raw.kernelStatsOk
        ? `this kernel does not report ${kernelStatName(name)}`
        : 'the conntrack statistics request failed in this interval; the next sample includes its changes';
    }
  });
  if (raw.entries === null || raw.max === null) {
    unavailable.entries = 'the conntrack statistics request failed in this interval';
  }
  if (raw.buckets === null) {
    unavailable.buckets = '/proc/sys/net/netfilter/nf_conntrack_buckets is not readable';
  }
  return {
    time: new Date(raw.endWallMs).toISOString(),
    intervalMs,
    source: 'netlink',
    netns: ctx.netns,
    entries: raw.entries,
    max: raw.max,
    fill: raw.entries !== null && raw.max ? raw.entries / raw.max : null,
    buckets: raw.buckets,
    counts,
    rates,
    totals,
    events: {
      received: raw.eventsReceived,
      lost: raw.eventsLost,
      lostTotal: raw.eventsLostTotal,
      receiveBufferBytes: ctx.receiveBufferBytes,
    },
    final: raw.final,
    unavailable,
  };
}

function kernelStatName(name: CounterName): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
