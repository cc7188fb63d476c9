/**
 * The samples a report keeps of a run to draw and to advise from, at most `limit` of them
 * whatever the run's length: when they reach the limit, each two neighbours become one sample
 * of both intervals, and from then on as many new samples make one point. A week of 1 s
 * samples is drawn from a few thousand points (a chart is about a thousand pixels wide) and
 * held in a few megabytes; the run's summary is computed from every sample (SummaryBuilder),
 * never from these.
 *
 * A merged sample covers both intervals (from the first one's start to the second one's end),
 * so that nothing is lost from the picture:
 * - counts are summed (a null counter is one a failed stats request left to the next interval;
 *   insert and delete are null when either is, as the summary's totals have it), and rates are
 *   the counts over the merged interval;
 * - levels are the peaks: entries, fill and TIME_WAIT the larger of the two, and the states and
 *   protocols those of the sample with more entries (the busier moment);
 * - lost events and missed samples are summed; totals, time and `final` are the later one's.
 */
import { COUNTER_NAMES, type ConntrackSample } from '../types.js';

export class Decimator {
  /** Points this decimator made (merged copies): merged into in place, not copied again. */
  private readonly owned = new WeakSet<ConntrackSample>();
  /** Points of `perPoint` samples each, and the one still filling (fewer). */
  private readonly points: ConntrackSample[] = [];
  private pending: ConntrackSample | null = null;
  private pendingCount = 0;
  /** Samples per point: 1, then doubled at each merge. */
  private perPoint = 1;

  /** `limit`: the most whole points kept (at least 2), plus the one filling. */
  constructor(private limit: number) {
    this.limit = Math.max(2, limit);
  }

  add(sample: ConntrackSample): void {
    this.fill(sample, 1);
  }

  /** Lowers the limit (a run among more runs than there were); merges down to it at once. */
  setLimit(limit: number): void {
    this.limit = Math.max(2, limit);
    while (this.points.length >= this.limit) this.halve();
  }

  /** The points, oldest first. */
  result(): ConntrackSample[] {
    return this.pending ? [...this.points, this.pending] : [...this.points];
  }

  /** Adds `count` samples' worth (one sample, or a whole point) to the point filling. */
  private fill(sample: ConntrackSample, count: number): void {
    this.pending = this.pending ? this.combine(this.pending, sample) : sample;
    this.pendingCount += count;
    if (this.pendingCount < this.perPoint) return;
    this.points.push(this.pending);
    this.pending = null;
    this.pendingCount = 0;
    while (this.points.length >= this.limit) this.halve();
  }

  /** `a` merged with the later `b`: into `a` itself when it is a merged copy of ours. */
  private combine(a: ConntrackSample, b: ConntrackSample): ConntrackSample {
    if (this.owned.has(a)) {
      absorb(a, b);
      return a;
    }
    const merged = merge(a, b);
    this.owned.add(merged);
    return merged;
  }

  /** Each two neighbouring points become one; an odd last one starts the next point. */
  private halve(): void {
    const odd = this.points.length % 2 === 1 ? this.points.pop()! : null;
    for (let i = 0; i < this.points.length / 2; i++)
      this.points[i] = merge(this.points[2 * i]!, this.points[2 * i + 1]!);
    this.points.length /= 2;
    this.perPoint *= 2;
    const pending = this.pending;
    const pendingCount = this.pendingCount;
    this.pending = null;
    this.pendingCount = 0;
    if (odd) this.fill(odd, this.perPoint / 2);
    if (pending) this.fill(pending, pendingCount);
  }
}

/** One sample standing for `a` and the later `b` (see the module comment). */
export function merge(a: ConntrackSample, b: ConntrackSample): ConntrackSample {
  const out = copy(a);
  absorb(out, b);
  return out;
}

/** A copy of `s` whose parts absorb() changes are its own. */
function copy(s: ConntrackSample): ConntrackSample {
  return {
    ...s,
    counts: { ...s.counts },
    rates: { ...s.rates },
    events: s.events && { ...s.events },
    timeWait: { ...s.timeWait },
  };
}

/** Makes `a` (a copy the caller owns) stand for itself and the later `b`. */
function absorb(a: ConntrackSample, b: ConntrackSample): void {
  const larger = (x: number | null, y: number | null) => (x === null ? y : y === null ? x : Math.max(x, y));
  if ((b.entries ?? -1) >= (a.entries ?? -1)) {
    a.entries = b.entries;
    a.max = b.max;
    a.tcpStates = b.tcpStates;
    a.protocols = b.protocols;
  }
  a.fill = larger(a.fill, b.fill);
  a.intervalMs += b.intervalMs;
  for (const c of COUNTER_NAMES) {
    const x = a.counts[c];
    const y = b.counts[c];
    const strict = c === 'insert' || c === 'delete';
    a.counts[c] = x === null && y === null ? null : strict && (x === null || y === null) ? null : (x ?? 0) + (y ?? 0);
    a.rates[c] = a.counts[c] === null || a.intervalMs <= 0 ? null : a.counts[c]! / (a.intervalMs / 1000);
  }
  const events = a.events;
  a.events = b.events && { ...b.events };
  if (events && a.events) {
    a.events.received += events.received;
    a.events.updates += events.updates;
    a.events.lost += events.lost;
  }
  a.timeWait = {
    ...b.timeWait,
    entries: larger(a.timeWait.entries, b.timeWait.entries),
    share: larger(a.timeWait.share, b.timeWait.share),
  };
  a.samplesMissed += b.samplesMissed;
  // The rest is the later one's: its time, totals, `final` and reasons.
  for (const key of [
    'time',
    'source',
    'netns',
    'buckets',
    'totals',
    'socketTimeWait',
    'timeToFullSeconds',
    'eventsMode',
    'final',
    'unavailable',
  ] as const) {
    (a as unknown as Record<string, unknown>)[key] = b[key];
  }
}
