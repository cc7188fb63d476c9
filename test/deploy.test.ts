/**
 * The deploy examples use only metric names the exporter really exposes, and the alert rules
 * pass Prometheus' own promtool (syntax and unit tests).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  AllNamespacesMonitor,
  ConntrackMonitor,
  DropMonitor,
  registerAllNamespacesMetrics,
  registerConntrackMetrics,
  registerDropMetrics,
} from '../dist/index.js';

const DEPLOY = join(__dirname, '..', 'deploy');
const registry = new Registry();
const exposed = new Set([
  ...registerConntrackMetrics(new ConntrackMonitor(), { registry }),
  ...registerDropMetrics(new DropMonitor(), { registry }),
]);
const nodeWide = new Set(registerAllNamespacesMetrics(new AllNamespacesMonitor(), { registry: new Registry() }));
/** The exporter's metric names in a text: the kernel's (nf_conntrack_*) and its own (conntrack_monitor_*). */
const namesIn = (text: string) => new Set(text.match(/(?<![a-z_])(?:nf_conntrack|conntrack_monitor)_[a-z_]+\b/g) ?? []);
const promtool = (...args: string[]) =>
  execFileSync('promtool', args, { cwd: join(DEPLOY, 'prometheus'), encoding: 'utf8' });
const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'dashboard.json'), 'utf8'));
type Panel = { title: string; targets: { expr: string }[] };
/** A dashboard expression as Prometheus gets it once Grafana has put its variables in. */
const asSent = (expr: string) =>
  expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*').replaceAll('$netns', '.*');

