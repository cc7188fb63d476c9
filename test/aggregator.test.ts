/**
 * The native aggregator driven with an injected clock (monotonic ns and wall ms passed in),
 * through the binding's _aggregate hook. Kernel counters are 32-bit per-CPU values.
 */
import { describe, expect, it } from 'vitest';
import { binding } from './helpers/binding';

const S = 1_000_000_000; // ns per second
const DROP = 10,
  EARLY_DROP = 11,
  INVALID = 4,
  CLASH_RESOLVE = 14,
  CHAIN_TOOLONG = 15;
const idx = (name: string) => binding.counterNames.indexOf(name);
const cpu = (id: number, values: Record<number, number>) => ({ cpu: id, values });
const global = { entries: 10, max: 100 };

describe('aggregator', () => {
  it('counts NEW and DESTROY events per interval and in totals; UPDATE counts only as received', () => {
    const [a, b] = binding._aggregate([
      { op: 'start', t: 0, cpus: [cpu(0, { [DROP]: 0 })], drops: 0 },
      { op: 'event', kind: 'new', count: 5 },
      { op: 'event', kind: 'update', count: 7 },
      { op: 'event', kind: 'destroy', count: 2 },
      { op: 'close', t: 1 * S, wall: 1000, cpus: [cpu(0, { [DROP]: 0 })], global, drops: 0 },
      { op: 'event', kind: 'new', count: 3 },
      { op: 'close', t: 2 * S, wall: 2000, cpus: [cpu(0, { [DROP]: 0 })], global, drops: 0 },
    ]);
    expect(a!.counts[idx('insert')]).toBe(5);
    expect(a!.counts[idx('delete')]).toBe(2);
    expect(a!.eventsReceived).toBe(14);
    expect(b!.counts[idx('insert')]).toBe(3);
    expect(b!.totals[idx('insert')]).toBe(8);
    expect(b!.totals[idx('delete')]).toBe(2);
    expect(b!.endWallMs).toBe(2000);
    expect(b!.durationNs).toBe(S);
  });

  it('books loss at the close, and remembers when it was first seen while draining', () => {
    const [a, b, c, d] = binding._aggregate([
      { op: 'start', t: 0, cpus: [], drops: 7 },
      { op: 'observe-drops', wall: 400, drops: 7 }, // nothing new
      { op: 'observe-drops', wall: 600, drops: 9 }, // the first loss
      { op: 'observe-drops', wall: 800, drops: 20 },
      { op: 'close', t: 1 * S, wall: 1000, cpus: [], drops: 25 },
      { op: 'close', t: 2 * S, wall: 2000, cpus: [], drops: 25 },
      { op: 'observe-drops', wall: 2500, drops: 30 },
      { op: 'close', t: 3 * S, wall: 3000, cpus: [] }, // no drops reading: booked at the next close
      { op: 'close', t: 4 * S, wall: 4000, cpus: [], drops: 31 },
    ]);
    expect([a, b, c, d].map((s) => s!.eventsLost)).toEqual([18, 0, 0, 6]);
    expect([a, b, c, d].map((s) => s!.eventsLostTotal)).toEqual([18, 18, 18, 24]);
    expect([a, b, c, d].map((s) => s!.firstLossWallMs)).toEqual([600, null, null, 2500]);
    expect([a, b, c, d].map((s) => s!.firstLossEverWallMs)).toEqual([600, 600, 600, 600]);
  });

  it('sums kernel counters over CPUs as deltas since the previous reading', () => {
    const [a] = binding._aggregate([
      {
        op: 'start',
        t: 0,
        cpus: [cpu(0, { [DROP]: 100, [INVALID]: 1 }), cpu(1, { [DROP]: 50, [INVALID]: 0 })],
        drops: 0,
      },
      {
        op: 'close',
        t: S,
        wall: 1,
        cpus: [cpu(0, { [DROP]: 130, [INVALID]: 1 }), cpu(1, { [DROP]: 57, [INVALID]: 4 })],
        global,
        drops: 0,
      },
    ]);
    expect(a!.counts[idx('drop')]).toBe(37);
    expect(a!.counts[idx('invalid')]).toBe(4);
    expect(a!.entries).toBe(10);
    expect(a!.max).toBe(100);
  });

  it('handles the wrap of a 32-bit counter', () => {
    const [a, b] = binding._aggregate([
      { op: 'start', t: 0, cpus: [cpu(0, { [EARLY_DROP]: 0xfffffff0 })], drops: 0xfffffffe },
      { op: 'close', t: S, wall: 1, cpus: [cpu(0, { [EARLY_DROP]: 0x10 })], global, drops: 3 },
      { op: 'close', t: 2 * S, wall: 2, cpus: [cpu(0, { [EARLY_DROP]: 0x11 })], global, drops: 3 },
    ]);
    expect(a!.counts[idx('earlyDrop')]).toBe(0x20);
    expect(a!.eventsLost).toBe(5);
    expect(b!.counts[idx('earlyDrop')]).toBe(1);
    expect(b!.totals[idx('earlyDrop')]).toBe(0x21);
    expect(b!.eventsLostTotal).toBe(5);
  });

  it('reports idle intervals as zeros with their real length', () => {
    const samples = binding._aggregate([
      { op: 'start', t: 5 * S, cpus: [cpu(0, { [DROP]: 7 })], drops: 2 },
      { op: 'close', t: 6 * S, wall: 1, cpus: [cpu(0, { [DROP]: 7 })], global, drops: 2 },
      { op: 'close', t: 8.5 * S, wall: 2, cpus: [cpu(0, { [DROP]: 7 })], global, drops: 2 },
    ]);
    for (const s of samples) {
      expect(['insert', 'delete', 'drop'].map((n) => s.counts[idx(n)])).toEqual([0, 0, 0]);
      expect(s.eventsLost).toBe(0);
    }
    expect(samples.map((s) => s.durationNs)).toEqual([S, 2.5 * S]);
  });

  it('makes kernel counters null when the stats request failed, and catches up after', () => {
    const [failed, next] = binding._aggregate([
      { op: 'start', t: 0, cpus: [cpu(0, { [DROP]: 0 })], drops: 0 },
      { op: 'event', kind: 'new', count: 2 },
      { op: 'close', t: S, wall: 1, cpus: null, global: null, drops: 0 },
      { op: 'close', t: 2 * S, wall: 2, cpus: [cpu(0, { [DROP]: 9 })], global, drops: 0 },
    ]);
    expect(failed!.kernelStatsOk).toBe(false);
    expect(failed!.counts[idx('drop')]).toBeNull();
    expect(failed!.counts[idx('insert')]).toBe(2); // events are still known
    expect(failed!.entries).toBeNull();
    expect(next!.counts[idx('drop')]).toBe(9);
    expect(next!.totals[idx('drop')]).toBe(9);
  });

  it('makes a counter null when the kernel does not report it (older kernels)', () => {
    const [a] = binding._aggregate([
      { op: 'start', t: 0, cpus: [cpu(0, { [DROP]: 0 })], drops: 0 },
      { op: 'close', t: S, wall: 1, cpus: [cpu(0, { [DROP]: 1 })], global, drops: 0 },
    ]);
    expect(a!.kernelStatsOk).toBe(true);
    expect(a!.counts[idx('drop')]).toBe(1);
    expect(a!.counts[idx('clashResolve')]).toBeNull();
    expect(a!.counts[idx('chainTooLong')]).toBeNull();
  });

  it('takes a CPU seen for the first time as its baseline, not as new drops', () => {
    const [a, b] = binding._aggregate([
      { op: 'start', t: 0, cpus: [cpu(0, { [CLASH_RESOLVE]: 3, [CHAIN_TOOLONG]: 0 })], drops: 0 },
      {
        op: 'close',
        t: S,
        wall: 1,
        cpus: [
          cpu(0, { [CLASH_RESOLVE]: 3, [CHAIN_TOOLONG]: 0 }),
          cpu(1, { [CLASH_RESOLVE]: 1000, [CHAIN_TOOLONG]: 0 }),
        ],
        global,
        drops: 0,
      },
      {
        op: 'close',
        t: 2 * S,
        wall: 2,
        cpus: [
          cpu(0, { [CLASH_RESOLVE]: 4, [CHAIN_TOOLONG]: 0 }),
          cpu(1, { [CLASH_RESOLVE]: 1002, [CHAIN_TOOLONG]: 0 }),
        ],
        global,
        drops: 0,
      },
    ]);
    expect(a!.counts[idx('clashResolve')]).toBe(0);
    expect(b!.counts[idx('clashResolve')]).toBe(3);
  });

  it('marks the interval closed by stop() as final', () => {
    const [a] = binding._aggregate([
      { op: 'start', t: 0, cpus: [], drops: 0 },
      { op: 'close', t: 0.25 * S, wall: 1, cpus: [], global, drops: 0, final: true },
    ]);
    expect(a!.final).toBe(true);
    expect(a!.durationNs).toBe(0.25 * S);
  });
});
