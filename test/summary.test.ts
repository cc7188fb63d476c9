/**
 * summarize(): on a real recording made on this kernel (test/fixtures/recordings, with the
 * kernel's own counters for the same run), and on built samples for the definitions: peaks,
 * nearest-rank percentiles, the short closing interval, the first drop, and nulls with reasons.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRecording, runsOf, summarize, type ConntrackSample } from '../dist/index.js';
import { sample } from './helpers/sample';

const FIXTURES = join(__dirname, 'fixtures', 'recordings');
const recording = parseRecording(readFileSync(join(FIXTURES, 'table-full.ndjson'), 'utf8'), 'table-full.ndjson');
const kernel = JSON.parse(readFileSync(join(FIXTURES, 'table-full.kernel.json'), 'utf8'));

/** Samples of 1 s whose per-interval counts are `inserts[i]`. */
const withInserts = (inserts: number[]) => inserts.map((n, i) => sample({ t: i + 1, counts: { insert: n } }));

describe('summarize on a real recording (table full at nf_conntrack_max = 60)', () => {
  const s = summarize(recording.samples);

  it("matches the kernel's counters for the same run", () => {
    console.info(
      `fixture: inserts ${s.totals.insert} (nft ct state new ${kernel.nftNew}), drops ${s.totals.drop} (kernel ${kernel.drop}, failed sends ${kernel.udp.failed}), ` +
        `peak entries ${s.peak.entries} of ${kernel.max}, peak TIME_WAIT ${s.peak.timeWait} (conntrack -L ${kernel.timeWaitBeforeUdp})`,
    );
    expect(s.totals.insert).toBe(kernel.nftNew);
    expect(s.totals.drop).toBe(kernel.drop);
    expect(s.totals.drop).toBe(kernel.udp.failed);
    expect(s.totals.earlyDrop).toBe(kernel.earlyDrop);
    expect(s.totals.insertFailed).toBe(kernel.insertFailed);
    expect(s.peak.entries).toBe(kernel.max);
    expect(s.peak.fill).toBe(1);
    expect(s.max).toBe(kernel.max);
    expect(s.peak.timeWait).toBe(kernel.timeWaitBeforeUdp);
    expect(s.peak.timeWaitShare).toBe(kernel.timeWaitBeforeUdp / kernel.max);
    expect(s.eventsLost).toBe(0);
    expect(s.unavailable).toEqual({});
  });

  it('takes duration, rates and the first drop from the samples as recorded', () => {
    const samples = recording.samples;
    const dropping = samples.find((x) => (x.counts.drop ?? 0) > 0)!;
    expect(s.samples).toBe(samples.length);
    expect(s.durationSeconds).toBeCloseTo(samples.reduce((a, x) => a + x.intervalMs, 0) / 1000, 3);
    expect(s.start).toBe(new Date(Date.parse(samples[0]!.time) - samples[0]!.intervalMs).toISOString());
    expect(s.end).toBe(samples.at(-1)!.time);
    expect(s.firstDropAt).toBe(dropping.time);
    // All the kernel's drops fell into one interval: the peak drop rate is them over its length.
    expect(dropping.counts.drop).toBe(kernel.drop);
    expect(s.peak.dropRate).toBeCloseTo(kernel.drop / (dropping.intervalMs / 1000), 2);
    expect(s.p50.dropRate).toBe(0);
    expect(s.source).toBe('netlink');
    expect(s.netns).toBe(recording.header!.netns);
  });
});

