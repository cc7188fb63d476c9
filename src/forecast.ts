/**
 * When will the table be full? The net growth of `entries` over a recent window, projected to
 * `max`. Pure: samples in, a forecast out; the clock is the samples' own monotonic interval
 * lengths, so a wall-clock step cannot bend the line.
 *
 * The growth is the least-squares slope of entries over the samples of the last
 * FORECAST_WINDOW_MS (60 s), which needs at least FORECAST_MIN_SAMPLES (5) samples spanning at
 * least FORECAST_MIN_SPAN_MS (5 s). Then, when the slope is positive,
 * `timeToFullSeconds = (max - entries) / slope`, entries being the latest sample's; 0 once the
 * table is full; otherwise null with the reason.
 */
import type { ConntrackSample } from './types.js';

export const FORECAST_WINDOW_MS = 60_000;
export const FORECAST_MIN_SAMPLES = 5;
export const FORECAST_MIN_SPAN_MS = 5_000;

/** A sample's entries at a point of the monitor's own clock (milliseconds). */
export interface FillPoint {
  atMs: number;
  entries: number;
}

export interface Forecast {
  /** Seconds until entries reach max at the observed growth, or null (see `reason`). */
  seconds: number | null;
  /** Net growth over the window, entries per second (null with fewer than 2 samples). */
  growthPerSecond: number | null;
  /** Why `seconds` is null; null when it is known. */
  reason: string | null;
}

/** The forecast from the points of one window (oldest first) and the latest sample's max. */
export function forecastTimeToFull(points: readonly FillPoint[], max: number | null): Forecast {
  const last = points.at(-1);
  if (!last || max === null || max <= 0) {
    return { seconds: null, growthPerSecond: null, reason: 'the table fill (entries, max) is unknown' };
  }
  const spanMs = last.atMs - points[0]!.atMs;
  const growth = points.length >= 2 ? slopePerSecond(points) : null;
  if (last.entries >= max) return { seconds: 0, growthPerSecond: growth, reason: null };
  if (points.length < FORECAST_MIN_SAMPLES || spanMs < FORECAST_MIN_SPAN_MS) {
    return {
      seconds: null,
      growthPerSecond: growth,
      reason:
        spanMs < FORECAST_MIN_SPAN_MS
          ? `a trend needs ${FORECAST_MIN_SPAN_MS / 1000} s of samples; ${(Math.floor(spanMs / 100) / 10).toFixed(1)} s so far`
          : `a trend needs ${FORECAST_MIN_SAMPLES} samples; ${points.length} so far`,
    };
  }
  if (growth === null || !(growth > 0)) {
    return {
      seconds: null,
      growthPerSecond: growth,
      reason: `the table is not growing (net ${round(growth ?? 0)} entries/s over the last ${Math.round(spanMs / 1000)} s)`,
    };
  }
  return { seconds: round((max - last.entries) / growth), growthPerSecond: round(growth), reason: null };
}

/** Least-squares slope of entries over time, per second. */
function slopePerSecond(points: readonly FillPoint[]): number | null {
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.atMs, 0) / n;
  const my = points.reduce((a, p) => a + p.entries, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.atMs - mx) * (p.entries - my);
    den += (p.atMs - mx) ** 2;
  }
  return den === 0 ? null : (num / den) * 1000;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

/**
 * The window of one monitor: add() each sample in order and get its forecast. Time advances
 * by each sample's `intervalMs` (measured on a monotonic clock by the backend).
 */
export class FillHistory {
  private readonly points: FillPoint[] = [];
  private clockMs = 0;

  add(sample: Pick<ConntrackSample, 'intervalMs' | 'entries' | 'max'>): Forecast {
    this.clockMs += sample.intervalMs;
    if (sample.entries !== null) this.points.push({ atMs: this.clockMs, entries: sample.entries });
    while (this.points.length && this.points[0]!.atMs < this.clockMs - FORECAST_WINDOW_MS) this.points.shift();
    if (sample.entries === null) {
      return { seconds: null, growthPerSecond: null, reason: 'the table fill (entries, max) is unknown' };
    }
    return forecastTimeToFull(this.points, sample.max);
  }
}
