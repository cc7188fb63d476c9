/**
 * The record and report commands' usage, and report on the real fixture recording (text, JSON
 * and HTML); needs no privileges. The record command against the kernel is in
 * test/integration/record.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli';

const FIXTURE = join(__dirname, 'fixtures', 'recordings', 'table-full.ndjson');
const kernel = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'recordings', 'table-full.kernel.json'), 'utf8'));
const dir = mkdtempSync(join(tmpdir(), 'ctmon-report-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('record and report usage', () => {
  it.each([
    ['record', /^Usage: conntrack-monitor record --out FILE/],
    ['report', /^Usage: conntrack-monitor report FILE\.\.\./],
  ])('%s --help prints its usage and exits 0', async (command, usage) => {
    const run = await runCli([command, '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(usage);
    expect(run.stdout).toMatch(/Exit status/);
  });

  it.each([
    [['record'], /^conntrack-monitor record: --out FILE is required \(see --help\)$/],
    [['record', '--out', 'x', '--'], /^conntrack-monitor record: nothing to run after -- \(see --help\)$/],
    [['record', '--out', 'x', '--all-namespaces', '--netns', 'a'], /--all-namespaces and --netns exclude each other/],
    [['record', '--out', 'x', '--interval', '1'], /--interval must be an integer from 50 to 3600000, got 1/],
    [['record', '--out', 'x', 'true'], /Unexpected argument 'true'/], // a command needs --
    [['report'], /^conntrack-monitor report: no FILE to report on \(see --help\)$/],
    [['report', 'x', '--pdf'], /Unknown option '--pdf'/],
  ])('%j: one line, exit 2', async (args, message) => {
    const run = await runCli(args as string[]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr.trim()).toMatch(message);
  });

  it('a file that is not a recording: exit 1, one line naming the line and field', async () => {
    const bad = join(dir, 'bad.ndjson');
    const lines = readFileSync(FIXTURE, 'utf8').trim().split('\n');
    lines.splice(3, 0, JSON.stringify({ ...JSON.parse(lines[2]!), time: 'x' }));
    writeFileSync(bad, lines.join('\n'));
    const run = await runCli(['report', bad]);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(`conntrack-monitor report: ${bad}:4: time must be an ISO 8601 time, got "x"`);
    const missing = await runCli(['report', join(dir, 'nope.ndjson')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read .*nope\.ndjson: ENOENT/);
  });
});

describe('record with a command that cannot run', () => {
  it.each([
    ['not found', ['/nonexistent/load-test'], 127, 'ENOENT'],
    ['not executable', [join(dir, 'plain-file')], 126, 'EACCES'],
  ])('%s: its exit code, one line, and no summary as if it had run', async (_name, command, code, errno) => {
    writeFileSync(join(dir, 'plain-file'), 'echo not a program\n', { mode: 0o644 });
    const out = join(dir, `cannot-run-${code}.ndjson`);
    const run = await runCli(['record', '--backend', 'proc', '--interval', '100', '--out', out, '--', ...command]);
    console.info(`record -- ${command[0]}: exit ${run.code}: ${run.stderr.trim()}`);
    expect(run.code).toBe(code);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      `conntrack-monitor record: cannot run ${command[0]}: spawn ${command[0]} ${errno} (no summary: nothing ran while recording)\n`,
    );
    const lines = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({
      type: 'end',
      exit: null,
      reason: `cannot run the command: spawn ${command[0]} ${errno}`,
    });
  });
});

describe('report on a real recording', () => {
  it('text: the summary, with the advice', async () => {
    const run = await runCli(['report', FIXTURE]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^table-full: ip netns exec ctmon-capture-\d+ sh -c '/);
    expect(run.stdout).toContain(`  peak entries  ${kernel.max} of ${kernel.max} (100.0%)`);
    expect(run.stdout).toContain(
      `  totals        insert ${kernel.nftNew}  delete ${kernel.earlyDrop}  drop ${kernel.drop}  early_drop ${kernel.earlyDrop}  insert_failed ${kernel.insertFailed}`,
    );
    expect(run.stdout).toContain(
      `  TIME_WAIT     peak ${kernel.timeWaitBeforeUdp} (${((kernel.timeWaitBeforeUdp / kernel.max) * 100).toFixed(1)}% of nf_conntrack_max)`,
    );
    expect(run.stdout).toMatch(/^ {2}advice: net\.netfilter\.nf_conntrack_max 60 -> \d+: /m);
  });

  it("--json: one summary per run and line, in the sample's names", async () => {
    const run = await runCli(['report', FIXTURE, FIXTURE, '--json']);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    const s = lines[0];
    expect(Object.keys(s)).toEqual(
      expect.arrayContaining([
        'durationSeconds',
        'samples',
        'peak',
        'totals',
        'eventsLost',
        'firstDropAt',
        'unavailable',
      ]),
    );
    expect(s.peak).toMatchObject({ entries: kernel.max, fill: 1, timeWait: kernel.timeWaitBeforeUdp });
    expect(s.totals).toEqual({
      insert: kernel.nftNew,
      delete: kernel.earlyDrop, // evicted entries send DESTROY; nothing else expired in 2 s
      drop: kernel.drop,
      earlyDrop: kernel.earlyDrop,
      insertFailed: kernel.insertFailed,
    });
    expect(s.command[0]).toBe('ip');
    expect(s.file).toBe(FIXTURE);
    // One name for the namespace: `namespace`, never a null one beside a `netns`.
    expect(s).not.toHaveProperty('netns');
    expect(s.namespace).toEqual({
      name: expect.stringMatching(/^\/var\/run\/netns\/ctmon-capture-\d+$/),
      inode: null,
      host: null,
    });
    expect(s.unavailable['namespace.inode']).toBe('a single-namespace recording does not record the namespace inode');
  });

  it('--html: one self-contained page; - writes it to stdout', async () => {
    const out = join(dir, 'r.html');
    const run = await runCli(['report', FIXTURE, '--html', out]);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe(`conntrack-monitor report: wrote ${out}\n`);
    expect(readFileSync(out, 'utf8')).toMatch(/^<!doctype html>/);
    const stdout = await runCli(['report', FIXTURE, '--html', '-']);
    expect(stdout.stdout).toMatch(/^<!doctype html>[\s\S]*<\/html>\n$/);
  });
});
