/**
 * summarize(samples): what a recording says about the table, as numbers: duration, peaks,
 * percentiles of the per-interval rates, totals, TIME_WAIT, lost events and the first drop.
 * Pure (samples in, summary out); `report`, `record` and the HTML page all use it.
 *
 * Definitions:
 * - peaks are the largest value any sample shows; `fill`, `timeWait` and `timeWaitShare` are
 *   each their own peak (nf_conntrack_max may change during a run);
 * - rate statistics (peak, p50, p99) are over the intervals' own rates (`sample.rates`), leaving
 *   out a closing partial interval shorter than half the usual one: a few milliseconds turn one
 *   event into hundreds per second. Its counts are in the totals all the same;
 * - pN is the nearest-rank percentile: the smallest rate at least N% of the intervals do not
 *   exceed (p99 of fewer than 100 intervals is the peak);
 * - totals are the sums of the intervals' counts (an interval whose statistics request failed
 *   has null counts; the next one includes its changes);
 * - firstDropAt is the end of the first interval that counted a drop: the drop happened within
 *   that interval. It is null when nothing was dropped, or, with a reason, when drops are
 *   unknown.
 * What the recording cannot know is null, with the reason in `unavailable`, never 0.
 */
import type { ConntrackSample, CounterName } from '../types.js';

export interface RateStats {
  insertRate: number | null;
  deleteRate: number | null;
  dropRate: number | null;
}

export interface RunSummary {
  /** Start of the first interval and end of the last one (ISO 8601); null without samples. */
  start: string | null;
  end: string | null;
  /** Seconds covered by the samples (the sum of their intervals). */
  durationSeconds: number;
  samples: number;
  /** The backend of the samples, or 'mixed'. */
  source: 'netlink' | 'proc' | 'mixed' | null;
  netns: string | null;
  /** nf_conntrack_max at the end of the run. */
  max: number | null;
  peak: RateStats & {
    entries: number | null;
    fill: number | null;
    /** TIME_WAIT entries, and their share of nf_conntrack_max (each its own peak). */
    timeWait: number | null;
    timeWaitShare: number | null;
  };
  p50: RateStats;
  p99: RateStats;
  totals: {
    insert: number | null;
    delete: number | null;
    drop: number | null;
    earlyDrop: number | null;
    insertFailed: number | null;
  };
  /** Events the kernel could not queue for the monitor; null on /proc, which reads none. */
  eventsLost: number | null;
  /** End of the first interval with a drop (ISO 8601), and seconds since the start. */
  firstDropAt: string | null;
  firstDropSeconds: number | null;
  /** For each null above (by its path, e.g. `peak.insertRate`), why it is unknown. */
  unavailable: Partial<Record<string, string>>;
}

const RATES = { insertRate: 'insert', deleteRate: 'delete', dropRate: 'drop' } as const;
const TOTALS = ['insert', 'delete', 'drop', 'earlyDrop', 'insertFailed'] as const;

export function summarize(samples: readonly ConntrackSample[]): RunSummary {
  const builder = new SummaryBuilder();
  for (const s of samples) builder.add(s);
  return builder.result();
}

type Peak = 'entries' | 'fill' | 'timeWait' | 'timeWaitShare';
const PEAKS: Record<Peak, { field: string; value: (s: ConntrackSample) => number | null }> = {
  entries: { field: 'entries', value: (s) => s.entries },
  fill: { field: 'fill', value: (s) => s.fill },
  timeWait: { field: 'timeWait.entries', value: (s) => s.timeWait.entries },
  timeWaitShare: { field: 'timeWait.share', value: (s) => s.timeWait.share },
};
/** The fields whose reason a summary may quote: the first sample's reason for each is kept. */
const REASONS = [...Object.values(PEAKS).map((p) => p.field), ...TOTALS.map((c) => `counts.${c}`), 'events'];

/**
 * summarize() one sample at a time, in memory that does not grow with the samples' size:
 * a reader can summarize a recording of any length as it streams by. What it keeps per
 * sample is the few numbers percentiles need (RateValues); the rest are running sums, peaks
 * and the first of each.
 */
