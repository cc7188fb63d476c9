import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { LiveView, renderLiveView } from '../dist/cli/live-view.js';
import { evaluateCheck } from '../dist/cli/commands/check.js';
import { formatNamespacesReport } from '../dist/cli/format.js';
import { formatSampleLine } from '../dist/cli/format.js';
import { counters, namespaceReport, sample } from './helpers/sample';

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
    expect(text).toMatch(/Table +\[█{10}░{9}\] 50\.0% {2}500 \/ 1,000 entries\n {11}\(buckets 1,024\)/);
    expect(text).toMatch(/insert 1,234\/s {2}delete 0\/s {2}drop 0\/s/);
    expect(text).toMatch(/TIME_WAIT {2}100 entries \(10\.0% of nf_conntrack_max\)\n {11}timeout 120 s/);
    expect(text).toMatch(/Fill {2}▁▃▅▆█/);
    expect(text).toMatch(/Drops ▁▁█▁ {2}\(peak 4 per interval\)/);
    // A drop two intervals ago stays on screen, said to be past.
    expect(text.replace(/\n {2}/g, ' ')).toMatch(
      /! TABLE FULL: 4 packets dropped in the last 4\.0 s [^!]*None in the last interval\./,
    );
    const calm = renderLiveView({ sample: s, fillHistory: [0.5], dropHistory: [0], fallback: null, width: 60 });
    expect(calm).toMatch(/No warnings\./);
  });

  it('says that new connections are being dropped while they are, and will soon be before', () => {
    const full = sample({ entries: 1319, max: 1000, counts: { drop: 100 } });
    const text = renderLiveView({ sample: full, fillHistory: [1.319], dropHistory: [100], fallback: null, width: 100 });
    const flat = text.replace(/\n {2}/g, ' ');
    expect(flat).toMatch(
      /! TABLE FULL: 100 packets dropped in the last 1\.0 s \("nf_conntrack: table full, dropping packet"\)\. New connections are being dropped now\./,
    );
    expect(flat).toMatch(/! The table is 131\.9% full: new connections are being dropped\./);
    expect(flat).not.toMatch(/soon/);
    const nearly = sample({ entries: 950, max: 1000 });
    const before = renderLiveView({
      sample: nearly,
      fillHistory: [0.95],
      dropHistory: [0],
      fallback: null,
      width: 100,
    });
    expect(before.replace(/\n {2}/g, ' ')).toMatch(
      /! The table is 95\.0% full: new connections will soon be dropped\./,
    );
  });

  it('gives TIME_WAIT one percentage, of nf_conntrack_max, in its row and in its warning (the verdict)', () => {
    const s = sample({ entries: 915, max: 1000, timeWait: { entries: 522 } });
    const text = renderLiveView({ sample: s, fillHistory: [0.915], dropHistory: [0], fallback: null, width: 120 });
    const shares = [...text.matchAll(/(\d+\.\d)% of\s+nf_conntrack_max/g)].map((m) => m[1]);
    expect(text).toMatch(/TIME_WAIT {2}522 entries \(52\.2% of nf_conntrack_max\)/);
    expect(text.replace(/\n {2}/g, ' ')).toContain(
      '! Mostly closing TCP: 522 of 915 entries (52.2% of nf_conntrack_max) are in FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT or CLOSE (most tcp/TIME_WAIT)',
    );
    expect(text.replace(/\n {2}/g, ' ')).toMatch(/a shorter nf_conntrack_tcp_timeout_time_wait frees them sooner\.$/m);
    expect(shares).toEqual(['52.2', '52.2']);
    expect(text).not.toMatch(/57(\.\d)?%/); // 522/915, the share of the entries, is not shown
  });

  it('keeps the events-mode warning on screen in every frame, and not on /proc', () => {
    const auto = { ...sample(), eventsMode: 2 as const };
    for (let frame = 0; frame < 3; frame++) {
      const text = renderLiveView({ sample: auto, fillHistory: [0.1], dropHistory: [0], fallback: null, width: 80 });
      expect(text.replace(/\n {2}/g, ' ')).toMatch(/! nf_conntrack_events is 2 \(the kernel default\)/);
      expect(text).not.toMatch(/No warnings/);
    }
    const proc = { ...sample(), eventsMode: 2 as const, source: 'proc' as const, events: null };
    const text = renderLiveView({ sample: proc, fillHistory: [0.1], dropHistory: [0], fallback: 'EPERM', width: 80 });
    expect(text).not.toMatch(/nf_conntrack_events/);
  });

  it('lays every width from 60 to 200 out without a line longer than the width or a word cut', () => {
    const busy = {
      ...sample({
        entries: 1319,
        max: 1000,
        counts: { insert: 12345, delete: 3, drop: 100, earlyDrop: 2, insertFailed: 7 },
        timeWait: { entries: 700 },
        events: { received: 123456, lost: 5, lostTotal: 50, resyncs: 3 },
      }),
      eventsMode: 2 as const,
      // The longest word must fit a line: a namespace path of 49 characters, 59 with " (netlink)".
      netns: '/var/run/netns/ctmon-states-4000123-0123abcd-xyz',
    };
    // Under pressure, with what fills the table: IPv6 sources make the side-by-side block wide.
    const top = {
      time: '2026-11-27T12:00:00.000Z',
      netns: busy.netns,
      max: 1000,
      entries: 1319,
      evictable: 1200,
      unassured: 1200,
      tcpClosing: 0,
      unavailable: {},
      bySource: [
        { key: 'fd00:1234:5678:9abc::17', entries: 700 },
        { key: '10.17.0.4', entries: 500 },
        { key: 'other', entries: 119 },
      ],
      byDestination: [{ key: '10.96.0.10', entries: 1319 }],
      byDestinationPort: [
        { key: 'udp/53', entries: 1200 },
        { key: 'tcp/443', entries: 119 },
      ],
      byState: [{ key: 'udp/UNREPLIED', entries: 1200 }],
    };
    const render = (width: number) =>
      renderLiveView({
        pressure: 'critical',
        top,
        sample: busy,
        fillHistory: Array.from({ length: 10 }, (_, i) => i / 10),
        dropHistory: Array.from({ length: 10 }, (_, i) => i * 10),
        fallback: 'EPERM (ctnetlink needs CAP_NET_ADMIN in the namespace)',
        errors: ['stats request failed in this interval: EBUSY, the next sample includes its changes'],
        width,
      });
    // Words, less the bar and sparklines whose length is the width's business.
    const words = (text: string) =>
      text
        .split(/\s+/)
        .filter((w) => w && !/[█░▁▂▃▄▅▆▇]/.test(w))
        .sort();
    const reference = words(render(200));
    const longest: number[] = [];
    for (let width = 60; width <= 200; width++) {
      const lines = render(width).split('\n');
      longest.push(Math.max(...lines.map((l) => [...l].length)));
      for (const line of lines) expect([...line].length, `width ${width}: ${line}`).toBeLessThanOrEqual(width);
      expect(words(render(width)), `width ${width}`).toEqual(reference);
    }
    console.info(
      `live view, widths 60..200: longest line ${longest[0]} at 60, ${longest[10]} at 70, ${longest.at(-1)} at 200`,
    );
  });

  it('redraws for the new width when the terminal is resized', () => {
    const out = Object.assign(new EventEmitter(), {
      columns: 130,
      written: [] as string[],
      write(text: string) {
        this.written.push(text);
        return true;
      },
    });
    const view = new LiveView(out as unknown as NodeJS.WriteStream);
    view.open();
    view.update(sample({ entries: 500, max: 1000 }));
    const bar = () => /\[([█░]+)\]/.exec(out.written.at(-1)!)![1]!.length;
    expect(bar()).toBe(50);
    out.columns = 60;
    out.emit('resize');
    expect(bar()).toBe(19);
    for (const line of out.written.at(-1)!.split('\n'))
      expect([...line.replace('\x1b[H\x1b[J', '')].length).toBeLessThanOrEqual(60);
    view.close();
    const frames = out.written.length;
    out.emit('resize');
    expect(out.written.length).toBe(frames); // no redraw after close
  });

  it('says when events were lost and that insert/delete are unknown; so does the one-line format', () => {
    const lossy = sample({
      counts: { insert: null, delete: null },
      events: {
        path: 'netlink',
        pathReason: 'the eBPF filter needs CAP_BPF',
        lost: 1500,
        lostTotal: 2000,
        lostSince: '2026-11-27T12:00:00.500Z',
      },
    });
    const s = { ...lossy, rates: { ...lossy.rates, insert: null, delete: null } };
    const text = renderLiveView({ sample: s, fillHistory: [0.1], dropHistory: [0], fallback: null, width: 100 });
    expect(text).toMatch(/insert n\/a {2}delete n\/a/);
    expect(text).toMatch(/Events +0 read this interval {2}lost 1,500 \(2,000 in all since 12:00:00\)/);
    // Warnings wrap between words at the width: compare them with their lines joined.
    expect(text.replace(/\n +/g, ' ')).toMatch(
      /! EVENTS LOST: 1,500 events could not be queued .* insert and delete are unknown in this interval/,
    );
    expect(formatSampleLine(s)).toMatch(/insert n\/a {2}delete n\/a .* LOST 1500 events: insert\/delete unknown$/);
  });

  it('on the eBPF path, says the kernel counted new and destroyed entries, and what was read besides', () => {
    // 95 NEW and 93 DESTROY counted by the filter in the kernel; none of them queued to the
    // reader, which read only the TCP state changes (here none).
    const s = sample({ counts: { insert: 95, delete: 93 }, events: { received: 0, updates: 0 } });
    const text = renderLiveView({ sample: s, fillHistory: [0.1], dropHistory: [0], fallback: null, width: 160 });
    expect(text).toMatch(/^Rates {6}insert 95\/s {2}delete 93\/s/m);
    expect(text).toMatch(
      /^Events {5}counted in the kernel \(eBPF\): 95 new, 93 destroyed {2}0 TCP state changes read {2}lost 0 \(0 in all\) {2}resyncs 0$/m,
    );
    expect(text).not.toMatch(/this interval/);
  });

  it('says the forecast in plain words while it has too little history', () => {
    const s = { ...sample(), unavailable: { timeToFullSeconds: 'a trend needs 5 s of samples; 2.0 s so far' } };
    const text = renderLiveView({ sample: s, fillHistory: [0.1], dropHistory: [0], fallback: null, width: 100 });
    expect(text).toMatch(/^Forecast {3}none: a trend needs 5 s of samples; 2\.0 s so far$/m);
    expect(text).not.toMatch(/n\/a|needs 5 over/);
  });

  it('says q quits only when it does (stdin is a terminal)', () => {
    const v = { sample: sample(), fillHistory: [0.1], dropHistory: [0], fallback: null, width: 80 };
    expect(renderLiveView(v).split('\n').at(-1)).toBe('Ctrl-C to quit.');
    expect(
      renderLiveView({ ...v, quitKey: true })
        .split('\n')
        .at(-1),
    ).toBe('q or Ctrl-C to quit.');
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
      line: 'CONNTRACK OK - 100/1000 entries (10.0%) at peak | entries=100;750;900;0;1000 fill=10.00%;75;90;0;100 drops=0;;;0 time_wait=0;;;0;1000',
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
    // A count within the observation window, not a counter: no 'c' unit.
    expect(r.line).toMatch(/ drops=7;;;0 /);
    expect(evaluateCheck([sample({ entries: null })], 75, 90)).toMatchObject({ code: 3 });
  });
});

