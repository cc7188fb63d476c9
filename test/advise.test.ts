import { describe, expect, it } from 'vitest';
import { adviseTuning, type TuningEnvironment } from '../dist/advise.js';
import { tableFullRecord } from '../dist/host/kernel-drops.js';
import { sample } from './helpers/sample';

const env: TuningEnvironment = {
  max: 65536,
  buckets: 16384,
  timeWaitTimeout: 120,
  entryBytes: 256,
  memoryBytes: 8 * 2 ** 30,
};
const series = (n: number, f: (i: number) => Parameters<typeof sample>[0]) =>
  Array.from({ length: n }, (_, i) => sample({ t: i, max: 65536, ...f(i) }));

describe('adviseTuning', () => {
  it('recommends a larger max after drops, sized from the demand, with buckets and memory', () => {
    const samples = series(30, (i) => ({ entries: 65536, counts: { drop: i < 10 ? 100 : 0 } }));
    const a = adviseTuning(samples, env);
    expect(a.drops).toBe(1000);
    const max = a.recommendations.find((r) => r.sysctl === 'net.netfilter.nf_conntrack_max')!;
    expect(max.current).toBe(65536);
    expect(max.recommended).toBe(262144); // demand 66536 at 50% fill -> next power of two
    expect(max.reason).toMatch(/1000 packets were dropped/);
    expect(a.recommendations.find((r) => r.sysctl === 'net.netfilter.nf_conntrack_buckets')?.recommended).toBe(262144);
    expect(a.memory).toEqual({ entryBytes: 256, bytes: 262144 * 264, shareOfRam: (262144 * 264) / (8 * 2 ** 30) });
    expect(a.sysctlConf).toMatch(/^# conntrack-monitor advise/);
    expect(a.sysctlConf).toMatch(/^net\.netfilter\.nf_conntrack_max = 262144$/m);
    expect(a.steps.join('\n')).toMatch(/sysctl -p/);
  });

  it('recommends a shorter TIME_WAIT timeout when TIME_WAIT dominates a pressured table', () => {
    const samples = series(10, () => ({ entries: 40000, timeWait: { entries: 30000 } }));
    const a = adviseTuning(samples, env);
    const tw = a.recommendations.find((r) => r.sysctl === 'net.netfilter.nf_conntrack_tcp_timeout_time_wait')!;
    expect(tw).toMatchObject({ current: 120, recommended: 30 });
    expect(tw.reason).toBe(
      'TIME_WAIT entries peaked at 30000 (45.8% of nf_conntrack_max); at 30 s instead of 120 s about 22500 of them would be gone.',
    );
    // The verdict behind it, from the busiest sample's TCP states.
    expect(a.verdict).toMatchObject({ mostly: 'tcp-closing', state: 'tcp/TIME_WAIT', raiseMax: false });
    expect(a.recommendations.map((r) => r.sysctl)).not.toContain('net.netfilter.nf_conntrack_max');
  });

  it('projects growth as far ahead as it observed', () => {
    const samples = series(60, (i) => ({ entries: 40000 + i * 100 })); // +6000/min for 60 s
    const a = adviseTuning(samples, env);
    expect(a.growthPerMinute).toBeCloseTo(6000, 0);
    // peak 45900 (70% of 65536) + 60 s x 100/s = 51900, over 75%; at 50% fill -> 103800 -> 2^17
    expect(a.recommendations[0]).toMatchObject({ sysctl: 'net.netfilter.nf_conntrack_max', recommended: 131072 });
    expect(a.recommendations[0]!.reason).toMatch(/projected 51900 in 60 s/);
    // The same growth seen for 10 s projects only 10 s ahead: no advice to raise the max.
    const brief = adviseTuning(samples.slice(0, 10), env);
    expect(brief.recommendations.map((r) => r.sysctl)).not.toContain('net.netfilter.nf_conntrack_max');
  });

  it('says nothing needs to change on a quiet table', () => {
    const a = adviseTuning(
      series(30, () => ({ entries: 1000, timeWait: { entries: 900 } })),
      { ...env, buckets: 65536 },
    );
    expect(a.recommendations).toEqual([]);
    expect(a.sysctlConf).toBe('');
    expect(a.notes).toEqual([
      'TIME_WAIT entries are most of the table (900 of 1000 entries, 1.4% of nf_conntrack_max), but it is not under pressure: the 120 s timeout can stay.',
      'nf_conntrack_max 65536 is enough: peak 1000 entries (1.5% of nf_conntrack_max), no drops while observed.',
      'Nothing to change.',
    ]);
    expect(a.verdict).toBeNull(); // not under pressure: nothing to act on
  });

  it('drops before the observation are history: said as such, not the reason for a larger max', () => {
    const quiet = series(30, () => ({ entries: 200 })); // 0.3% of the max
    const history = { sinceStart: 1234, lastLoggedSecondsAgo: 61.4, unavailable: {} };
    const a = adviseTuning(quiet, { ...env, buckets: 65536, kernelDrops: history });
    expect(a.drops).toBe(0);
    expect(a.dropsBefore).toBe(1234);
    expect(a.kernelDrops).toEqual(history);
    expect(a.recommendations).toEqual([]);
    expect(a.notes).toEqual([
      '1234 drops since the namespace started, none while observed (the kernel last logged "table full" for it 61 s ago): ' +
        'the table was full before, not while it was watched (peak 200 entries, 0.3% of nf_conntrack_max). ' +
        'That history does not size the table: watch it while it is busy (advise --observe longer, or record a load test).',
      'nf_conntrack_max 65536 is enough: peak 200 entries (0.3% of nf_conntrack_max), no drops while observed.',
    ]);
    // Not "Nothing to change": the table was full before.
    expect(a.notes.join(' ')).not.toMatch(/Nothing to change/);
    // Drops while observed are counted apart from those before.
    const seen = adviseTuning(
      series(30, (i) => ({ entries: 65536, counts: { drop: i === 0 ? 34 : 0 } })),
      { ...env, kernelDrops: history },
    );
    expect(seen.dropsBefore).toBe(1200);
    expect(seen.notes[0]).toBe(
      'The kernel counted 1200 more table-full drops in this namespace before the observation (the kernel last logged "table full" for it 61 s ago).',
    );
    expect(seen.recommendations[0]!.reason).toMatch(/^34 packets were dropped because the table was full/);
  });

  it('says what the kernel counted, or why it cannot tell, when nothing was dropped', () => {
    const quiet = series(10, () => ({ entries: 1000 }));
    const none = adviseTuning(quiet, {
      ...env,
      buckets: 65536,
      kernelDrops: { sinceStart: 0, lastLoggedSecondsAgo: null, unavailable: { lastLoggedSecondsAgo: 'x' } },
    });
    expect(none.notes).toContain('The kernel counted no table-full drop in this namespace since it started.');
    expect(none.notes).toContain('Nothing to change.');
    const unknown = adviseTuning(quiet, {
      ...env,
      buckets: 65536,
      kernelDrops: {
        sinceStart: null,
        lastLoggedSecondsAgo: null,
        unavailable: {
          sinceStart: 'no process or thread is in the namespace to read its /proc/net/stat/nf_conntrack through',
        },
      },
    });
    expect(unknown.notes[0]).toBe(
      'Drops before the observation are unknown: no process or thread is in the namespace to read its /proc/net/stat/nf_conntrack through.',
    );
    // An incident logged long ago, when is unknown: history too, with why its time is unknown.
    const old = adviseTuning(quiet, {
      ...env,
      buckets: 65536,
      kernelDrops: {
        sinceStart: 7,
        lastLoggedSecondsAgo: null,
        unavailable: {
          lastLoggedSecondsAgo:
            "no 'table full' line for this namespace in the kernel log (it keeps only the latest messages)",
        },
      },
    });
    expect(old.recommendations).toEqual([]);
    expect(old.notes[0]).toMatch(
      /^7 drops since the namespace started, none while observed \(when is unknown: no 'table full' line for this namespace/,
    );
  });

  it('a "table full" kernel log line is a namespace\'s only when it names it', () => {
    // As /dev/kmsg gives them on this kernel (6.18), and as kernels before 6.x wrote them.
    expect(
      tableFullRecord('4,343,222944560,-;nf_conntrack: nf_conntrack: table full in netns 4026532174, dropping packet'),
    ).toEqual({ usec: 222944560, netns: 4026532174 });
    expect(tableFullRecord('4,12,5000,-;nf_conntrack: table full, dropping packet')).toEqual({
      usec: 5000,
      netns: null,
    });
    expect(tableFullRecord('6,13,6000,-;eth0: link becomes ready')).toBeNull();
  });
});
