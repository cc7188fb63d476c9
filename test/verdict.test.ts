/**
 * The one verdict (src/verdict.ts) every command gives on what fills a table: its classes
 * (unassured, closing TCP, assured), the state and knob it names, shares of nf_conntrack_max,
 * what it says from a snapshot and from a sample; and the commands that give it saying the
 * same: top's text, check's status line, the live view, advise and the report's advice.
 */
import { describe, expect, it } from 'vitest';
import { evictableVerdict, type TableComposition, type TopReport } from '../dist/index.js';
import { adviseTuning } from '../dist/advise.js';
import { classOfState, compositionOfSample, knobOfState } from '../dist/verdict.js';
import { evaluateCheck } from '../dist/cli/commands/check.js';
import { formatTopReport } from '../dist/cli/commands/top.js';
import { formatAdvice } from '../dist/cli/commands/advise.js';
import { renderLiveView } from '../dist/cli/live-view.js';
import { sample } from './helpers/sample';

/** A snapshot of `entries` of which `unassured` and `tcpClosing`, `overlap` of them in both. */
function snapshot(
  parts: { entries: number; unassured: number; tcpClosing: number; overlap?: number; max?: number | null },
  byState: [string, number][],
  bySource: [string, number][] = [['10.0.0.7', parts.entries]],
): TopReport {
  const items = (list: [string, number][]) => list.map(([key, entries]) => ({ key, entries }));
  return {
    time: '2026-11-27T12:00:00.000Z',
    netns: '/var/run/netns/blue',
    max: parts.max === undefined ? 1000 : parts.max,
    entries: parts.entries,
    evictable: parts.unassured + parts.tcpClosing - (parts.overlap ?? 0),
    unassured: parts.unassured,
    tcpClosing: parts.tcpClosing,
    bySource: items(bySource),
    byDestination: items([['10.96.0.10', parts.entries]]),
    byDestinationPort: items([['tcp/80', parts.entries]]),
    byState: items(byState),
    unavailable: {},
  };
}

/** The three tables of the integration tests, as their snapshots say. */
const TIME_WAIT = snapshot({ entries: 100, unassured: 0, tcpClosing: 100, max: 100 }, [['tcp/TIME_WAIT', 100]]);
const UNREPLIED = snapshot(
  { entries: 100, unassured: 100, tcpClosing: 0, max: 100 },
  [['udp/UNREPLIED', 100]],
  [
    ['10.17.0.4', 70],
    ['10.17.0.5', 30],
  ],
);
const ESTABLISHED = snapshot({ entries: 100, unassured: 0, tcpClosing: 0, max: 100 }, [['tcp/ESTABLISHED', 100]]);