describe('node-wide view (--all-namespaces)', () => {
  const row = namespaceReport;

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
    expect(lines[0]).toBe('22:18:21  3 network namespaces, 1 of them pods  nf_conntrack_max 262144');
    expect(lines[1]).toMatch(/^ {2}POD \/ NETNS +INODE +PID +ENTRIES +MAX +FILL +DROP +INS_FAIL +INSERT +LOST$/);
    expect(lines[2]).toMatch(
      /^ {2}shop\/web-7d9f8b6c5-x2x9q +4026532453 +- +262144 +262144 +100\.0% +310\/s +2\.5\/s +320\/s +0$/,
    );
    expect(lines[3]).toMatch(/^ {2}\(host\) +4026531833 +1 +120 /);
    expect(lines[4]).toMatch(/^ {2}blue +4026532527 +- +error /);
    expect(lines[5]).toBe('  blue (4026532527): enter network namespace: Operation not permitted');
  });

  it('fits every width from 60 to 200 columns: titles cut with …, then INODE/PID, MAX and LOST give way', () => {
    const report = {
      time: '2026-11-29T22:18:21.000Z',
      intervalMs: 1000,
      final: false,
      namespaces: [
        row({ host: true, inode: 4026531833, pid: 1, entries: 120, fill: 120 / 262144 }),
        row({
          name: 'cni-77ab01',
          inode: 4026532611,
          pid: 28036,
          pod: { namespace: 'kube-system', name: 'coredns-5d78c9869d-4xk2p', uid: 'u' },
          entries: 4210,
          fill: 4210 / 262144,
        }),
        row({
          name: 'blue',
          inode: 4026532527,
          error: 'enter network namespace: Operation not permitted',
          events: null,
        }),
      ],
    };
    const full = formatNamespacesReport(report);
    const fullWidth = Math.max(...full.split('\n').map((l) => [...l].length));
    for (let width = 60; width <= 200; width++) {
      const text = formatNamespacesReport(report, width);
      const lines = text.split('\n');
      for (const line of lines) expect([...line].length, `${width}: ${line}`).toBeLessThanOrEqual(width);
      if (width >= fullWidth) expect(text).toBe(full);
      expect(text).toMatch(/kube-system\/cor/); // the pod's name, cut at worst to 16 columns
      expect(text).toMatch(/ENTRIES .*FILL +DROP +INS_FAIL +INSERT/);
      expect(text.replace(/\n +/g, ' ')).toMatch(
        /blue \(4026532527\): enter network namespace: Operation not permitted/,
      );
    }
    console.info(`node view at 60 columns:\n${formatNamespacesReport(report, 60)}`);
  });
});
