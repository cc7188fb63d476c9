/**
 * Table pressure as levels with hysteresis, for alerting from inside an application:
 * `critical` while packets are being dropped or fill is at or above `critical`, `warning` at or
 * above `warning`, and a level is left only once fill falls `hysteresis` below its threshold,
 * so a table hovering at a threshold does not flap.
 */
import { DEFAULT_PRESSURE } from './options.js';
import type { ConntrackSample } from './types.js';

export type PressureLevel = 'ok' | 'warning' | 'critical';

/** Fractions of nf_conntrack_max. */
export interface PressureThresholds {
  warning: number;
  critical: number;
  hysteresis: number;
}

export { DEFAULT_PRESSURE };

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
