/**
 * The pure parts around table snapshots, needing no privileges: option checks, the top
 * command's usage and text, the check with --full-within and a snapshot, the advice and live
 * view with a snapshot, and the top-N metrics' bounded series (the verdict itself:
 * test/verdict.test.ts).
 */
import { execFileSync } from 'node:child_process';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  ConntrackMonitor,
  registerConntrackMetrics,
  registerTopMetrics,
  topEntries,
  type TopReport,
} from '../dist/index.js';
import { adviseTuning } from '../dist/advise.js';
import { evaluateCheck } from '../dist/cli/commands/check.js';
import { formatTopReport } from '../dist/cli/commands/top.js';
import { renderLiveView } from '../dist/cli/live-view.js';
import { runCli } from './helpers/cli';
import { sample } from './helpers/sample';

/** A report as the native grouping returns it (the integration tests check those numbers). */
function report(over: Partial<TopReport> = {}): TopReport {
  return {
    time: '2026-11-27T12:00:00.000Z',
    netns: '/var/run/netns/blue',
    max: 2000,
    entries: 1000,
    evictable: 900,
    unassured: 900,
    tcpClosing: 0,
    bySource: [
      { key: '10.0.0.7', entries: 600 },
      { key: '10.0.0.8', entries: 300 },
      { key: 'other', entries: 100 },
    ],
    byDestination: [{ key: '10.96.0.10', entries: 1000 }],
    byDestinationPort: [
      { key: 'udp/53', entries: 880 },
      { key: 'tcp/443', entries: 120 },
    ],
    byState: [
      { key: 'udp/UNREPLIED', entries: 880 },
      { key: 'tcp/ESTABLISHED', entries: 100 },
      { key: 'tcp/SYN_SENT', entries: 20 },
    ],
    unavailable: {},
    ...over,
  };
}

