/**
 * What the README says against what the package does: every option in the options table
 * (one table, no blank line cutting it short), every command in the CLI synopsis, every
 * exported metric in the metrics table, every OpenTelemetry instrument in docs/opentelemetry.md,
 * an install that works as things stand (the package is not on the npm registry), and no
 * promise the code does not keep.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  AllNamespacesMonitor,
  ConntrackMonitor,
  DropMonitor,
  TCP_STATE_NAMES,
  registerAllNamespacesMetrics,
  registerAllNamespacesOpenTelemetryMetrics,
  registerConntrackMetrics,
  registerDropMetrics,
  registerOpenTelemetryMetrics,
  registerTopMetrics,
  type TcpStateName,
} from '../dist/index.js';
import { SAMPLE_FIGURES } from '../dist/figures.js';
import { sample } from './helpers/sample';

const ROOT = join(__dirname, '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const CLI = join(ROOT, 'dist', 'cli.js');

/** The rows of the Markdown table that starts with `header`, up to the first line that is not a row. */
function table(header: string, text = readme): string[] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith(header));
  expect(start, header).toBeGreaterThanOrEqual(0);
  const rows: string[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line);
  }
  return rows;
}

describe('README', () => {
  it('lists every option of ConntrackMonitor in one options table', () => {
    let known: string[] = [];
    try {
      new ConntrackMonitor({ bogus: 1 } as never);
    } catch (err) {
      known = /\(known: ([^)]+)\)/.exec((err as Error).message)![1]!.split(', ');
    }
    const rows = table('| option | default | meaning |').map((r) => /^\| `(\w+)`/.exec(r)?.[1]);
    console.info(`options table: ${rows.join(', ')} (the library knows ${known.join(', ')})`);
    expect(known.length).toBeGreaterThanOrEqual(7);
    expect(rows).toEqual(known);
  });

  it('lists every option of AllNamespacesMonitor in its options table', () => {
    let known: string[] = [];
    try {
      new AllNamespacesMonitor({ bogus: 1 } as never);
    } catch (err) {
      known = /\(known: ([^)]+)\)/.exec((err as Error).message)![1]!.split(', ');
    }
    const rows = table('| AllNamespacesMonitor option | default | meaning |').map((r) => /^\| `(\w+)`/.exec(r)?.[1]);
    console.info(`node-wide options table: ${rows.join(', ')} (the library knows ${known.join(', ')})`);
    expect(known.length).toBeGreaterThanOrEqual(8);
    expect([...rows].sort()).toEqual([...known].sort());
  });

  it('names every node-wide flag of watch and serve', () => {
    const synopsis = /## CLI\n\n```\n([\s\S]*?)```/.exec(readme)![1]!;
    expect(synopsis).toMatch(/^conntrack-monitor --all-namespaces /m);
    expect(synopsis).toMatch(/^conntrack-monitor serve .*--all-namespaces/m);
    for (const command of ['watch', 'serve']) {
      const help = execFileSync(process.execPath, [CLI, command, '--help'], { encoding: 'utf8' });
      const flags = [...new Set(help.match(/--(?:all-namespaces|track-states|counting|containerd-root|crio-root)\b/g))];
      expect(flags.sort(), command).toEqual(
        ['--all-namespaces', '--containerd-root', '--counting', '--crio-root', '--track-states'].sort(),
      );
      for (const flag of flags) expect(readme, flag).toContain(flag);
    }
  });

  it('has every command in the CLI synopsis, and serve --drops', () => {
    const help = execFileSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    const commands = /Other commands: ([^(]+)\(/.exec(help.replace(/\s+/g, ' '))![1]!.trim().split(', ');
    const synopsis = /## CLI\n\n```\n([\s\S]*?)```/.exec(readme)![1]!;
    for (const command of ['watch', ...commands])
      expect(synopsis, command).toMatch(
        new RegExp(`^conntrack-monitor ${command === 'watch' ? '\\[watch\\]' : command}\\s`, 'm'),
      );
    expect(synopsis).toMatch(/^conntrack-monitor serve .*--drops/m);
    expect(commands).toContain('drops');
  });

  it("names every metric the exporter exposes, the exporter's own as conntrack_monitor_*", () => {
    const registry = new Registry();
    const monitor = new ConntrackMonitor({ snapshotOnPressure: {} });
    const names = [
      ...registerConntrackMetrics(monitor, { registry }),
      ...registerTopMetrics(monitor, { registry }),
      ...registerDropMetrics(new DropMonitor(), { registry }),
      ...registerAllNamespacesMetrics(new AllNamespacesMonitor(), { registry: new Registry() }),
    ];
    const documented = table('| metric | type | from | node_exporter |').join('\n');
    // `nf_conntrack_stat_{drop,early_drop,...}_total` rows stand for their names.
    const expanded = [...documented.matchAll(/`([a-z_]+)\{([a-z_,]+)\}(_total)?`/g)].flatMap((m) =>
      m[2]!.split(',').map((part) => `${m[1]}${part}${m[3] ?? ''}`),
    );
    for (const name of names) {
      expect(
        documented.includes(`\`${name}\``) || documented.includes(`\`${name}{`) || expanded.includes(name),
        name,
      ).toBe(true);
    }
    for (const own of ['events_lost_total', 'resyncs_total', 'malformed_messages_total'])
      expect(names).toContain(`conntrack_monitor_${own}`);
    expect(names.filter((n) => /^nf_conntrack_(events_lost|resyncs|malformed)/.test(n))).toEqual([]);
  });

  it('docs/opentelemetry.md: every instrument, with its kind, unit, exported Prometheus name, prom-client name and source', async () => {
    const page = readFileSync(join(ROOT, 'docs', 'opentelemetry.md'), 'utf8');
    expect(readme).toMatch(/\]\(docs\/opentelemetry\.md\)/);
    // The names the SDK's Prometheus exporter gives each instrument, from a real export of a
    // sample in which every figure is known.
    const exporter = new PrometheusExporter({ preventServerStart: true });
    const provider = new MeterProvider({ readers: [exporter] });
    const monitor = new ConntrackMonitor();
    const names = registerOpenTelemetryMetrics(provider.getMeter('docs'), monitor);
    const nodeWide = registerAllNamespacesOpenTelemetryMetrics(provider.getMeter('docs'), new AllNamespacesMonitor());
    const tcpStates = Object.fromEntries(TCP_STATE_NAMES.map((state) => [state, 1])) as Record<TcpStateName, number>;
    monitor.emit('sample', { ...sample({ totals: { insert: 1, delete: 1 } }), timeToFullSeconds: 60, tcpStates });
    const { resourceMetrics } = await exporter.collect();
    const text = new PrometheusSerializer().serialize(resourceMetrics);
    await provider.shutdown();
    const exported = new Map(
      [...text.matchAll(/^# HELP (\S+) /gm)].map((m) => m[1]!).map((n) => [n.replace(/_total$/, ''), n]),
    );
    const kinds = { counter: 'ObservableCounter', updowncounter: 'ObservableUpDownCounter', gauge: 'ObservableGauge' };
    const rows = new Map(
      table('| OpenTelemetry instrument |', page).map((r) => {
        const cells = r.split(' | ').map((c) => c.replace(/^\|? ?`?|`? ?\|?$/g, ''));
        return [cells[0]!, cells.slice(1)];
      }),
    );
    expect([...rows.keys()]).toEqual(names);
    for (const figure of SAMPLE_FIGURES) {
      const otel = figure.openTelemetry!;
      const promClient = figure.prometheus
        ? (figure.prometheus.own ? 'conntrack_monitor_' : 'nf_conntrack_') + figure.prometheus.name
        : '—';
      const afterExport = exported.get(otel.name.replace(/\./g, '_'));
      expect(afterExport, otel.name).toBeDefined();
      expect(rows.get(otel.name), otel.name).toEqual([
        kinds[otel.instrument],
        otel.unit,
        afterExport,
        promClient,
        figure.source,
        nodeWide.includes(otel.name) ? 'yes' : 'no',
      ]);
    }
    // Every attribute the instruments use is in the attributes table.
    const attributes = table('| attribute |', page).join('\n');
    for (const a of [
      'conntrack.netns',
      'k8s.namespace.name',
      'k8s.pod.name',
      'k8s.pod.uid',
      'network.transport',
      'conntrack.tcp.state',
      'conntrack.event.type',
    ])
      expect(attributes, a).toContain(`\`${a}\``);
  });

  it('installs as things stand: from a packed tarball, not from the npm registry', () => {
    const dockerfile = readFileSync(join(ROOT, 'deploy', 'kubernetes', 'Dockerfile'), 'utf8');
    for (const [name, text] of [
      ['README.md', readme],
      ['Dockerfile', dockerfile],
    ] as const) {
      expect(text, name).not.toMatch(/npm install (--global |-g )?conntrack-monitor(@|\b(?!-))/);
      expect(text, name).toMatch(/npm pack/);
    }
    expect(readme).toMatch(/npm install \/path\/to\/conntrack-monitor-[\d.]+\.tgz/);
  });

  it('says what is and is not caught, and no longer that a monitor cannot take its process down', () => {
    expect(readme).not.toMatch(/cannot take its host process down/);
    expect(readme.replace(/\s+/g, ' ')).toMatch(
      /an exception thrown by one of your own listeners .* is rethrown on the next tick, as Node does for any emitter, and ends the process unless the application handles `uncaughtException`/,
    );
  });
});
