import { describe, expect, it } from 'vitest';
import { renderLiveView } from '../dist/cli/live-view.js';
import { evaluateCheck } from '../dist/cli/commands/check.js';
import { formatSampleLine } from '../dist/cli/format.js';
import { sample } from './helpers/sample';

describe('live view renderer', () => {
  it('draws the fill bar with max, rates, TIME_WAIT and sparklines', () => {
    const s = sample({ entries: 500, max: 1000, timeWait: { entries: 100 }, counts: { insert: 1234 } });
    const text = renderLiveView({
      sample: s,
      fillHistory: [0, 0.25, 0.5, 0.75, 1],
      dropHistory: [0, 0, 4, 0],
      fallback: null,
      width: 60,
    });
    expect(text).toMatch(/Table +\[█{10}░{10}\] 50\.0% {2}500 \/ 1,000 entries/);
    expect(text).toMatch(/insert 1,234\/s {2}delete 0\/s {2}drop 0\/s/);
    expect(text).toMatch(/TIME_WAIT {2}100 entries \(10\.0% of max\), timeout 120 s/);
    expect(text).toMatch(/Fill {2}▁▃▅▆█/);
    expect(text).toMatch(/Drops ▁▁█▁ {2}\(peak 4 per interval\)/);
    // A drop two intervals ago stays on screen, said to be past.
    expect(text).toMatch(/! TABLE FULL: 4 packets dropped in the last 4\.0 s .*None in the last interval\./);
    const calm = renderLiveView({ sample: s, fillHistory: [0.5], dropHistory: [0], fallback: null, width: 60 });
    expect(calm).toMatch(/No warnings\./);
  });

  it('says in plain words when the table is full and packets drop', () => {
    const s = sample({ entries: 1000, max: 1000, counts: { drop: 37 } });
    const text = renderLiveView({ sample: s, fillHistory: [1], dropHistory: [37], fallback: null, width: 100 });
    expect(text).toMatch(
      /! TABLE FULL: 37 packets dropped in the last 1\.0 s \("nf_conntrack: table full, dropping packet"\)\. New connections are failing\./,
    );
    expect(text).toMatch(/! The table is 100\.0% full/);
  });

  it('says when events were lost and that insert/delete are unknown; so does the one-line format', () => {
    const lossy = sample({
      counts: { insert: null, delete: null },
      events: { lost: 1500, lostTotal: 2000, lostSince: '2026-11-27T12:00:00.500Z' },
    });
    const s = { ...lossy, rates: { ...lossy.rates, insert: null, delete: null } };
    const text = renderLiveView({ sample: s, fillHistory: [0.1], dropHistory: [0], fallback: null, width: 100 });
    expect(text).toMatch(/insert n\/a {2}delete n\/a/);
    expect(text).toMatch(/Events +0 this interval, lost 1,500 \(2,000 in all since 12:00:00\)/);
    expect(text).toMatch(
      /! EVENTS LOST: 1,500 events could not be queued .* insert and delete are unknown in this interval/,
    );
    expect(formatSampleLine(s)).toMatch(/insert n\/a {2}delete n\/a .* LOST 1500 events: insert\/delete unknown$/);
  });

  it('shows n/a and the reason when running on /proc', () => {
    const s = {
      ...sample(),
      source: 'proc' as const,
      rates: { ...sample().rates, insert: null },
      timeWait: { entries: null, timeoutSeconds: 120, share: null },
    };
    const text = renderLiveView({ sample: s, fillHistory: [], dropHistory: [], fallback: 'EPERM', width: 80 });
    expect(text).toMatch(/insert n\/a/);
    expect(text).toMatch(/TIME_WAIT {2}n\/a entries/);
    expect(text).toMatch(/! Reading \/proc, not ctnetlink \(EPERM\)/);
  });
});

describe('check evaluation (monitoring-plugins)', () => {
  it('is OK, WARNING or CRITICAL by peak fill, with perfdata', () => {
    expect(evaluateCheck([sample({ entries: 100, max: 1000 })], 75, 90)).toEqual({
      code: 0,
      line: 'CONNTRACK OK - 100/1000 entries (10.0%) at peak | entries=100;750;900;0;1000 fill=10.00%;75;90;0;100 drops=0c time_wait=0;;;0;1000',
    });
    expect(evaluateCheck([sample({ entries: 800, t: 0 }), sample({ entries: 100, t: 1 })], 75, 90).code).toBe(1);
    expect(evaluateCheck([sample({ entries: 950 })], 75, 90).line).toMatch(/^CONNTRACK CRITICAL - 950\/1000/);
  });

  it('is CRITICAL on any drop, and UNKNOWN without a fill', () => {
    const r = evaluateCheck(
      [sample({ entries: 10, counts: { drop: 5 } }), sample({ entries: 10, counts: { drop: 2 } })],
      75,
      90,
    );
    expect(r.code).toBe(2);
    expect(r.line).toMatch(/^CONNTRACK CRITICAL - 7 packets dropped in 2 s \(table full\)/);
    expect(r.line).toMatch(/drops=7c/);
    expect(evaluateCheck([sample({ entries: null })], 75, 90)).toMatchObject({ code: 3 });
  });
});
