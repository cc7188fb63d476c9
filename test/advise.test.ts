import { describe, expect, it } from 'vitest';
import { adviseTuning, type TuningEnvironment } from '../dist/advise.js';
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
    expect(tw.reason).toMatch(/75\.0% of the table at peak \(30000\).*about 22500 of them/);
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
    expect(a.notes.join(' ')).toMatch(
      /is enough.*TIME_WAIT entries are 90\.0% of the table, but the table is not under pressure.*Nothing to change/,
    );
  });

  it('an incident before the observation is not "nothing to change": the kernel counted it', () => {
    const quiet = series(30, () => ({ entries: 1000 }));
    const history = { sinceStart: 1234, lastLoggedSecondsAgo: 61.4, unavailable: {} };
    const a = adviseTuning(quiet, { ...env, buckets: 65536, kernelDrops: history });
    expect(a.drops).toBe(0);
    expect(a.kernelDrops).toEqual(history);
    const max = a.recommendations.find((r) => r.sysctl === 'net.netfilter.nf_conntrack_max')!;
    // Demand: the max plus the drops (at most a table's worth), at half the table -> 2^18.
    expect(max).toMatchObject({ current: 65536, recommended: 262144 });
    expect(max.reason).toBe(
      'the kernel counted 1234 packets dropped for a full table in this namespace (the kernel last logged "table full" 61 s ago), ' +
        'none while observed (peak 1000 of 65536 entries); 262144 keeps that demand at about 25.5% of the table.',
    );
    expect(a.notes).toContain(
      'The kernel counted 1234 table-full drops in this namespace since it started (the kernel last logged "table full" 61 s ago).',
    );
    expect(a.notes.join(' ')).not.toMatch(/Nothing to change/);
    expect(a.sysctlConf).toMatch(/^net\.netfilter\.nf_conntrack_max = 262144$/m);
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
    // An incident logged long ago, when is unknown: still a reason to raise the limit.
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
    expect(old.recommendations[0]!.reason).toMatch(
      /^the kernel counted 7 packets dropped for a full table in this namespace \(when is unknown: no 'table full' line/,
    );
  });
});