describe('summarize: definitions', () => {
  it('peak, p50 and p99 are nearest-rank over the intervals', () => {
    const hundred = summarize(withInserts(Array.from({ length: 100 }, (_, i) => 100 - i)));
    expect([hundred.peak.insertRate, hundred.p50.insertRate, hundred.p99.insertRate]).toEqual([100, 50, 99]);
    const ten = summarize(withInserts([3, 1, 4, 1, 5, 9, 2, 6, 5, 3]));
    expect([ten.peak.insertRate, ten.p50.insertRate, ten.p99.insertRate]).toEqual([9, 3, 9]);
    expect(ten.totals.insert).toBe(39);
    const one = summarize(withInserts([7]));
    expect([one.peak.insertRate, one.p50.insertRate, one.p99.insertRate]).toEqual([7, 7, 7]);
  });

  it('leaves a closing interval shorter than half the others out of the rates, not out of the totals', () => {
    const closing = (ms: number, inserts: number): ConntrackSample => ({
      ...sample({ t: 6, counts: { insert: inserts } }),
      intervalMs: ms,
      final: true,
      rates: { ...sample().rates, insert: inserts / (ms / 1000) },
    });
    const short = summarize([...withInserts([10, 10, 10, 10, 10]), closing(20, 5)]); // 250/s over 20 ms
    expect(short.peak.insertRate).toBe(10);
    expect(short.totals.insert).toBe(55);
    expect(short.durationSeconds).toBe(5.02);
    const long = summarize([...withInserts([10, 10, 10, 10, 10]), closing(600, 18)]); // 30/s over 0.6 s
    expect(long.peak.insertRate).toBe(30);
  });

  it('peaks of entries, fill and TIME_WAIT are each their own, whatever nf_conntrack_max did', () => {
    const s = summarize([
      sample({ t: 1, entries: 500, max: 1000, timeWait: { entries: 100 } }),
      sample({ t: 2, entries: 400, max: 400, timeWait: { entries: 300 } }), // max lowered: full
      sample({ t: 3, entries: 600, max: 2000, timeWait: { entries: 50 } }),
    ]);
    expect(s.peak.entries).toBe(600);
    expect(s.peak.fill).toBe(1);
    expect(s.peak.timeWait).toBe(300);
    expect(s.peak.timeWaitShare).toBe(0.75);
    expect(s.max).toBe(2000); // at the end
  });

  it('firstDropAt is the end of the first interval with a drop; null (and no reason) when none', () => {
    const s = summarize([
      sample({ t: 1 }),
      sample({ t: 2 }),
      sample({ t: 3, counts: { drop: 4 } }),
      sample({ t: 4, counts: { drop: 9 } }),
    ]);
    expect(s.firstDropAt).toBe('2026-11-27T12:00:03.000Z');
    expect(s.firstDropSeconds).toBe(3);
    expect(s.totals.drop).toBe(13);
    expect(s.peak.dropRate).toBe(9);
    const calm = summarize([sample({ t: 1 }), sample({ t: 2 })]);
    expect(calm.firstDropAt).toBeNull();
    expect(calm.unavailable.firstDropAt).toBeUndefined();
  });

  it('an interval whose statistics failed (null) still leaves the totals whole: the next one has its changes', () => {
    const failed = sample({ t: 2 });
    failed.counts.drop = null;
    failed.rates.drop = null;
    failed.unavailable['counts.drop'] = 'the conntrack statistics request failed in this interval';
    const s = summarize([sample({ t: 1, counts: { drop: 2 } }), failed, sample({ t: 3, counts: { drop: 5 } })]);
    expect(s.totals.drop).toBe(7);
    expect(s.unavailable['totals.drop']).toBeUndefined();
  });

  it('an interval with lost events leaves no insert/delete total: the sum would be short', () => {
    const lossy = sample({ t: 2, events: { lost: 40, lostTotal: 40 } });
    lossy.counts.insert = lossy.counts.delete = null;
    lossy.rates.insert = lossy.rates.delete = null;
    const reason =
      '40 events lost in this interval (from 12:00:01.500 UTC): NEW and DESTROY among them were not counted';
    lossy.unavailable['counts.insert'] = lossy.unavailable['counts.delete'] = reason;
    const s = summarize([...withInserts([3]), lossy, sample({ t: 3, counts: { insert: 4 } })]);
    expect(s.totals.insert).toBeNull();
    expect(s.totals.delete).toBeNull();
    expect(s.unavailable['totals.insert']).toBe(reason);
    expect(s.eventsLost).toBe(40);
    expect(s.peak.insertRate).toBe(4); // the intervals that were counted still have their rates
  });

  it("what the recording cannot know is null with the samples' own reason, never 0", () => {
    const reason = 'counted from ctnetlink events, which need CAP_NET_ADMIN (the proc backend reads none)';
    const proc = [1, 2, 3].map((t) => {
      const s = sample({ t, counts: { drop: t === 2 ? 3 : 0 } });
      s.source = 'proc';
      s.counts.insert = s.rates.insert = s.totals.insert = null;
      s.counts.delete = s.rates.delete = s.totals.delete = null;
      s.events = null;
      s.timeWait = { entries: null, timeoutSeconds: null, share: null };
      s.unavailable = {
        'counts.insert': reason,
        'counts.delete': reason,
        events: 'the proc backend reads no events',
        'timeWait.entries': 'TIME_WAIT per conntrack entry needs a ctnetlink dump (CAP_NET_ADMIN)',
        'timeWait.share': 'TIME_WAIT per conntrack entry needs a ctnetlink dump (CAP_NET_ADMIN)',
      };
      return s;
    });
    const s = summarize(proc);
    expect(s.peak.insertRate).toBeNull();
    expect(s.p99.deleteRate).toBeNull();
    expect(s.totals.insert).toBeNull();
    expect(s.eventsLost).toBeNull();
    expect(s.peak.timeWait).toBeNull();
    expect(s.unavailable['peak.insertRate']).toBe(reason);
    expect(s.unavailable['totals.delete']).toBe(reason);
    expect(s.unavailable.eventsLost).toBe('the proc backend reads no events');
    expect(s.unavailable['peak.timeWait']).toMatch(/needs a ctnetlink dump/);
    // What /proc does know is there.
    expect(s.totals.drop).toBe(3);
    expect(s.firstDropSeconds).toBe(2);
    expect(s.source).toBe('proc');
  });

  it('without samples: nothing is 0 that is unknown', () => {
    const s = summarize([]);
    expect(s.samples).toBe(0);
    expect(s.durationSeconds).toBe(0);
    expect(s.peak.entries).toBeNull();
    expect(s.totals.drop).toBeNull();
    expect(s.firstDropAt).toBeNull();
    expect(s.unavailable['totals.drop']).toBe('the recording has no samples');
    expect(s.unavailable.firstDropAt).toBe('the recording has no samples');
  });
});

