import { describe, expect, it } from 'vitest';
import { renderLiveView } from '../dist/cli/live-view.js';
import { evaluateCheck } from '../dist/cli/commands/check.js';
import { formatNamespacesReport } from '../dist/cli/format.js';
import type { NamespaceReport } from '../dist/index.js';
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

describe('node-wide view (--all-namespaces)', () => {
  const counters = (v: number | null) =>
    Object.fromEntries(
      [
        'insert',
        'delete',
        'drop',
        'earlyDrop',
        'insertFailed',
        'invalid',
        'icmpError',
        'clashResolve',
        'chainTooLong',
        'searchRestart',
      ].map((k) => [k, v]),
    ) as NamespaceReport['counts'];
  const row = (over: Partial<NamespaceReport>): NamespaceReport => ({
    inode: 4026532000,
    name: null,
    pid: null,
    host: false,
    pod: null,
    intervalMs: 1000,
    entries: 10,
    max: 262144,
    fill: 10 / 262144,
    counts: counters(0),
    rates: counters(0),
    totals: counters(0),
    events: { counting: 'ebpf', countingFallback: null, received: 0, lost: 0, lostTotal: 0, receiveBufferBytes: 0 },
    timeWait: null,
    tcpStates: null,
    protocols: null,
    drops: 0,
    dropRate: 0,
    inserts: 0,
    insertRate: 0,
    totalDrops: 0,
    source: 'netlink',
    error: null,
    unavailable: {},
    ...over,
  });

  it('names pods by namespace/name, fullest table first, with drop and insert-race rates', () => {
    const text = formatNamespacesReport({
      time: '2026-11-29T22:18:21.000Z',
      intervalMs: 1000,
      final: false,
      namespaces: [
        row({ host: true, inode: 4026531833, pid: 1, entries: 120, fill: 120 / 262144 }),
        row({
          name: 'cni-3c6f9a1e',
          inode: 4026532453,
          pod: { namespace: 'shop', name: 'web-7d9f8b6c5-x2x9q', uid: 'u' },
          entries: 262144,
          fill: 1,
          rates: { ...counters(0), drop: 310, insertFailed: 2.5, insert: 320 },
        }),
        row({
          name: 'blue',
          inode: 4026532527,
          error: 'enter network namespace: Operation not permitted',
          fill: null,
          entries: null,
          events: null,
        }),
      ],
    });
    const lines = text.split('\n');
    expect(lines[0]).toBe('22:18:21  3 network namespaces, 1 of them pods');
    expect(lines[1]).toMatch(/^ {2}POD \/ NETNS +INODE +PID +ENTRIES +MAX +FILL +DROP +INS_FAIL +INSERT +LOST$/);
    expect(lines[2]).toMatch(
      /^ {2}shop\/web-7d9f8b6c5-x2x9q +4026532453 +- +262144 +262144 +100\.0% +310\/s +2\.5\/s +320\/s +0$/,
    );
    expect(lines[3]).toMatch(/^ {2}\(host\) +4026531833 +1 +120 /);
    expect(lines[4]).toMatch(/^ {2}blue +4026532527 +- +error /);
    expect(lines[5]).toBe('  blue (4026532527): enter network namespace: Operation not permitted');
  });
});
