/**
 * The Prometheus exposition from a private registry: names, types, labels, omissions, and
 * Prometheus' own `promtool check metrics` on the text.
 */
import { execFileSync } from 'node:child_process';
import { Registry, register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ConntrackMonitor, registerConntrackMetrics, type ConntrackSample } from '../dist/index.js';
import { procFixtureSamples } from './helpers/fixtures';
import { sample } from './helpers/sample';

async function exposition(
  s: ConntrackSample | null,
  options: { netns?: string; labels?: Record<string, string> } = {},
) {
  const registry = new Registry();
  const monitor = new ConntrackMonitor(options.netns ? { netns: options.netns } : {});
  const names = registerConntrackMetrics(monitor, { registry, labels: options.labels });
  if (s) monitor.emit('sample', s);
  return { text: await registry.metrics(), names };
}

function promtool(text: string): string {
  return execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
}

const promtoolAvailable = (() => {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.CI === 'true') throw new Error('promtool (Debian package prometheus) is required under CI=true');
    return false;
  }
})();

describe('registerConntrackMetrics', () => {
  it('exposes gauges, _total counters and labelled series from the latest sample', async () => {
    const s = sample({
      entries: 750,
      max: 1000,
      timeWait: { entries: 600 },
      // 3 events lost since start: insert/delete totals are unknown, events received are not.
      totals: { insert: null, delete: null, drop: 7, earlyDrop: 1 },
      events: { newTotal: 5000, updateTotal: 12, destroyTotal: 4250, lostTotal: 3, resyncs: 2, malformedTotal: 1 },
    });
    const { text } = await exposition(s, { netns: '/var/run/netns/blue', labels: { node: 'web-1' } });
    expect(text).toMatch(/^# TYPE nf_conntrack_entries gauge$/m);
    expect(text).toMatch(/^nf_conntrack_entries\{node="web-1",netns="blue"\} 750$/m);
    expect(text).toMatch(/^nf_conntrack_entries_limit\{node="web-1",netns="blue"\} 1000$/m);
    expect(text).toMatch(/^# TYPE nf_conntrack_stat_drop_total counter$/m);
    expect(text).toMatch(/^nf_conntrack_stat_drop_total\{node="web-1",netns="blue"\} 7$/m);
    expect(text).toMatch(/^nf_conntrack_events_total\{node="web-1",netns="blue",type="new"\} 5000$/m);
    expect(text).toMatch(/^nf_conntrack_events_total\{node="web-1",netns="blue",type="destroy"\} 4250$/m);
    expect(text).toMatch(/^nf_conntrack_events_total\{node="web-1",netns="blue",type="update"\} 12$/m);
    // The exporter's own counters are named as the exporter's, not as kernel conntrack data.
    expect(text).toMatch(/^# TYPE conntrack_monitor_events_lost_total counter$/m);
    expect(text).toMatch(/^conntrack_monitor_events_lost_total\{node="web-1",netns="blue"\} 3$/m);
    expect(text).toMatch(/^conntrack_monitor_resyncs_total\{node="web-1",netns="blue"\} 2$/m);
    expect(text).toMatch(/^conntrack_monitor_malformed_messages_total\{node="web-1",netns="blue"\} 1$/m);
    expect(text).toMatch(/^conntrack_monitor_samples_missed_total\{node="web-1",netns="blue"\} 0$/m);
    expect(text).not.toMatch(/^nf_conntrack_(events_lost|resyncs)/m);
    expect(text).toMatch(
      /^nf_conntrack_entries_by_state\{node="web-1",netns="blue",protocol="tcp",state="time_wait"\} 600$/m,
    );
    expect(text).toMatch(/^nf_conntrack_entries_by_state\{node="web-1",netns="blue",protocol="udp",state=""\} 0$/m);
    // node_exporter's dead counters are not exported.
    expect(text).not.toMatch(/searched|_stat_new|stat_insert_total|stat_delete|stat_ignore/);
    if (promtoolAvailable) expect(promtool(text)).toBe('');
  });

  it('exports nothing before the first sample, and never touches the global registry', async () => {
    const { text, names } = await exposition(null);
    expect(text.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([]);
    expect(names).toContain('nf_conntrack_entries');
    expect(await globalRegistry.metrics()).not.toMatch(/nf_conntrack/);
  });

  it('omits what the proc backend cannot know instead of exporting zeros', async () => {
    const { text } = await exposition((await procFixtureSamples('no-stat'))[0]!);
    expect(text).toMatch(/^nf_conntrack_entries 5000$/m);
    expect(text).toMatch(/^nf_conntrack_entries_limit 262144$/m);
    for (const absent of [
      'nf_conntrack_stat_drop_total ',
      'nf_conntrack_events_total{',
      'nf_conntrack_entries_by_state{',
      'conntrack_monitor_events_lost_total ',
      'conntrack_monitor_resyncs_total ',
      'conntrack_monitor_malformed_messages_total ',
      'conntrack_monitor_samples_missed_total ',
    ]) {
      expect(text).not.toContain(`\n${absent}`);
    }
    if (promtoolAvailable) expect(promtool(text)).toBe('');
  });

  it('rejects a missing registry and a bad prefix', () => {
    const m = new ConntrackMonitor();
    expect(() => registerConntrackMetrics(m, {} as never)).toThrow(/needs a prom-client Registry/);
    expect(() => registerConntrackMetrics(m, { registry: new Registry(), prefix: '9x' })).toThrow(
      /not a valid metric name prefix/,
    );
    expect(() => registerConntrackMetrics(m, { registry: new Registry(), monitorPrefix: 'a-b' })).toThrow(
      /prefix 'a-b' is not a valid metric name prefix/,
    );
  });

  it('takes other prefixes, so that two monitors can share a registry', async () => {
    const registry = new Registry();
    const a = registerConntrackMetrics(new ConntrackMonitor(), { registry });
    const b = registerConntrackMetrics(new ConntrackMonitor({ netns: 'blue' }), {
      registry,
      prefix: 'blue_nf_conntrack_',
      monitorPrefix: 'blue_conntrack_monitor_',
    });
    expect(a).toContain('conntrack_monitor_events_lost_total');
    expect(b).toContain('blue_conntrack_monitor_events_lost_total');
    expect(b).toContain('blue_nf_conntrack_entries');
    expect(new Set([...a, ...b]).size).toBe(a.length + b.length);
  });
});
