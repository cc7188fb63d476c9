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
  const unavailable: Partial<Record<string, string>> = {};
  const first = samples[0];
  const last = samples.at(-1);
  const startMs = first ? Date.parse(first.time) - first.intervalMs : null;
  /** The samples' own reason for a null field, else a generic one. */
  const why = (field: string, what: string) =>
    samples.length === 0
      ? 'the recording has no samples'
      : (samples.map((s) => s.unavailable[field]).find((r) => r !== undefined) ?? `no sample knows ${what}`);
  const peakOf = (path: string, field: string, values: (number | null)[]) => {
    const known = values.filter((v): v is number => v !== null);
    if (known.length) return largest(known);
    unavailable[path] = why(field, field);
    return null;
  };

  // Each rate's known values, sorted once for its peak and both percentiles.
  const rateSamples = forRates(samples);
  const sortedRates = new Map<keyof RateStats, number[]>();
  for (const [key, counter] of Object.entries(RATES) as [keyof RateStats, CounterName][]) {
    const known = rateSamples.map((s) => s.rates[counter]).filter((v): v is number => v !== null);
    sortedRates.set(
      key,
      known.sort((a, b) => a - b),
    );
  }
  const rateStats = (path: 'peak' | 'p50' | 'p99'): RateStats => {
    const out = {} as RateStats;
    for (const [key, counter] of Object.entries(RATES) as [keyof RateStats, CounterName][]) {
      const sorted = sortedRates.get(key)!;
      if (!sorted.length) {
        out[key] = null;
        unavailable[`${path}.${key}`] = why(`counts.${counter}`, counter);
      } else out[key] = path === 'peak' ? sorted.at(-1)! : nearestRank(sorted, path === 'p50' ? 50 : 99);
    }
    return out;
  };

  const totals = {} as RunSummary['totals'];
  for (const counter of TOTALS) {
    const counts = samples.map((s) => s.counts[counter]);
    const known = counts.filter((v): v is number => v !== null);
    // A kernel counter missing from one interval (a failed stats request) comes with the next
    // one, so the known ones add up; insert and delete missing from an interval with lost
    // events never come: their sum would be short, so there is none.
    const short = (counter === 'insert' || counter === 'delete') && known.length < counts.length;
    totals[counter] = known.length && !short ? known.reduce((a, b) => a + b, 0) : null;
    if (totals[counter] === null) unavailable[`totals.${counter}`] = why(`counts.${counter}`, counter);
  }

  const withEvents = samples.filter((s) => s.events !== null);
  const eventsLost = withEvents.length ? withEvents.reduce((sum, s) => sum + s.events!.lost, 0) : null;
  if (eventsLost === null) unavailable.eventsLost = why('events', 'events');

  const firstDrop = samples.find((s) => (s.counts.drop ?? 0) > 0);
  if (totals.drop === null) unavailable.firstDropAt = unavailable['totals.drop'];

  const sources = new Set(samples.map((s) => s.source));
  return {
    start: startMs === null ? null : new Date(startMs).toISOString(),
    end: last ? last.time : null,
    durationSeconds: round(samples.reduce((sum, s) => sum + s.intervalMs, 0) / 1000),
    samples: samples.length,
    source: sources.size === 0 ? null : sources.size === 1 ? first!.source : 'mixed',
    netns: first ? first.netns : null,
    max: [...samples].reverse().find((s) => s.max !== null)?.max ?? null,
    peak: {
      entries: peakOf(
        'peak.entries',
        'entries',
        samples.map((s) => s.entries),
      ),
      fill: peakOf(
        'peak.fill',
        'fill',
        samples.map((s) => s.fill),
      ),
      ...rateStats('peak'),
      timeWait: peakOf(
        'peak.timeWait',
        'timeWait.entries',
        samples.map((s) => s.timeWait.entries),
      ),
      timeWaitShare: peakOf(
        'peak.timeWaitShare',
        'timeWait.share',
        samples.map((s) => s.timeWait.share),
      ),
    },
    p50: rateStats('p50'),
    p99: rateStats('p99'),
    totals,
    eventsLost,
    firstDropAt: firstDrop ? firstDrop.time : null,
    firstDropSeconds: firstDrop && startMs !== null ? round((Date.parse(firstDrop.time) - startMs) / 1000) : null,
    unavailable,
  };
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

function nearestRank(sorted: readonly number[], p: number): number {
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
