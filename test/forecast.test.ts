/** The time-to-full forecast (src/forecast.ts), pure, on synthetic series. */
import { describe, expect, it } from 'vitest';
import { FillHistory, forecastTimeToFull } from '../dist/forecast.js';

/** Feeds `n` samples of `intervalMs` with entries(i) into a fresh history; returns the forecasts. */
function feed(n: number, intervalMs: number, entries: (i: number) => number | null, max: number | null = 10_000) {
  const h = new FillHistory();
  return Array.from({ length: n }, (_, i) => h.add({ intervalMs, entries: entries(i), max }));
}

describe('time to full', () => {
  it('projects a steady growth to max: (max - entries) / growth', () => {
    const out = feed(30, 1000, (i) => 1000 + 50 * i).at(-1)!;
    expect(out).toEqual({ seconds: (10_000 - (1000 + 50 * 29)) / 50, growthPerSecond: 50, reason: null });
  });

  it('fits through noise (least squares), within 5% on a noisy steady series', () => {
    let seed = 7;
    const noise = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 40;
    const out = feed(60, 1000, (i) => Math.round(2000 + 20 * i + noise())).at(-1)!;
    const truth = (10_000 - (2000 + 20 * 59)) / 20;
    expect(Math.abs(out.seconds! - truth) / truth).toBeLessThan(0.05);
  });

  it('is null with a reason until 5 samples span 5 s', () => {
    const few = feed(4, 1000, (i) => 100 * i);
    expect(few.at(-1)!.seconds).toBeNull();
    expect(few.at(-1)!.reason).toBe('a trend needs 5 s of samples; 3.0 s so far');
    const fast = feed(20, 200, (i) => 100 * i); // 20 samples, but over 3.8 s
    expect(fast.at(-1)).toMatchObject({ seconds: null, reason: 'a trend needs 5 s of samples; 3.8 s so far' });
    const slow = feed(3, 5000, (i) => 100 * i); // 10 s, but 3 samples
    expect(slow.at(-1)).toMatchObject({ seconds: null, reason: 'a trend needs 5 samples; 3 so far' });
    expect(feed(6, 1000, (i) => 100 * i).at(-1)!.seconds).toBe((10_000 - 500) / 100);
  });

  it('is null when the table is flat or shrinking, 0 when it is full', () => {
    expect(feed(10, 1000, () => 500).at(-1)).toMatchObject({
      seconds: null,
      reason: expect.stringMatching(/not growing/),
    });
    expect(feed(10, 1000, (i) => 900 - i).at(-1)!.seconds).toBeNull();
    expect(feed(3, 1000, () => 10_000).at(-1)).toMatchObject({ seconds: 0, reason: null });
  });

  it('looks at the last 60 s only: growth that stopped a minute ago forecasts nothing', () => {
    const out = feed(200, 1000, (i) => (i < 120 ? 100 * i : 12_000), 1_000_000);
    expect(out[100]!.seconds).toBeGreaterThan(0);
    expect(out[150]!.seconds).toBeGreaterThan(0); // still inside the window: slowing growth
    expect(out[185]!.seconds).toBeNull();
    expect(out[185]!.reason).toMatch(/not growing \(net 0 entries\/s over the last 60 s\)/);
  });

  it('says why when entries or max are unknown, and skips such samples', () => {
    expect(feed(10, 1000, () => null).at(-1)!.reason).toMatch(/unknown/);
    expect(forecastTimeToFull([{ atMs: 0, entries: 1 }], null).reason).toMatch(/unknown/);
    const gaps = feed(12, 1000, (i) => (i % 3 === 1 ? null : 100 * i));
    expect(gaps.at(-1)!.seconds).toBe((10_000 - 1100) / 100);
  });
});