export class SummaryBuilder {
  private samples = 0;
  private startMs: number | null = null;
  private first: Pick<ConntrackSample, 'source' | 'netns'> | null = null;
  private lastTime: string | null = null;
  private durationMs = 0;
  private readonly sources = new Set<ConntrackSample['source']>();
  private max: number | null = null;
  private readonly peaks: Record<Peak, number | null> = {
    entries: null,
    fill: null,
    timeWait: null,
    timeWaitShare: null,
  };
  private readonly reasons = new Map<string, string>();
  /** Rates of the full intervals, and the full intervals' lengths (for the median forRates uses). */
  private readonly rates = { insertRate: new RateValues(), deleteRate: new RateValues(), dropRate: new RateValues() };
  private readonly intervals = new RateValues();
  /** Closing partial intervals (few): their length and rates, counted in or not once the median is known. */
  private readonly closing: { intervalMs: number; rates: Record<keyof RateStats, number> }[] = [];
  private readonly totals = Object.fromEntries(TOTALS.map((c) => [c, { sum: 0, known: 0 }])) as Record<
    (typeof TOTALS)[number],
    { sum: number; known: number }
  >;
  private eventsLost: number | null = null;
  private firstDrop: string | null = null;

  add(s: ConntrackSample): void {
    if (this.samples++ === 0) {
      this.startMs = Date.parse(s.time) - s.intervalMs;
      this.first = { source: s.source, netns: s.netns };
    }
    this.lastTime = s.time;
    this.durationMs += s.intervalMs;
    this.sources.add(s.source);
    if (s.max !== null) this.max = s.max;
    for (const [peak, { value }] of Object.entries(PEAKS) as [Peak, (typeof PEAKS)[Peak]][]) {
      const v = value(s);
      if (v !== null && (this.peaks[peak] === null || v > this.peaks[peak]!)) this.peaks[peak] = v;
    }
    for (const field of REASONS) {
      const why = s.unavailable[field];
      if (why !== undefined && !this.reasons.has(field)) this.reasons.set(field, why);
    }
    const rates = {} as Record<keyof RateStats, number>;
    for (const [key, counter] of Object.entries(RATES) as [keyof RateStats, CounterName][]) {
      rates[key] = s.rates[counter] ?? NaN;
    }
    if (s.final) this.closing.push({ intervalMs: s.intervalMs, rates });
    else {
      for (const key of Object.keys(RATES) as (keyof RateStats)[]) this.rates[key].push(rates[key]);
      this.intervals.push(s.intervalMs);
    }
    for (const counter of TOTALS) {
      const v = s.counts[counter];
      if (v !== null) {
        this.totals[counter].sum += v;
        this.totals[counter].known++;
      }
    }
    if (s.events !== null) this.eventsLost = (this.eventsLost ?? 0) + s.events.lost;
    if (this.firstDrop === null && (s.counts.drop ?? 0) > 0) this.firstDrop = s.time;
  }

  result(): RunSummary {
    const unavailable: Partial<Record<string, string>> = {};
    /** The samples' own reason for a null field, else a generic one. */
    const why = (field: string, what: string) =>
      this.samples === 0 ? 'the recording has no samples' : (this.reasons.get(field) ?? `no sample knows ${what}`);

    const totals = {} as RunSummary['totals'];
    for (const counter of TOTALS) {
      const { sum, known } = this.totals[counter];
      // A kernel counter missing from one interval (a failed stats request) comes with the next
      // one, so the known ones add up; insert and delete missing from an interval with lost
      // events never come: their sum would be short, so there is none.
      const short = (counter === 'insert' || counter === 'delete') && known < this.samples;
      totals[counter] = known && !short ? sum : null;
      if (totals[counter] === null) unavailable[`totals.${counter}`] = why(`counts.${counter}`, counter);
    }
    if (this.eventsLost === null) unavailable.eventsLost = why('events', 'events');
    if (totals.drop === null) unavailable.firstDropAt = unavailable['totals.drop'];

    const peakOf = (peak: Peak) => {
      if (this.peaks[peak] === null) unavailable[`peak.${peak}`] = why(PEAKS[peak].field, PEAKS[peak].field);
      return this.peaks[peak];
    };
    // Each rate's known values, sorted once for its peak and both percentiles.
    const sorted = this.sortedRates();
    const rateStats = (path: 'peak' | 'p50' | 'p99'): RateStats => {
      const out = {} as RateStats;
      for (const [key, counter] of Object.entries(RATES) as [keyof RateStats, CounterName][]) {
        const values = sorted[key];
        if (!values.length) {
          out[key] = null;
          unavailable[`${path}.${key}`] = why(`counts.${counter}`, counter);
        } else out[key] = path === 'peak' ? values[values.length - 1]! : nearestRank(values, path === 'p50' ? 50 : 99);
      }
      return out;
    };
    const first = this.first;
    return {
      start: this.startMs === null ? null : new Date(this.startMs).toISOString(),
      end: this.lastTime,
      durationSeconds: round(this.durationMs / 1000),
      samples: this.samples,
      source: this.sources.size === 0 ? null : this.sources.size === 1 ? first!.source : 'mixed',
      netns: first ? first.netns : null,
      max: this.max,
      peak: {
        entries: peakOf('entries'),
        fill: peakOf('fill'),
        ...rateStats('peak'),
        timeWait: peakOf('timeWait'),
        timeWaitShare: peakOf('timeWaitShare'),
      },
      p50: rateStats('p50'),
      p99: rateStats('p99'),
      totals,
      eventsLost: this.eventsLost,
      firstDropAt: this.firstDrop,
      firstDropSeconds:
        this.firstDrop !== null && this.startMs !== null
          ? round((Date.parse(this.firstDrop) - this.startMs) / 1000)
          : null,
      unavailable,
    };
  }

