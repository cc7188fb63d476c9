import { describe, expect, it } from 'vitest';
import { resolvePressure } from '../dist/options.js';
import { PressureTracker } from '../dist/pressure.js';
import { sample } from './helpers/sample';

const fill = (entries: number, drop = 0) => sample({ entries, max: 1000, counts: { drop } });

describe('pressure levels', () => {
  it('rises through warning to critical and reports each change once', () => {
    const t = new PressureTracker();
    expect(t.update(fill(500))).toBeNull();
    expect(t.update(fill(760))).toMatchObject({ level: 'warning', previous: 'ok', fill: 0.76 });
    expect(t.update(fill(800))).toBeNull();
    expect(t.update(fill(900))).toMatchObject({ level: 'critical', previous: 'warning' });
  });

  it('is critical on any drop, whatever the fill', () => {
    const e = new PressureTracker().update(fill(100, 3));
    expect(e).toMatchObject({ level: 'critical', drops: 3 });
    expect(e!.reason).toMatch(/3 packets dropped/);
  });

  it('does not flap around a threshold (hysteresis)', () => {
    const t = new PressureTracker({ warning: 0.75, critical: 0.9, hysteresis: 0.05 });
    t.update(fill(760));
    expect(t.update(fill(740))).toBeNull(); // 74% is within 5 points of 75%
    expect(t.update(fill(710))).toBeNull();
    expect(t.update(fill(690))).toMatchObject({ level: 'ok', previous: 'warning' });
    t.update(fill(950));
    expect(t.update(fill(860))).toBeNull();
    expect(t.update(fill(840))).toMatchObject({ level: 'warning', previous: 'critical' });
  });

  it('validates thresholds', () => {
    expect(() => resolvePressure({ warning: 0.9, critical: 0.8 })).toThrow(/must be below pressure.critical/);
    expect(() => resolvePressure({ warning: 75 })).toThrow(/fraction of nf_conntrack_max from 0 to 1, got 75/);
    expect(() => resolvePressure({ warn: 0.5 })).toThrow(/pressure has an unknown option "warn"/);
    // A hysteresis as large as the warning level would make the warning level impossible to leave.
    expect(() => resolvePressure({ warning: 0.5, critical: 0.6, hysteresis: 0.6 })).toThrow(
      /pressure.hysteresis \(0.6\) must be below pressure.warning \(0.5\)/,
    );
  });
});