describe('evictableVerdict: one model of what the kernel can reclaim', () => {
  it('a table of TIME_WAIT: mostly closing TCP, its timeout, never "raise the max"', () => {
    const v = evictableVerdict(TIME_WAIT);
    expect(v).toMatchObject({
      mostly: 'tcp-closing',
      state: 'tcp/TIME_WAIT',
      entries: 100,
      knob: 'nf_conntrack_tcp_timeout_time_wait',
      raiseMax: false,
      share: 1,
    });
    expect(v.text).toBe(
      'mostly closing TCP: 100 of 100 entries (100.0% of nf_conntrack_max) are in FIN_WAIT, CLOSE_WAIT, LAST_ACK, ' +
        'TIME_WAIT or CLOSE (most tcp/TIME_WAIT), which the kernel reclaims only once an insert has failed at 95% of ' +
        'nf_conntrack_max, so drops come first; a shorter nf_conntrack_tcp_timeout_time_wait frees them sooner',
    );
    expect(v.text).not.toMatch(/raise nf_conntrack_max/);
  });

  it('a table of unreplied UDP: mostly unassured, who opens them, the UDP timeout, never "raise the max"', () => {
    const v = evictableVerdict(UNREPLIED);
    expect(v).toMatchObject({
      mostly: 'unassured',
      state: 'udp/UNREPLIED',
      entries: 100,
      knob: 'nf_conntrack_udp_timeout',
      raiseMax: false,
    });
    expect(v.text).toBe(
      'mostly unassured: 100 of 100 entries (100.0% of nf_conntrack_max) are unassured (most udp/UNREPLIED), which the ' +
        'kernel evicts to make room for new ones (at once when one is in a nearby hash bucket, else after a drop, at 95% full), ' +
        'so a larger nf_conntrack_max only makes room for more of them; look at ' +
        'who opens them (top source 10.17.0.4: 70 entries); nf_conntrack_udp_timeout is how long each stays',
    );
  });

  it('a table of assured connections: mostly assured, raise nf_conntrack_max', () => {
    const v = evictableVerdict(ESTABLISHED);
    expect(v).toMatchObject({ mostly: 'assured', state: 'tcp/ESTABLISHED', knob: 'nf_conntrack_max', raiseMax: true });
    expect(v.share).toBe(0);
    expect(v.text).toMatch(
      /^mostly assured: 100 of 100 entries \(100\.0% of nf_conntrack_max\) are assured connections/,
    );
    expect(v.text).toMatch(/raise nf_conntrack_max, and nf_conntrack_buckets with it$/);
  });

  it('an entry in both classes counts once: the union decides "mostly", the larger class the verdict', () => {
    // 30 unassured UDP, 25 TIME_WAIT of which 5 unassured (picked up mid-stream), 50 established:
    // 50 of 100 reclaimable -> mostly reclaimable; unassured 30 > assured closing 20.
    const mixed = snapshot({ entries: 100, unassured: 30, tcpClosing: 25, overlap: 5 }, [
      ['tcp/ESTABLISHED', 50],
      ['udp/UNREPLIED', 25],
      ['tcp/TIME_WAIT', 20],
      ['tcp/CLOSE_WAIT', 5],
    ]);
    expect(mixed.evictable).toBe(50);
    expect(evictableVerdict(mixed)).toMatchObject({ mostly: 'unassured', state: 'udp/UNREPLIED', share: 0.5 });
    // One entry fewer that can be reclaimed: mostly assured.
    const assured = { ...mixed, evictable: 49, unassured: 29 };
    expect(evictableVerdict(assured)).toMatchObject({ mostly: 'assured', state: 'tcp/ESTABLISHED', raiseMax: true });
    // Closing TCP beyond the unassured: mostly closing, named by its heaviest closing state.
    const closing = snapshot({ entries: 100, unassured: 10, tcpClosing: 70, overlap: 5 }, [
      ['tcp/CLOSE_WAIT', 40],
      ['tcp/TIME_WAIT', 30],
      ['tcp/ESTABLISHED', 25],
      ['udp/UNREPLIED', 5],
    ]);
    expect(evictableVerdict(closing)).toMatchObject({
      mostly: 'tcp-closing',
      state: 'tcp/CLOSE_WAIT',
      entries: 70,
      knob: 'nf_conntrack_tcp_timeout_close_wait',
    });
  });

  it('shares are of nf_conntrack_max; without it, counts alone', () => {
    const half = snapshot({ entries: 500, unassured: 0, tcpClosing: 400, max: 1000 }, [['tcp/TIME_WAIT', 400]]);
    expect(evictableVerdict(half).text).toMatch(
      /^mostly closing TCP: 400 of 500 entries \(40\.0% of nf_conntrack_max\)/,
    );
    expect(evictableVerdict({ ...half, max: null }).text).toMatch(/^mostly closing TCP: 400 of 500 entries are in/);
    expect(evictableVerdict({ ...half, entries: 0, evictable: 0, unassured: 0, tcpClosing: 0 })).toMatchObject({
      mostly: null,
      text: 'the table is empty',
    });
  });

  it('from a sample: closing TCP is known, assured or not is not', () => {
    const tw = compositionOfSample(sample({ entries: 800, max: 1000, timeWait: { entries: 600 } }))!;
    expect(tw).toMatchObject({ entries: 800, max: 1000, evictable: null, unassured: null, tcpClosing: 600 });
    expect(evictableVerdict(tw)).toMatchObject({ mostly: 'tcp-closing', state: 'tcp/TIME_WAIT', share: null });
    const few = compositionOfSample(sample({ entries: 800, max: 1000, timeWait: { entries: 100 } }))!;
    const unknown = evictableVerdict(few);
    expect(unknown.mostly).toBeNull();
    expect(unknown.text).toMatch(/which entries are assured is unknown without a snapshot of the table/);
    expect(compositionOfSample({ ...sample(), tcpStates: null })).toBeNull();
  });

  it('names every state by class and knob', () => {
    expect(['tcp/FIN_WAIT', 'tcp/CLOSE_WAIT', 'tcp/LAST_ACK', 'tcp/TIME_WAIT', 'tcp/CLOSE'].map(classOfState)).toEqual(
      Array(5).fill('tcp-closing'),
    );
    expect(
      ['tcp/SYN_SENT', 'tcp/SYN_RECV', 'udp/UNREPLIED', 'udp/REPLIED', 'icmp/UNREPLIED'].map(classOfState),
    ).toEqual(Array(5).fill('unassured'));
    expect(['tcp/ESTABLISHED', 'udp/ASSURED', 'sctp/ASSURED'].map(classOfState)).toEqual(Array(3).fill('assured'));
    expect(['udp', 'tcp/UNKNOWN'].map(classOfState)).toEqual([null, null]);
    expect(['tcp/LAST_ACK', 'udp/REPLIED', 'icmpv6/UNREPLIED', 'gre/REPLIED'].map(knobOfState)).toEqual([
      'nf_conntrack_tcp_timeout_last_ack',
      'nf_conntrack_udp_timeout',
      'nf_conntrack_icmpv6_timeout',
      'nf_conntrack_generic_timeout',
    ]);
  });
});

