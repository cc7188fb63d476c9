/**
 * The deploy examples use only metric names the exporter really exposes, and the alert rules
 * pass Prometheus' own promtool (syntax and unit tests).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  AllNamespacesMonitor,
  ConntrackMonitor,
  registerAllNamespacesMetrics,
  registerConntrackMetrics,
} from '../dist/index.js';

const DEPLOY = join(__dirname, '..', 'deploy');
const exposed = new Set(registerConntrackMetrics(new ConntrackMonitor(), { registry: new Registry() }));
const nodeWide = new Set(registerAllNamespacesMetrics(new AllNamespacesMonitor(), { registry: new Registry() }));
const namesIn = (text: string) => new Set(text.match(/\bnf_conntrack_[a-z_]+\b/g) ?? []);
const promtool = (...args: string[]) =>
  execFileSync('promtool', args, { cwd: join(DEPLOY, 'prometheus'), encoding: 'utf8' });

describe('deploy examples', () => {
  it('alert rules use exposed metric names and pass promtool check and unit tests', () => {
    const rules = readFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8');
    // The expressions only: a one-line `expr: ...`, or a folded `expr: >` block.
    const exprs = [...rules.matchAll(/expr: (?:>\n((?: {10,}.*\n)+)|(.*))/g)].map((m) => m[1] ?? m[2]).join('\n');
    const used = namesIn(exprs);
    expect(used.size).toBeGreaterThanOrEqual(5);
    for (const name of used) expect(exposed, `${name} in alerts.yml`).toContain(name);
    // Every rule but the TIME_WAIT one (which needs --track-states there) works node-wide.
    for (const name of used) if (name !== 'nf_conntrack_entries_by_state') expect(nodeWide, name).toContain(name);
    expect(rules).toMatch(/\$labels\.pod_namespace \}\}\/\{\{ \$labels\.pod \}\}/);
    expect(promtool('check', 'rules', 'alerts.yml')).toMatch(/SUCCESS: 6 rules found/);
    expect(promtool('test', 'rules', 'alerts.test.yml')).toMatch(/SUCCESS/);
  });

  it('the Grafana dashboard queries only exposed metric names', () => {
    const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'dashboard.json'), 'utf8'));
    const exprs = [
      ...dashboard.panels.flatMap((p: { targets: { expr: string }[] }) => p.targets.map((t) => t.expr)),
      ...dashboard.templating.list.map((v: { query: string }) => v.query),
    ].join('\n');
    const used = namesIn(exprs);
    expect(used.size).toBeGreaterThanOrEqual(8);
    for (const name of used) expect(exposed, `${name} in dashboard.json`).toContain(name);
    const titles = dashboard.panels.map((p: { title: string }) => p.title).join('\n');
    expect(titles).toMatch(/Top namespaces by table fill/);
    expect(titles).toMatch(/Table-full drops .*by namespace/);
    expect(exprs).toMatch(/topk\(10, nf_conntrack_entries\{/);
    expect(exprs).toMatch(/sum by \(instance, netns, pod_namespace, pod\) \(rate\(nf_conntrack_stat_drop_total/);
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