describe('deploy examples', () => {
  it('alert rules use exposed metric names and pass promtool check and unit tests', () => {
    const rules = readFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8');
    // The expressions only: a one-line `expr: ...`, or a folded `expr: >` block.
    const exprs = [...rules.matchAll(/expr: (?:>\n((?: {10,}.*\n)+)|(.*))/g)].map((m) => m[1] ?? m[2]).join('\n');
    const used = namesIn(exprs);
    expect(used.size).toBeGreaterThanOrEqual(5);
    for (const name of used) expect(exposed, `${name} in alerts.yml`).toContain(name);
    // Every rule but the TIME_WAIT one (which needs --track-states there) and the forecast
    // (one namespace's) works node-wide.
    for (const name of used)
      if (!['nf_conntrack_entries_by_state', 'nf_conntrack_time_to_full_seconds'].includes(name))
        expect(nodeWide, name).toContain(name);
    expect(rules).toMatch(/\$labels\.pod_namespace \}\}\/\{\{ \$labels\.pod \}\}/);
    // The exporter's own counter, not a kernel conntrack metric.
    expect(used).toContain('conntrack_monitor_events_lost_total');
    expect(promtool('check', 'rules', 'alerts.yml')).toMatch(/SUCCESS: 7 rules found/);
    expect(promtool('test', 'rules', 'alerts.test.yml')).toMatch(/SUCCESS/);
  });

  it("records node_exporter's conntrack names from the exporter's, and node_exporter's alerts work on them", () => {
    const rules = readFileSync(join(DEPLOY, 'prometheus', 'node-exporter.yml'), 'utf8');
    const pairs = [...rules.matchAll(/- record: (\S+)\n\s+expr: (\S+)/g)].map((m) => [m[1], m[2]]);
    expect(pairs).toEqual([
      ['node_nf_conntrack_entries', 'nf_conntrack_entries'],
      ['node_nf_conntrack_entries_limit', 'nf_conntrack_entries_limit'],
      ['node_nf_conntrack_stat_drop', 'nf_conntrack_stat_drop_total'],
      ['node_nf_conntrack_stat_early_drop', 'nf_conntrack_stat_early_drop_total'],
      ['node_nf_conntrack_stat_insert_failed', 'nf_conntrack_stat_insert_failed_total'],
      ['node_nf_conntrack_stat_invalid', 'nf_conntrack_stat_invalid_total'],
      ['node_nf_conntrack_stat_search_restart', 'nf_conntrack_stat_search_restart_total'],
    ]);
    for (const [, ours] of pairs) expect(exposed).toContain(ours);
    expect(promtool('check', 'rules', 'node-exporter.yml')).toMatch(/SUCCESS: 7 rules found/);
    expect(promtool('test', 'rules', 'node-exporter.test.yml')).toMatch(/SUCCESS/);
  });

  it('the Grafana dashboard queries only exposed metric names, in expressions Prometheus parses', () => {
    const panelExprs: string[] = dashboard.panels.flatMap((p: Panel) => p.targets.map((t) => t.expr));
    const exprs = [...panelExprs, ...dashboard.templating.list.map((v: { query: string }) => v.query)].join('\n');
    const used = namesIn(exprs);
    expect(used.size).toBeGreaterThanOrEqual(10);
    for (const name of used) expect(exposed, `${name} in dashboard.json`).toContain(name);
    const titles = dashboard.panels.map((p: Panel) => p.title).join('\n');
    expect(titles).toMatch(/Top namespaces by table fill/);
    expect(titles).toMatch(/Table-full drops and insert races per namespace/);
    expect(titles).toMatch(/Top namespaces by TIME_WAIT share/);
    expect(exprs).toMatch(
      /topk\(10, sum without \(protocol, state\) \(nf_conntrack_entries_by_state\{[^}]*state="time_wait"\}\)/,
    );
    expect(exprs).toMatch(/topk\(10, nf_conntrack_entries\{/);
    expect(exprs).toMatch(/sum by \(instance, netns, pod_namespace, pod\) \(rate\(nf_conntrack_stat_drop_total/);
    // promtool parses every panel's query (as a recording rule).
    const dir = mkdtempSync(join(tmpdir(), 'ctmon-dashboard-'));
    try {
      const rules = panelExprs.map((e, i) => `      - record: panel_${i}\n        expr: ${JSON.stringify(asSent(e))}`);
      writeFileSync(join(dir, 'panels.yml'), `groups:\n  - name: panels\n    rules:\n${rules.join('\n')}\n`);
      expect(execFileSync('promtool', ['check', 'rules', join(dir, 'panels.yml')], { encoding: 'utf8' })).toMatch(
        new RegExp(`SUCCESS: ${panelExprs.length} rules found`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the Grafana dashboard shows table-full drops by namespace, per second, from serve --drops', () => {
    const panel = dashboard.panels.find((p: Panel) => /by namespace/.test(p.title)) as Panel;
    expect(panel.title).toBe('Table-full drops by namespace (eBPF: serve --drops)');
    const expr = asSent(panel.targets[0]!.expr);
    // Evaluated by promtool on two namespaces' series: 60 and 6 drops a minute, per second.
    const dir = mkdtempSync(join(tmpdir(), 'ctmon-dashboard-'));
    try {
      writeFileSync(join(dir, 'none.yml'), 'groups: []\n');
      writeFileSync(
        join(dir, 'test.yml'),
        `rule_files: [none.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'nf_conntrack_table_full_drops_total{instance="node-1",netns="pod-a"}'
        values: '0+60x10'
      - series: 'nf_conntrack_table_full_drops_total{instance="node-1",netns="inode:4026532527"}'
        values: '0+6x10'
    promql_expr_test:
      - expr: ${JSON.stringify(expr)}
        eval_time: 5m
        exp_samples:
          - labels: '{instance="node-1",netns="pod-a"}'
            value: 1
          - labels: '{instance="node-1",netns="inode:4026532527"}'
            value: 0.1
`,
      );
      expect(execFileSync('promtool', ['test', 'rules', 'test.yml'], { cwd: dir, encoding: 'utf8' })).toMatch(
        /SUCCESS/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the DaemonSet serves every namespace of the node, with what that needs, and is scraped by annotation', () => {
    const yaml = readFileSync(join(DEPLOY, 'kubernetes', 'daemonset.yaml'), 'utf8');
    expect(yaml).toMatch(/hostNetwork: true/);
    expect(yaml).toMatch(/hostPID: true/);
    expect(yaml).toMatch(/add: \["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "BPF"\]/);
    expect(yaml).toMatch(/prometheus\.io\/scrape: "true"/);
    expect(yaml).toMatch(/prometheus\.io\/port: "9465"/);
    expect(yaml).toMatch(/args: \["serve", "--all-namespaces", "--listen", "\$\(NODE_IP\):9465"\]/);
    // The runtimes' state read-only, where the defaults of --containerd-root and --crio-root look.
    expect(yaml).toMatch(/mountPath: \/var\/run\/netns, readOnly: true, mountPropagation: HostToContainer/);
    expect(yaml).toMatch(/mountPath: \/run\/containerd\/io\.containerd\.runtime\.v2\.task, readOnly: true/);
    expect(yaml).toMatch(/mountPath: \/run\/containers\/storage, readOnly: true/);
  });
});