  /**
   * The known rates of the intervals forRates() counts, each sorted: the full intervals', and
   * closing ones no shorter than half the median full interval (all, when none is full).
   */
  private sortedRates(): Record<keyof RateStats, Float64Array> {
    const full = this.intervals.sorted();
    const median = full.length ? full[Math.floor(full.length / 2)]! : null;
    const counted = this.closing.filter((c) => median === null || c.intervalMs >= median / 2);
    const out = {} as Record<keyof RateStats, Float64Array>;
    for (const key of Object.keys(RATES) as (keyof RateStats)[]) {
      out[key] = this.rates[key].sorted(counted.map((c) => c.rates[key]));
    }
    return out;
  }
}

/**
 * The values of one rate (or interval length) over a run, for sorting once at the end: as
 * counts of each distinct value while there are few (a run's intervals are nearly all the same
 * length, and most of its drop rates are 0), else in chunks that double up to 64 Ki values, so
 * that a long run grows without copying one large array and a short run (one of thousands of
 * namespaces) takes little. NaN stands for unknown and is not kept.
 */
class RateValues {
  private static readonly DISTINCT = 256;
  private counts: Map<number, number> | null = new Map();
  private readonly chunks: Float64Array[] = [];
  private used = 0; // of the last chunk

  push(v: number): void {
    if (Number.isNaN(v)) return;
    if (this.counts) {
      this.counts.set(v, (this.counts.get(v) ?? 0) + 1);
      if (this.counts.size <= RateValues.DISTINCT) return;
      const counts = this.counts;
      this.counts = null;
      for (const [value, n] of counts) for (let i = 0; i < n; i++) this.push(value);
      return;
    }
    let last = this.chunks.at(-1);
    if (!last || this.used === last.length) {
      this.chunks.push((last = new Float64Array(Math.min(1 << 16, (last?.length ?? 512) * 2))));
      this.used = 0;
    }
    last[this.used++] = v;
  }

  /** The values and `extra` (the known ones), sorted, in one array of their size. */
  sorted(extra: readonly number[] = []): Float64Array {
    const known = extra.filter((v) => !Number.isNaN(v));
    const filled = (c: number) => (c === this.chunks.length - 1 ? this.used : this.chunks[c]!.length);
    let size = known.length;
    this.chunks.forEach((_, c) => (size += filled(c)));
    for (const n of this.counts?.values() ?? []) size += n;
    const out = new Float64Array(size);
    let i = 0;
    for (const [value, n] of this.counts ?? []) out.fill(value, i, (i += n));
    this.chunks.forEach((chunk, c) => {
      out.set(chunk.subarray(0, filled(c)), i);
      i += filled(c);
    });
    out.set(known, i);
    return out.sort();
  }
}

/**
 * The samples whose rates count: all but a closing partial interval shorter than half the
 * median of the others (unless there is nothing else).
 */
export function forRates(samples: readonly ConntrackSample[]): readonly ConntrackSample[] {
  const full = samples.filter((s) => !s.final);
  if (full.length === 0) return samples;
  const sorted = full.map((s) => s.intervalMs).sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return samples.filter((s) => !s.final || s.intervalMs >= median / 2);
}

/** Nearest-rank percentile of a non-empty list: the value at rank ceil(p/100 * n). */
export function percentile(values: readonly number[], p: number): number {
  return nearestRank(
    [...values].sort((a, b) => a - b),
    p,
  );
}

function nearestRank(sorted: ArrayLike<number>, p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Math.max without spreading (a week of 1 s samples is more arguments than a call takes). */
export function largest(values: readonly number[]): number {
  let max = -Infinity;
  for (const v of values) if (v > max) max = v;
  return max;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
