/**
 * What the README and docs/ say against what the package does: every option in the README's
 * options table (one table, no blank line cutting it short) and in docs/node.md's, every command
 * in docs/cli.md's synopsis and the README's command table, every flag of every command's --help
 * in docs/cli.md, every exported metric in the README's metrics table, every OpenTelemetry
 * instrument in docs/opentelemetry.md, an install that works as things stand (the package is not
 * on the npm registry), and no promise the code does not keep. Then the pages themselves: a
 * README of at most 500 lines with a table of contents, every docs page linked from it, and
 * every relative link reaching a file and a heading.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import GithubSlugger from 'github-slugger';
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
/** A page under docs/. */
const doc = (name: string): string => readFileSync(join(ROOT, 'docs', name), 'utf8');
const DOCS = readdirSync(join(ROOT, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .sort();
const cliPage = doc('cli.md');

/** The code block under docs/cli.md's Synopsis heading. */
function synopsis(): string {
  return /## Synopsis\n\n```\n([\s\S]*?)```/.exec(cliPage)![1]!;
}

/** The synopsis as commands: each usage (spaces collapsed) with what it does, as the README's table has them. */
function synopsisCommands(): { usage: string; what: string }[] {
  const lines = synopsis().split('\n');
  const commands: { usage: string; what: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.startsWith('conntrack-monitor ')) continue;
    // What it does follows the usage after two spaces or more, or on the next line when the usage is long.
    const same = /^(.*\S)\s{2,}([^\s[-].*)$/.exec(line);
    const [usage, what] = same ? [same[1]!, same[2]!] : [line, lines[++i]!.trim()];
    commands.push({ usage: usage.replace(/\s+/g, ' ').trim(), what });
  }
  return commands;
}

/** Outside code blocks: the text whose links and headings count. */
function prose(text: string): string {
  return text.replace(/^```[\s\S]*?^```/gm, '');
}

/** The anchors GitHub gives a page's headings. */
function anchors(text: string): Set<string> {
  const slugger = new GithubSlugger();
  return new Set(
    [...prose(text).matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      slugger.slug(m[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')),
    ),
  );
}

/** The relative links of a page (inline links and images), as written. */
function relativeLinks(text: string): string[] {
  return [...prose(text).matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
}

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

  it('lists every option of AllNamespacesMonitor in its options table, in docs/node.md', () => {
    let known: string[] = [];
    try {
      new AllNamespacesMonitor({ bogus: 1 } as never);
    } catch (err) {
      known = /\(known: ([^)]+)\)/.exec((err as Error).message)![1]!.split(', ');
    }
    const rows = table('| AllNamespacesMonitor option | default | meaning |', doc('node.md')).map(
      (r) => /^\| `(\w+)`/.exec(r)?.[1],
    );
    console.info(`node-wide options table: ${rows.join(', ')} (the library knows ${known.join(', ')})`);
    expect(known.length).toBeGreaterThanOrEqual(8);
    expect([...rows].sort()).toEqual([...known].sort());
  });

  it('names every node-wide flag of watch and serve, in docs/cli.md', () => {
    expect(synopsis()).toMatch(/^conntrack-monitor --all-namespaces /m);
    expect(synopsis()).toMatch(/^conntrack-monitor serve .*--all-namespaces/m);
    for (const command of ['watch', 'serve']) {
      const help = execFileSync(process.execPath, [CLI, command, '--help'], { encoding: 'utf8' });
      const flags = [...new Set(help.match(/--(?:all-namespaces|track-states|counting|containerd-root|crio-root)\b/g))];
      expect(flags.sort(), command).toEqual(
        ['--all-namespaces', '--containerd-root', '--counting', '--crio-root', '--track-states'].sort(),
      );
      for (const flag of flags) expect(cliPage, flag).toContain(flag);
    }
  });

  it("has every command in docs/cli.md's synopsis, and serve --drops", () => {
    const help = execFileSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    const commands = /Other commands: ([^(]+)\(/.exec(help.replace(/\s+/g, ' '))![1]!.trim().split(', ');
    for (const command of ['watch', ...commands]) {
      expect(synopsis(), command).toMatch(
        new RegExp(`^conntrack-monitor ${command === 'watch' ? '\\[watch\\]' : command}\\s`, 'm'),
      );
      expect(cliPage, command).toMatch(new RegExp(`^## ${command}$`, 'm'));
    }
    expect(synopsis()).toMatch(/^conntrack-monitor serve .*--drops/m);
    expect(commands).toContain('drops');
  });

  it("has the synopsis's commands in the README's command table, each with the same usage and purpose", () => {
    const rows = table('| command | what it does |').map((r) => {
      const m = /^\| `([^`]+)` \| (.+) \|$/.exec(r);
      expect(m, r).not.toBeNull();
      return { usage: m![1]!, what: m![2]! };
    });
    const commands = synopsisCommands();
    console.info(`README command table: ${rows.map((r) => r.usage.split(' ')[1]).join(', ')}`);
    expect(commands.length).toBeGreaterThanOrEqual(9);
    expect(rows).toEqual(commands);
  });

  it('names every flag of every command in docs/cli.md', () => {
    const help = execFileSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    const commands = /Other commands: ([^(]+)\(/.exec(help.replace(/\s+/g, ' '))![1]!.trim().split(', ');
    let count = 0;
    for (const command of ['watch', ...commands]) {
      const text = execFileSync(process.execPath, [CLI, command, '--help'], { encoding: 'utf8' });
      // Option lines: `  --flag ...` or `  -w, --warn PCT ...`.
      const flags = [...text.matchAll(/^ {2}(?:(-\w), )?(--[a-z][a-z-]*)/gm)];
      expect(flags.length, command).toBeGreaterThan(1);
      for (const [, short, long] of flags) {
        if (long === '--help') continue;
        expect(cliPage, `${command} ${long}`).toMatch(new RegExp(`${long}\\b`));
        if (short) expect(cliPage, `${command} ${short}`).toMatch(new RegExp(`\`${short}( [A-Z]+)?\`|\\[${short} `));
        count++;
      }
    }
    console.info(`docs/cli.md names every flag of ${commands.length + 1} commands (${count} command-flag pairs)`);
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

  it('says what is and is not caught (docs/library.md), and nowhere that a monitor cannot take its process down', () => {
    for (const [name, text] of [['README.md', readme], ...DOCS.map((d) => [d, doc(d)])])
      expect(text, name).not.toMatch(/cannot take its host process down/);
    expect(doc('library.md').replace(/\s+/g, ' ')).toMatch(
      /an exception thrown by one of your own listeners .* is rethrown on the next tick, as Node does for any emitter, and ends the process unless the application handles `uncaughtException`/,
    );
  });

  it('is at most 500 lines, with a table of contents near the top that reaches every section', () => {
    const lines = readme.split('\n');
    console.info(`README.md: ${lines.length - 1} lines`);
    expect(lines.length - 1).toBeLessThanOrEqual(500);
    const toc = /^## Contents\n\n((?:- .*\n)+)/m.exec(readme);
    expect(toc, 'a "## Contents" list').not.toBeNull();
    expect(readme.indexOf('## Contents')).toBeLessThan(readme.indexOf('\n## ', readme.indexOf('## Contents') + 1));
    expect(readme.slice(0, toc!.index).split('\n').length).toBeLessThan(40);
    const targets = [...toc![1]!.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]!);
    const headings = anchors(readme);
    for (const target of targets) expect(headings, `#${target}`).toContain(target);
    // Every section (## heading) but the contents themselves is in it.
    const slugger = new GithubSlugger();
    const sections = [...prose(readme).matchAll(/^#{1,6} (.+)$/gm)]
      .map((m) => ({ level: m[0].indexOf(' '), slug: slugger.slug(m[1]!) }))
      .filter((h) => h.level === 2 && h.slug !== 'contents')
      .map((h) => h.slug);
    expect(sections.length).toBeGreaterThanOrEqual(8);
    for (const section of sections) expect(targets, section).toContain(section);
  });

  it('links every page under docs/ from the README, and every page opens with what it covers and a link back', () => {
    expect(DOCS.length).toBeGreaterThanOrEqual(10);
    const linked = new Set(relativeLinks(readme).map((l) => l.split('#')[0]));
    for (const page of DOCS) {
      expect(linked, page).toContain(`docs/${page}`);
      const [title, opening] = doc(page).split('\n\n') as [string, string];
      expect(title, page).toMatch(/^# \S/);
      expect(
        relativeLinks(opening).map((l) => l.split('#')[0]),
        `${page}: its opening paragraph links back`,
      ).toContain('../README.md');
    }
  });

  it('has every relative link of the README and docs/ reaching a file, and each #anchor a heading there', () => {
    let checked = 0;
    for (const file of ['README.md', ...DOCS.map((d) => `docs/${d}`)]) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      for (const link of relativeLinks(text)) {
        const [path, anchor] = link.split('#') as [string, string | undefined];
        const target = path === '' ? join(ROOT, file) : join(ROOT, dirname(file), decodeURI(path));
        expect(existsSync(target), `${file}: ${link}`).toBe(true);
        expect(relative(ROOT, target).startsWith('..'), `${file}: ${link} leaves the repository`).toBe(false);
        if (anchor !== undefined) {
          expect(target.endsWith('.md'), `${file}: ${link}`).toBe(true);
          expect(anchors(readFileSync(target, 'utf8')), `${file}: ${link}`).toContain(anchor);
        }
        checked++;
      }
    }
    console.info(`${checked} relative links checked`);
    expect(checked).toBeGreaterThan(50);
  });
});
