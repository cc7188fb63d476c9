/**
 * Text from elsewhere never reaches a terminal raw: a recording's command, host name, kernel,
 * namespace names and reasons in `report`'s text and `record`'s summary, namespace names and
 * errors in the --all-namespaces line view and the live view, a parser's echo of a broken file,
 * and paths in error lines. Each carries ESC sequences (a colour, an OSC window title), BEL, a
 * C1 CSI and newlines that would add fake rows; the output must hold no control character but
 * its own line breaks, and as many lines as for harmless text. Needs no privileges; a real
 * namespace named with a newline is in test/integration/hostile-files.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatNamespacesReport } from '../dist/cli/format.js';
import { renderLiveView } from '../dist/cli/live-view.js';
import { printable } from '../dist/errors.js';
import type { NamespaceReport } from '../dist/index.js';
import { runCli } from './helpers/cli';
import { sample } from './helpers/sample';

/** Control characters other than the line feeds a text output draws itself. */
// eslint-disable-next-line no-control-regex -- what must not be there
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
/** ESC ] 0 ; title BEL (retitles the window), a red colour, a C1 CSI, and a newline with a fake row. */
const EVIL = '\u001b]0;pwned\u0007\u001b[31mred\u009b2J\nFAKE ROW 9999';
const FIXTURE = join(__dirname, 'fixtures', 'recordings', 'table-full.ndjson');
const dir = mkdtempSync(join(tmpdir(), 'ctmon-escaping-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The fixture recording with `text` in every string a person reads back. */
function recordingWith(text: string): string {
  const lines = readFileSync(FIXTURE, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  for (const line of lines) {
    if (line.type === 'header') {
      line.hostname = `host${text}`;
      line.kernel = `6.1${text}`;
      line.command = ['wrk', `-H${text}`];
      line.netns = `/var/run/netns/x${text}`;
    }
    if (line.type === 'sample') {
      line.netns = `/var/run/netns/x${text}`;
      line.unavailable = { ...line.unavailable, 'timeWait.entries': `reason${text}` };
      line.timeWait = { ...line.timeWait, entries: null };
    }
    if (line.type === 'notice') line.message = `notice${text}`;
  }
  return `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`;
}

describe('printable', () => {
  it('escapes C0, DEL and C1 as JSON does, and keeps everything else', () => {
    expect(printable(EVIL)).toBe('\\u001b]0;pwned\\u0007\\u001b[31mred\\u009b2J\\nFAKE ROW 9999');
    expect(printable('tab\there\r\u0000\u007f\u0085')).toBe('tab\\there\\r\\u0000\\u007f\\u0085');
    expect(printable('plain ünïcödé → ✓ /var/run/netns/blue')).toBe('plain ünïcödé → ✓ /var/run/netns/blue');
  });
});

describe('report text of a recording with control characters in it', () => {
  it('escapes them in the command, host, kernel, namespace and reasons: no raw byte, no added line', async () => {
    const hostile = join(dir, `run${EVIL.replace(/\n/g, '')}.ndjson`);
    const harmless = join(dir, 'run.ndjson');
    writeFileSync(hostile, recordingWith(EVIL));
    writeFileSync(harmless, recordingWith(' harmless'));
    const bad = await runCli(['report', hostile]);
    const good = await runCli(['report', harmless]);
    console.info(`report text, first line: ${bad.stdout.split('\n')[0]}`);
    expect(bad.code).toBe(0);
    expect(bad.stdout).not.toMatch(RAW_CONTROL);
    expect(bad.stdout.split('\n')).toHaveLength(good.stdout.split('\n').length);
    expect(bad.stdout).not.toMatch(/^FAKE ROW/m);
    expect(bad.stdout).toContain("wrk '-H\\u001b]0;pwned\\u0007");
    expect(bad.stdout).toContain('host\\u001b]0;pwned');
    expect(bad.stdout).toContain('reason\\u001b]0;pwned');
    // --json keeps the text as it is (JSON escapes it), for programs to read back.
    const json = await runCli(['report', hostile, '--json']);
    expect(JSON.parse(json.stdout.trim()).hostname).toBe(`host${EVIL}`);
  });

  it("a parser's echo of a broken line is escaped: one line on stderr", async () => {
    const lines = readFileSync(FIXTURE, 'utf8').trim().split('\n');
    const broken = join(dir, 'broken.ndjson');
    // Not JSON, and not the last line: an error that quotes the line.
    writeFileSync(broken, [...lines.slice(0, 2), `{"type":"sample","time":"${EVIL}"`, ...lines.slice(2)].join('\n'));
    const run = await runCli(['report', broken]);
    console.info(`parser error: ${run.stderr.trim()}`);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^conntrack-monitor report: .*broken\.ndjson:3: not JSON: /);
    expect(run.stderr.slice(0, -1)).not.toMatch(RAW_CONTROL);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    const badField = join(dir, 'bad-field.ndjson');
    lines.splice(2, 1, JSON.stringify({ ...JSON.parse(lines[2]!), source: `x\u009b${EVIL}` }));
    writeFileSync(badField, lines.join('\n'));
    const field = await runCli(['report', badField]);
    expect(field.stderr).toMatch(/bad-field\.ndjson:3: source must be "netlink" or "proc", got "x\\u009b\\u001b/);
    expect(field.stderr.slice(0, -1)).not.toMatch(RAW_CONTROL);
  });
});

describe('namespace names and errors in the views', () => {
  const ZERO = sample().counts;
  const row = (over: Partial<NamespaceReport>): NamespaceReport =>
    ({
      inode: 4026532527,
      name: null,
      pid: null,
      host: false,
      pod: null,
      intervalMs: 1000,
      entries: 10,
      max: 100,
      fill: 0.1,
      counts: ZERO,
      rates: ZERO,
      totals: ZERO,
      events: null,
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
    }) as NamespaceReport;

  it('--all-namespaces lines: a name with newlines and ESC adds no row; an error quoting it neither', () => {
    const report = (name: string) => ({
      time: '2026-11-29T22:18:21.000Z',
      intervalMs: 1000,
      final: false,
      namespaces: [
        row({ host: true, inode: 4026531833, pid: 1 }),
        row({ name, inode: 4026532600 }),
        row({ name, inode: 4026532601, error: `open /var/run/netns/${name}: Permission denied` }),
      ],
    });
    const bad = formatNamespacesReport(report(EVIL));
    const good = formatNamespacesReport(report('harmless'));
    console.info(bad);
    expect(bad).not.toMatch(RAW_CONTROL);
    expect(bad.split('\n')).toHaveLength(good.split('\n').length);
    expect(bad).not.toMatch(/^FAKE ROW/m);
    expect(bad).toContain('\\u001b]0;pwned\\u0007\\u001b[31mred\\u009b2J\\nFAKE ROW 9999');
  });

  it('the live view: the namespace, the fallback reason and errors are escaped before layout', () => {
    const text = renderLiveView({
      sample: { ...sample(), netns: `/var/run/netns/x${EVIL}` },
      fillHistory: [0.1],
      dropHistory: [0],
      fallback: `fallback${EVIL}`,
      errors: [`error${EVIL}`],
      width: 100,
    });
    expect(text).not.toMatch(RAW_CONTROL);
    expect(text).not.toMatch(/^FAKE ROW/m);
    expect(text).toContain('/var/run/netns/x\\u001b]0;pwned');
    for (const line of text.split('\n')) expect([...line].length).toBeLessThanOrEqual(100);
  });
});

describe('error lines quoting a path', () => {
  it.each([
    ['watch', ['--netns', `/nonexistent/x${EVIL}`, '--duration', '0.2']],
    ['top', ['top', '--netns', `/nonexistent/x${EVIL}`]],
    ['check', ['check', '--netns', `/nonexistent/x${EVIL}`, '--observe', '0.2']],
    ['a usage error', ['--interval', `1${EVIL}`]],
    ['record', ['record', '--backend', 'proc', '--out', `/nonexistent/x${EVIL}`, '--', 'true']],
  ])('%s: one line, escaped', async (_name, args) => {
    const run = await runCli(args);
    const said = `${run.stdout}${run.stderr}`;
    console.info(`${args[0]}: exit ${run.code}: ${said.trim()}`);
    expect(run.code).not.toBe(0);
    expect(said.trim().split('\n')).toHaveLength(1);
    expect(said.slice(0, -1)).not.toMatch(RAW_CONTROL);
    expect(said).toContain('\\u001b]0;pwned\\u0007');
  });
});
