/**
 * Table pressure as levels with hysteresis, for alerting from inside an application:
 * `critical` while packets are being dropped or fill is at or above `critical`, `warning` at or
 * above `warning`, and a level is left only once fill falls `hysteresis` below its threshold,
 * so a table hovering at a threshold does not flap.
 */
import type { ConntrackSample } from './types.js';

export type PressureLevel = 'ok' | 'warning' | 'critical';

/** Fractions of nf_conntrack_max. */
export interface PressureThresholds {
  warning: number;
  critical: number;
  hysteresis: number;
}

export const DEFAULT_PRESSURE: PressureThresholds = { warning: 0.75, critical: 0.9, hysteresis: 0.05 };

export interface PressureEvent {
  level: PressureLevel;
  previous: PressureLevel;
  /** entries / max of the sample that changed the level. */
  fill: number;
  /** Packets dropped for lack of an entry in that sample's interval (null if unknown). */
  drops: number | null;
  /** One line for a human: why this level. */
  reason: string;
  sample: ConntrackSample;
}

export class PressureTracker {
  private level: PressureLevel = 'ok';

  constructor(private readonly t: PressureThresholds = DEFAULT_PRESSURE) {}

  /** The level after the latest sample. */
  get current(): PressureLevel {
    return this.level;
  }

  /** The level change this sample causes, or null when the level stays. */
  update(sample: ConntrackSample): PressureEvent | null {
    if (sample.fill === null) return null;
    const next = this.levelFor(sample.fill, sample.counts.drop ?? 0);
    if (next === this.level) return null;
    const event: PressureEvent = {
      level: next,
      previous: this.level,
      fill: sample.fill,
      drops: sample.counts.drop,
      reason: reasonFor(next, sample, this.t),
      sample,
    };
    this.level = next;
    return event;
  }

  private levelFor(fill: number, drops: number): PressureLevel {
    const { warning, critical, hysteresis } = this.t;
    if (drops > 0 || fill >= critical) return 'critical';
    if (this.level === 'critical' && fill >= critical - hysteresis) return 'critical';
    if (fill >= warning) return 'warning';
    if (this.level !== 'ok' && fill >= warning - hysteresis) return 'warning';
    return 'ok';
  }
}

function reasonFor(level: PressureLevel, s: ConntrackSample, t: PressureThresholds): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const table = `${s.entries}/${s.max} entries (${pct(s.fill!)})`;
  if ((s.counts.drop ?? 0) > 0)
    return `${s.counts.drop} packets dropped in ${Math.round(s.intervalMs)} ms: table full; ${table}`;
  if (level === 'critical') return `${table}, at or above ${pct(t.critical)}`;
  if (level === 'warning') return `${table}, at or above ${pct(t.warning)}`;
  return `${table}, below ${pct(t.warning - t.hysteresis)}`;
}

/** Validates user thresholds (fractions, warning < critical); throws a TypeError naming the fault. */
export function resolvePressure(value: unknown): PressureThresholds {
  if (value === undefined) return DEFAULT_PRESSURE;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError('pressure must be an object { warning, critical, hysteresis }');
  }
  const v = value as Partial<Record<string, unknown>>;
  for (const key of Object.keys(v)) {
    if (!(key in DEFAULT_PRESSURE)) throw new TypeError(`unknown pressure option '${key}'`);
  }
  const out = { ...DEFAULT_PRESSURE, ...(v as Partial<PressureThresholds>) };
  for (const key of ['warning', 'critical', 'hysteresis'] as const) {
    const x = out[key];
    if (typeof x !== 'number' || !(x >= 0 && x <= 1)) {
      throw new TypeError(`pressure.${key} must be a fraction of nf_conntrack_max from 0 to 1, got ${String(x)}`);
    }
  }
  if (out.warning >= out.critical) {
    throw new TypeError(`pressure.warning (${out.warning}) must be below pressure.critical (${out.critical})`);
  }
  return out;
}