describe('every command gives the same verdict', () => {
  const full = [sample({ entries: 100, max: 100, t: 0 }), sample({ entries: 100, max: 100, t: 1 })];
  const env = { max: 100, buckets: 262144, timeWaitTimeout: 120, entryBytes: 320, memoryBytes: 2 ** 30 };

  it.each([
    ['TIME_WAIT', TIME_WAIT],
    ['unreplied UDP', UNREPLIED],
    ['assured established', ESTABLISHED],
  ])('a table of %s: top, check, the live view and advise say its verdict', (_, report) => {
    const v = evictableVerdict(report);
    expect(formatTopReport(report).replace(/\n {2}/g, ' ')).toContain(
      `${v.text.charAt(0).toUpperCase()}${v.text.slice(1)}.`,
    );
    const check = evaluateCheck(full, 75, 90, { snapshot: { report } });
    expect(check.line).toContain(`: ${v.summary} |`);
    expect(check.line).toMatch(
      new RegExp(
        ` evictable=${report.evictable};;;0;100 unassured=${report.unassured};;;0;100 tcp_closing=${report.tcpClosing};;;0;100$`,
      ),
    );
    const view = renderLiveView({
      sample: full[1]!,
      fillHistory: [1],
      dropHistory: [0],
      fallback: null,
      width: 400,
      pressure: 'critical',
      top: report,
    });
    expect(view.replace(/\n {2}/g, ' ')).toContain(`! ${v.text.charAt(0).toUpperCase()}${v.text.slice(1)}.`);
    const a = adviseTuning(full, env, report);
    expect(a.verdict).toEqual(v);
    expect(a.notes).toContain(`What fills the table: ${v.text}.`);
  });

  it('advise: the class decides the knob, and never "raise the max" beside "only makes room for more"', () => {
    const dropping = [
      sample({ entries: 100, max: 100, t: 0, timeWait: { entries: 100 }, counts: { drop: 40 } }),
      sample({ entries: 100, max: 100, t: 1, timeWait: { entries: 100 }, counts: { drop: 40 } }),
    ];
    const sysctls = (r: TopReport) => adviseTuning(dropping, env, r).recommendations.map((x) => x.sysctl);
    // TIME_WAIT: the shorter timeout frees 75 of 100; 100 + 80 dropped - 75 fits in 75%? No:
    // 105 > 75, so a larger max too, sized for what is left.
    expect(sysctls(TIME_WAIT)).toEqual([
      'net.netfilter.nf_conntrack_tcp_timeout_time_wait',
      'net.netfilter.nf_conntrack_max',
    ]);
    const tw = adviseTuning(dropping, env, TIME_WAIT);
    expect(tw.recommendations[1]!.reason).toBe(
      '80 packets were dropped because the table was full (peak 100 of 100 entries), less the 75 TIME_WAIT entries a shorter timeout frees; 256 keeps that demand at about 41.0% of the new nf_conntrack_max.',
    );
    // Unreplied UDP: no sysctl at all; the verdict says who opens them and the knob.
    const udp = adviseTuning(dropping, env, UNREPLIED);
    expect(udp.recommendations).toEqual([]);
    expect(udp.sysctlConf).toBe('');
    expect(udp.notes.join(' ')).toMatch(/a larger nf_conntrack_max only makes room for more of them/);
    expect(udp.notes.join(' ')).not.toMatch(/Nothing to change/);
    // Assured connections: the max and buckets.
    expect(sysctls(ESTABLISHED)).toEqual(['net.netfilter.nf_conntrack_max']);
    for (const r of [TIME_WAIT, UNREPLIED, ESTABLISHED]) {
      const text = formatAdvice(adviseTuning(dropping, env, r));
      const raises = /nf_conntrack_max: 100 -> \d+/.test(text);
      expect(raises && /only makes room for more of them/.test(text), text).toBe(false);
    }
  });

  it('advise: a TIME_WAIT table whose shorter timeout makes room needs no larger max', () => {
    const samples = [sample({ entries: 100, max: 100, t: 0, timeWait: { entries: 100 }, counts: { drop: 5 } })];
    const a = adviseTuning(samples, env, TIME_WAIT);
    // 100 + 5 wanted - 75 freed = 30, under 75% of 100.
    expect(a.recommendations.map((r) => r.sysctl)).toEqual(['net.netfilter.nf_conntrack_tcp_timeout_time_wait']);
    expect(a.recommendations[0]!.reason).toBe(
      'TIME_WAIT entries peaked at 100 (100.0% of nf_conntrack_max); at 30 s instead of 120 s about 75 of them would be gone.',
    );
  });
});

/** TableComposition is what the verdict takes: a TopReport is one. */
const _composition: TableComposition = TIME_WAIT;
void _composition;
