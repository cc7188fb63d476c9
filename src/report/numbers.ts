/** How the report writes numbers, times and durations (text, HTML and chart axes alike). */

/** 1234567 -> "1,234,567"; fractions keep up to `digits` decimals. */
export function count(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits });
}

/** A per-second rate: whole numbers from 100 up, one decimal below, two below 1. */
export function rate(n: number): string {
  return count(n, n >= 100 ? 0 : n >= 1 ? 1 : 2);
}

/** 0.4567 -> "45.7%". */
export function percent(fraction: number, digits = 1): string {
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** Axis ticks: "8,192", "250k", "1.5M", "0.25". */
export function compact(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e6) return `${count(n / 1e6, 2)}M`;
  if (abs >= 1e4) return `${count(n / 1e3, 1)}k`;
  return count(n, 2);
}

/** Seconds as "42.0 s", "3 min 05 s", "1 h 02 min". */
export function duration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** An offset into a run, for axes and markers: "+12.3 s", or "+1:05" from a minute on. */
export function offset(seconds: number, digits = 1): string {
  if (seconds < 60) return `+${count(seconds, digits)} s`;
  return `+${clock(seconds)}`;
}

/** 65 -> "1:05", 3725 -> "1:02:05". */
export function clock(seconds: number): string {
  const s = Math.round(seconds);
  const mm = String(Math.floor((s % 3600) / 60));
  const ss = String(s % 60).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm.padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** ISO time as "2026-11-29 19:40:12 UTC". */
export function utc(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}