describe('runs of an --all-namespaces recording', () => {
  const row = (inode: number, name: string | null, drops: number, inserts: number, entries: number) => ({
    inode,
    name,
    pid: null,
    host: name === null,
    entries,
    max: 100,
    fill: entries / 100,
    drops,
    dropRate: drops,
    inserts,
    insertRate: inserts,
    totalDrops: null,
    source: 'netlink' as const,
    error: null,
  });
  const reports = [1, 2, 3].map((t) => ({
    time: `2026-11-27T12:00:0${t}.000Z`,
    intervalMs: 1000,
    final: false,
    namespaces: [row(1, null, 0, 2, 10), row(2, 'pod-a', t === 3 ? 7 : 0, 30, 100), row(3, 'pod-b', 0, 5, 40)],
  }));

  it('one run per namespace, busiest first; what the rows lack is null with that reason', () => {
    const runs = runsOf(
      { header: null, samples: [], reports, notices: [], end: null, truncated: false },
      'node.ndjson',
    );
    expect(runs.map((r) => r.label)).toEqual(['node: pod-a', 'node: pod-b', 'node: (host)']);
    const a = runs[0]!.summary;
    expect(a.totals.drop).toBe(7);
    expect(a.totals.insert).toBe(90);
    expect(a.peak.fill).toBe(1);
    expect(a.firstDropAt).toBe('2026-11-27T12:00:03.000Z');
    expect(a.totals.earlyDrop).toBeNull();
    expect(a.peak.timeWait).toBeNull();
    expect(a.unavailable['totals.earlyDrop']).toMatch(/only entries, fill, drops and inserts per namespace/);
    expect(a.unavailable.eventsLost).toMatch(/only entries, fill, drops and inserts per namespace/);
  });
});