describe('topEntries options', () => {
  it.each([
    [{ limit: 0 }, /^limit must be an integer from 1 to 1000, got 0$/],
    [{ limit: 1.5 }, /^limit must be an integer from 1 to 1000/],
    [{ timeoutMs: 10 }, /^timeoutMs must be an integer from 1000 to 600000, got 10$/],
    [{ netns: '../x' }, /^netns "..\/x" is neither an absolute path nor a namespace name/],
    [{ signal: {} }, /^signal must be an AbortSignal, got an object$/],
    [{ bogus: 1 }, /^options has an unknown option "bogus" \(known: netns, limit, timeoutMs, signal\)$/],
  ])('%j: TypeError naming the option', async (options, message) => {
    await expect(topEntries(options as never)).rejects.toThrow(TypeError);
    await expect(topEntries(options as never)).rejects.toThrow(message);
  });

  it('rejects an already aborted signal with ECANCELED, before any dump', async () => {
    await expect(topEntries({ signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: 'ConntrackError',
      code: 'ECANCELED',
    });
  });

  it('snapshotOnPressure is false or { limit }', () => {
    expect(new ConntrackMonitor({ snapshotOnPressure: {} }).options.snapshotOnPressure).toEqual({ limit: 10 });
    expect(() => new ConntrackMonitor({ snapshotOnPressure: { limit: 0 } })).toThrow(
      /snapshotOnPressure\.limit must be an integer from 1 to 1000, got 0/,
    );
    expect(() => new ConntrackMonitor({ snapshotOnPressure: true as never })).toThrow(
      /snapshotOnPressure must be false or an object \{ limit\? \}, got true/,
    );
  });
});

describe('conntrack-monitor top', () => {
  it('--help prints its usage and exits 0', async () => {
    const run = await runCli(['top', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: conntrack-monitor top \[--netns NAME\|PATH\] \[--json\] \[--limit N\]/);
    expect(run.stdout).toMatch(/--watch/);
  });

  it.each([
    [
      ['top', '--limit', '0'],
      /^conntrack-monitor top: --limit must be an integer from 1 to 1000, got 0 \(see --help\)$/,
    ],
    [['top', '--limit', 'x'], /^conntrack-monitor top: --limit expects a decimal number, got "x"/],
    [['top', '--interval', '2000'], /^conntrack-monitor top: --interval needs --watch/],
    [['top', '--watch', '--interval', '10'], /^conntrack-monitor top: --interval must be an integer from 1000/],
    [['top', '--netns', '../x'], /^conntrack-monitor top: --netns "..\/x" is neither/],
    [['top', '--backend', 'proc'], /^conntrack-monitor top: Unknown option '--backend'/],
  ])('%j: one line, exit 2', async (args, message) => {
    const run = await runCli(args);
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr.trim()).toMatch(message);
  });

  it('a path that is not a namespace: one line, exit 1', async () => {
    const run = await runCli(['top', '--netns', '/etc/hostname']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      'conntrack-monitor top: cannot read the table: enter network namespace /etc/hostname: Invalid argument (/etc/hostname is not a network namespace)',
    );
  });

  it('prints a compact table per group, with shares of nf_conntrack_max and the verdict', () => {
    const text = formatTopReport(report());
    expect(text.split('\n').slice(0, 2)).toEqual([
      '12:00:00  /var/run/netns/blue: 1000 entries (50.0% of nf_conntrack_max), 900 reclaimable (45.0% of nf_conntrack_max: 900 unassured, 0 closing TCP)',
      '  Mostly unassured: 900 of 1000 entries (45.0% of nf_conntrack_max) are unassured (most',
    ]);
    expect(text).toContain(
      '  SOURCE    ENTRIES  OF MAX\n  10.0.0.7      600   30.0%\n  10.0.0.8      300   15.0%\n  other         100    5.0%',
    );
    expect(text).toMatch(/^ {2}udp\/UNREPLIED {8}880 {3}44\.0%$/m);
    // Without nf_conntrack_max: counts, and no share at all.
    const unknown = formatTopReport(report({ max: null, unavailable: { max: 'x' } }));
    expect(unknown.split('\n')[0]).toBe(
      '12:00:00  /var/run/netns/blue: 1000 entries, 900 reclaimable (900 unassured, 0 closing TCP)',
    );
    expect(unknown).toContain('  SOURCE    ENTRIES\n  10.0.0.7      600\n');
  });
});

describe('check with --full-within and a snapshot', () => {
  const growing = (ttf: number | null, entries = 500) => ({
    ...sample({ entries, max: 1000 }),
    timeToFullSeconds: ttf,
    unavailable:
      ttf === null ? { timeToFullSeconds: 'the table is not growing (net 0 entries/s over the last 9 s)' } : {},
  });

  it('is WARNING when the forecast is within the limit, and says so in the line and perfdata', () => {
    const r = evaluateCheck([growing(700), growing(480)], 75, 90, { fullWithinS: 600 });
    expect(r.code).toBe(1);
    expect(r.line).toBe(
      'CONNTRACK WARNING - 500/1000 entries (50.0%) at peak; full in 8 min 0 s at the current growth (forecast within 600 s) | entries=500;750;900;0;1000 fill=50.00%;75;90;0;100 drops=0;;;0 time_wait=0;;;0;1000 time_to_full=480s;600;;0',
    );
    expect(evaluateCheck([growing(480)], 75, 90, { fullWithinS: 300 }).code).toBe(0);
    const flat = evaluateCheck([growing(null)], 75, 90, { fullWithinS: 600 });
    expect(flat.code).toBe(0);
    expect(flat.line).toMatch(/no time-to-full forecast: the table is not growing/);
    expect(flat.line).not.toMatch(/time_to_full=/);
  });

  it('says what the kernel can reclaim and what fills the table, from the one verdict', () => {
    const high = [growing(null, 800)];
    const evictable = evaluateCheck(high, 75, 90, { snapshot: { report: report() } });
    expect(evictable.code).toBe(1);
    expect(evictable.line).toContain(
      '; 900 reclaimable (45.0% of nf_conntrack_max: 900 unassured, 0 closing TCP): mostly unassured entries (most udp/UNREPLIED), ' +
        'which the kernel evicts for new ones: a larger nf_conntrack_max only makes room for more of them; look at who opens them, ' +
        'or shorten nf_conntrack_udp_timeout |',
    );
    expect(evictable.line).toMatch(/ evictable=900;;;0;1000 unassured=900;;;0;1000 tcp_closing=0;;;0;1000$/);
    const assured = evaluateCheck(high, 75, 90, { snapshot: { report: report({ evictable: 30, unassured: 30 }) } });
    expect(assured.line).toMatch(
      /; 30 reclaimable \(1\.5% of nf_conntrack_max: 30 unassured, 0 closing TCP\): mostly assured connections \(most tcp\/ESTABLISHED\), which the kernel never evicts: raise nf_conntrack_max \|/,
    );
    const failed = evaluateCheck(high, 75, 90, {
      snapshot: { error: 'dump the conntrack table: Operation not permitted' },
    });
    expect(failed.line).toMatch(/evictable unknown: dump the conntrack table: Operation not permitted/);
  });
});

describe('advice and live view with a snapshot', () => {
  const env = { max: 1000, buckets: 1000, timeWaitTimeout: 120, entryBytes: 320, memoryBytes: 2 ** 30 };

  it('advise: a table full of unassured entries is not fixed by a larger max; one of assured ones is', () => {
    const samples = [sample({ entries: 950, max: 1000, t: 0 }), sample({ entries: 960, max: 1000, t: 1 })];
    const a = adviseTuning(samples, env, report());
    expect(a.snapshot).toEqual(report());
    expect(a.recommendations).toEqual([]);
    expect(a.notes.join('\n')).toMatch(
      /What fills the table: mostly unassured: 900 of 1000 entries \(45\.0% of nf_conntrack_max\) .* a larger nf_conntrack_max only makes room for more of them; look at who opens them \(top source 10\.0\.0\.7: 600 entries\)/,
    );
    const b = adviseTuning(samples, env, report({ evictable: 10, unassured: 10 }));
    expect(b.recommendations.map((r) => r.sysctl)).toEqual([
      'net.netfilter.nf_conntrack_max',
      'net.netfilter.nf_conntrack_buckets',
    ]);
    expect(b.notes.join('\n')).toMatch(
      /What fills the table: mostly assured: 990 of 1000 entries \(49\.5% of nf_conntrack_max\)/,
    );
    expect(adviseTuning(samples, env).snapshot).toBeNull();
  });

  it('live view: the forecast always, the top sources and ports and the verdict under pressure', () => {
    const s = { ...sample({ entries: 800, max: 1000 }), timeToFullSeconds: 125 };
    const base = { sample: s, fillHistory: [0.8], dropHistory: [0], fallback: null, width: 120 };
    const calm = renderLiveView({ ...base, pressure: 'ok', top: report() });
    expect(calm).toMatch(/^Forecast {3}full in 2 min 5 s at the growth of the last minute$/m);
    expect(calm).not.toMatch(/TOP SOURCES/);
    const hot = renderLiveView({ ...base, pressure: 'warning', top: report() });
    expect(hot).toMatch(
      /^Snapshot {3}12:00:00: 1000 entries {2}900 reclaimable \(45\.0% of nf_conntrack_max: 900 unassured, 0 closing TCP\)$/m,
    );
    expect(hot).toMatch(/^ {2}TOP SOURCES {2}ENTRIES {2}OF MAX {4}TOP DEST PORTS {2}ENTRIES {2}OF MAX$/m);
    expect(hot).toMatch(/^ {2}10\.0\.0\.7 {9}600 {3}30\.0% {4}udp\/53 {14}880 {3}44\.0%$/m);
    expect(hot).toMatch(/^! Mostly unassured: 900 of 1000 entries/m);
    const flat = renderLiveView({
      ...base,
      sample: {
        ...s,
        timeToFullSeconds: null,
        unavailable: { timeToFullSeconds: 'a trend needs 5 s of samples; 2.0 s so far' },
      },
    });
    expect(flat).toMatch(/^Forecast {3}none: a trend needs 5 s of samples; 2\.0 s so far$/m);
  });
});

describe('top-N metrics', () => {
  const promtool = (text: string) => execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });

  it('exports the top keys while under pressure, drops keys that left the top N, nothing when ok', async () => {
    const registry = new Registry();
    const monitor = new ConntrackMonitor({ netns: 'blue', snapshotOnPressure: { limit: 2 } });
    registerConntrackMetrics(monitor, { registry });
    expect(registerTopMetrics(monitor, { registry })).toEqual([
      'nf_conntrack_top_entries',
      'nf_conntrack_evictable_entries',
      'nf_conntrack_unassured_entries',
      'nf_conntrack_tcp_closing_entries',
    ]);
    const series = async () =>
      (await registry.metrics())
        .split('\n')
        .filter((l) => /^nf_conntrack_(top|evictable|unassured|tcp_closing)_entries/.test(l));
    monitor.emit('top', report());
    expect(await series()).toEqual([]); // pressure is ok: the snapshot is stale
    monitor.emit('pressure', { level: 'warning' } as never);
    const first = await series();
    expect(first).toContain('nf_conntrack_top_entries{netns="blue",group="source",key="10.0.0.7"} 600');
    expect(first).toContain('nf_conntrack_top_entries{netns="blue",group="source",key="other"} 100');
    expect(first).toContain('nf_conntrack_top_entries{netns="blue",group="destination_port",key="udp/53"} 880');
    expect(first).toContain('nf_conntrack_top_entries{netns="blue",group="state",key="tcp/SYN_SENT"} 20');
    expect(first).toContain('nf_conntrack_evictable_entries{netns="blue"} 900');
    expect(first).toContain('nf_conntrack_unassured_entries{netns="blue"} 900');
    expect(first).toContain('nf_conntrack_tcp_closing_entries{netns="blue"} 0');
    monitor.emit('top', report({ bySource: [{ key: '10.0.0.9', entries: 1000 }] }));
    const second = await series();
    expect(second).toContain('nf_conntrack_top_entries{netns="blue",group="source",key="10.0.0.9"} 1000');
    expect(second.some((l) => l.includes('10.0.0.7'))).toBe(false);
    expect(promtool(await registry.metrics())).toBe('');
    monitor.emit('pressure', { level: 'ok' } as never);
    expect(await series()).toEqual([]);
  });

  it('exports the forecast as a gauge, absent when null', async () => {
    const registry = new Registry();
    const monitor = new ConntrackMonitor();
    registerConntrackMetrics(monitor, { registry });
    monitor.emit('sample', { ...sample(), timeToFullSeconds: 480.5 });
    expect(await registry.metrics()).toMatch(/^nf_conntrack_time_to_full_seconds 480\.5$/m);
    monitor.emit('sample', sample());
    expect(await registry.metrics()).not.toMatch(/^nf_conntrack_time_to_full_seconds /m);
  });

  it('needs a monitor that takes snapshots', () => {
    expect(() => registerTopMetrics(new ConntrackMonitor(), { registry: new Registry() })).toThrow(
      /needs a monitor made with the snapshotOnPressure option/,
    );
  });
});
