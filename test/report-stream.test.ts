/**
 * `report` reads a recording as it streams by: what is not a regular file is refused at once
 * (a FIFO with or without a writer, /dev/zero, a directory, a socket), a line longer than any
 * recording's ends it with an error naming the line, and 1 GiB recordings, one of a namespace
 * (940,000 samples: ten days at 1 s) and one of 110 namespaces per line (as a node's
 * --all-namespaces recording reaches in a little over two hours), are summarized exactly (the
 * numbers against the pattern the file was made from) with the child's peak RSS (VmHWM) under
 * 250 MB, their pages drawn from decimated points. The recordings are made in a temporary
 * directory and removed after. Needs no privileges.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRecording } from '../dist/recording/format.js';
import { readRecording } from '../dist/recording/read.js';
import { REPORT_LIMITS, runsOf, RunsBuilder, type ReportRun } from '../dist/report/runs.js';
import { summarize } from '../dist/report/summary.js';
import { bigNamespacesRecording, bigRecording } from './helpers/big-recording';
import { CLI, runCli } from './helpers/cli';

const dir = mkdtempSync(join(tmpdir(), 'ctmon-report-stream-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const FIXTURE = join(__dirname, 'fixtures', 'recordings', 'table-full.ndjson');
const GiB = 1 << 30;
const RSS_BOUND_KB = 250 * 1000;

/** Runs the CLI with its peak RSS recorded (test/helpers/peak-rss.cjs). */
function measured(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string; peakKb: number; ms: number }> {
  const peakFile = join(dir, `peak-${process.hrtime.bigint()}`);
  const started = performance.now();
  const child = spawn(process.execPath, ['-r', join(__dirname, 'helpers', 'peak-rss.cjs'), CLI, ...args], {
    env: { ...process.env, CTMON_PEAK_RSS_FILE: peakFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) =>
    child.on('close', (code) =>
      resolve({
        code,
        stdout,
        stderr,
        peakKb: Number(readFileSync(peakFile, 'utf8')),
        ms: performance.now() - started,
      }),
    ),
  );
}

describe('report refuses what is not a regular file, at once', () => {
  const fifo = join(dir, 'fifo');
  spawnSync('mkfifo', [fifo]);
  const socket = join(dir, 'socket');

  it.each([
    ['/dev/zero', () => '/dev/zero', 'a character device'],
    ['a FIFO without a writer', () => fifo, 'a FIFO'],
    ['a directory', () => dir, 'a directory'],
  ])('%s: exit 1 and one line saying what it is', async (_name, path, kind) => {
    const started = performance.now();
    const run = await runCli(['report', path()]);
    const ms = performance.now() - started;
    console.info(`report ${path()}: exit ${run.code} after ${ms.toFixed(0)} ms: ${run.stderr.trim()}`);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`conntrack-monitor report: ${path()} is ${kind}, not a recording\n`);
    expect(ms).toBeLessThan(3000); // Node's start-up included
  });

  it('a FIFO a writer keeps feeding, and a socket, are refused too', async () => {
    const writer = spawn('sh', ['-c', `exec yes > ${fifo}`]);
    const server = createServer().listen(socket);
    try {
      await new Promise((r) => setTimeout(r, 100));
      const fed = await runCli(['report', fifo]);
      expect(fed.code).toBe(1);
      expect(fed.stderr).toBe(`conntrack-monitor report: ${fifo} is a FIFO, not a recording\n`);
      const sock = await runCli(['report', socket]);
      expect(sock.code).toBe(1);
      expect(sock.stderr).toBe(`conntrack-monitor report: ${socket} is a socket, not a recording\n`);
    } finally {
      writer.kill();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('a line longer than any recording has (16 MiB) ends it with an error naming the line', async () => {
    const long = join(dir, 'long.ndjson');
    writeFileSync(long, `${readFileSync(FIXTURE, 'utf8').split('\n')[0]}\n${'x'.repeat(20 << 20)}\n`);
    const run = await measured(['report', long]);
    console.info(
      `a 20 MiB line: exit ${run.code}, peak RSS ${(run.peakKb / 1000).toFixed(0)} MB: ${run.stderr.trim()}`,
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`conntrack-monitor report: ${long}:2: a line longer than 16 MiB: not a recording\n`);
    expect(run.peakKb).toBeLessThan(RSS_BOUND_KB);
    unlinkSync(long);
  });
});

describe('report streams what it reads', () => {
  it('the same runs as a whole-file parse, for the fixture and for a file cut off mid-line', async () => {
    const whole = runsOf(parseRecording(readFileSync(FIXTURE, 'utf8'), FIXTURE), FIXTURE);
    const streamed = new RunsBuilder(FIXTURE);
    await readRecording(FIXTURE, (line) => streamed.add(line));
    expect(streamed.runs()).toEqual(whole);
    const text = readFileSync(FIXTURE, 'utf8');
    const cut = join(dir, 'cut.ndjson');
    writeFileSync(cut, text.slice(0, text.lastIndexOf('\n', text.length - 2) + 40)); // the end line cut
    const b = new RunsBuilder(cut);
    await readRecording(cut, (line) => b.add(line));
    const [run] = b.runs();
    expect(run!.truncated).toBe(true);
    expect(run!.end).toBeNull();
    expect(run!.summary).toEqual(whole[0]!.summary);
  });

  it('a long run is drawn from at most pointsPerRun merged points; counts summed, peaks kept, the summary exact', async () => {
    const lines = readFileSync(FIXTURE, 'utf8').trim().split('\n');
    const sample = lines.find((l) => JSON.parse(l).type === 'sample')!;
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    const n = 5 * REPORT_LIMITS.pointsPerRun + 7;
    const body = Array.from({ length: n }, (_, i) =>
      JSON.stringify({
        ...JSON.parse(sample),
        time: new Date(t0 + (i + 1) * 1000).toISOString(),
        intervalMs: 1000,
        entries: i === 7777 ? 60 : 10,
        counts: { ...JSON.parse(sample).counts, insert: 1, drop: i === 4242 ? 9 : 0 },
        rates: { ...JSON.parse(sample).rates, insert: 1, drop: i === 4242 ? 9 : 0 },
      }),
    );
    const file = join(dir, 'long-run.ndjson');
    writeFileSync(file, `${[lines[0], ...body].join('\n')}\n`);
    const b = new RunsBuilder(file);
    await readRecording(file, (line) => b.add(line));
    const [run] = b.runs() as ReportRun[];
    console.info(`${n} samples drawn from ${run!.samples.length} points`);
    expect(run!.samples.length).toBeLessThanOrEqual(REPORT_LIMITS.pointsPerRun + 1);
    expect(run!.samples.length).toBeGreaterThan(REPORT_LIMITS.pointsPerRun / 2);
    const sum = (k: 'insert' | 'drop') => run!.samples.reduce((t, s) => t + s.counts[k]!, 0);
    expect(sum('insert')).toBe(n);
    expect(sum('drop')).toBe(9);
    expect(run!.samples.reduce((t, s) => t + s.intervalMs, 0)).toBe(n * 1000);
    expect(Math.max(...run!.samples.map((s) => s.entries!))).toBe(60);
    expect(run!.samples.at(-1)!.time).toBe(new Date(t0 + n * 1000).toISOString());
    // The summary is of every sample, not of the points.
    expect(run!.summary).toEqual(summarize(parseRecording(readFileSync(file, 'utf8')).samples));
    expect(run!.summary.samples).toBe(n);
  });
});

describe('report --json to a slow reader', () => {
  it('every line arrives: the exit waits for the pipe to take them', async () => {
    const lines = readFileSync(FIXTURE, 'utf8').trim().split('\n');
    const row = (k: number) => ({ inode: 1000 + k, name: `ns${k}`, pid: null, host: false, entries: k, max: 100 });
    const report = (t: number) =>
      JSON.stringify({
        type: 'namespaces',
        time: new Date(Date.UTC(2026, 0, 1, 0, 0, t)).toISOString(),
        intervalMs: 1000,
        final: false,
        namespaces: Array.from({ length: 300 }, (_, k) => ({
          ...row(k),
          fill: k / 100,
          drops: 0,
          dropRate: 0,
          inserts: k,
          insertRate: k,
          totalDrops: 0,
          source: 'netlink',
          error: null,
        })),
      });
    const file = join(dir, 'many-namespaces.ndjson');
    writeFileSync(file, `${[lines[0], report(1), report(2)].join('\n')}\n`);
    const child = spawn(process.execPath, [CLI, 'report', file, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pause(); // a reader that takes its time: 300 lines are more than a pipe holds
    await new Promise((r) => setTimeout(r, 1000));
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stdout.resume();
    const code = await new Promise((r) => child.on('close', r));
    expect(code).toBe(0);
    expect(stdout.trim().split('\n')).toHaveLength(300);
  });
});

describe('1 GiB recordings: exact summaries in bounded memory', () => {
  it('one namespace, 940,000 samples: --json exact, --html from decimated points, peak RSS under 250 MB', async () => {
    const file = join(dir, 'one-namespace.ndjson');
    const truth = bigRecording(file, GiB);
    const bytes = statSync(file).size;
    const page = join(dir, 'one-namespace.html');
    const run = await measured(['report', file, '--json', '--html', page]);
    console.info(
      `report on ${(bytes / 2 ** 20).toFixed(0)} MiB (${truth.samples} samples): exit ${run.code} after ${(run.ms / 1000).toFixed(1)} s, peak RSS ${(run.peakKb / 1000).toFixed(0)} MB, page ${(statSync(page).size / 1000).toFixed(0)} kB`,
    );
    rmSync(file);
    expect(run.code).toBe(0);
    expect(bytes).toBeGreaterThanOrEqual(GiB);
    expect(run.peakKb).toBeLessThan(RSS_BOUND_KB);
    const summary = JSON.parse(run.stdout.trim());
    expect(summary).toMatchObject({
      samples: truth.samples,
      durationSeconds: truth.durationSeconds,
      totals: { ...truth.totals, earlyDrop: 0, insertFailed: 0 },
      peak: { entries: truth.peak.entries, insertRate: truth.peak.insertRate, dropRate: truth.peak.dropRate },
      p50: { insertRate: truth.p50.insertRate },
      p99: { insertRate: truth.p99.insertRate },
      firstDropSeconds: truth.firstDropSeconds,
    });
    expect(statSync(page).size).toBeLessThan(2_000_000);
    expect(readFileSync(page, 'utf8')).toMatch(/<svg/);
  }, 300_000);

  it('110 namespaces a line: every namespace a run, peak RSS under 250 MB', async () => {
    const file = join(dir, 'node.ndjson');
    const { reports } = bigNamespacesRecording(file, GiB, 110);
    const bytes = statSync(file).size;
    const page = join(dir, 'node.html');
    const run = await measured(['report', file, '--json', '--html', page]);
    console.info(
      `report on ${(bytes / 2 ** 20).toFixed(0)} MiB (${reports} reports of 110 namespaces): exit ${run.code} after ${(run.ms / 1000).toFixed(1)} s, peak RSS ${(run.peakKb / 1000).toFixed(0)} MB, page ${(statSync(page).size / 1000).toFixed(0)} kB`,
    );
    rmSync(file);
    expect(run.code).toBe(0);
    expect(run.peakKb).toBeLessThan(RSS_BOUND_KB);
    const runs = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(runs).toHaveLength(110);
    for (const r of runs) expect(r.samples).toBe(reports);
    // Namespace 0 drops one packet every 1000th report: the busiest, first.
    expect(runs[0]).toMatchObject({ label: 'node: (host)', totals: { drop: Math.floor(reports / 1000) } });
  }, 300_000);
});
