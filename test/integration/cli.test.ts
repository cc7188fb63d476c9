/** The CLI on the real kernel: NDJSON per interval, a final sample on exit, clean exits. */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI, runCli } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import { withKernelLock } from '../helpers/kernel-lock.mjs';
import { uniqueName } from '../helpers/netns';
import { namespace } from '../helpers/scope';

describe.skipIf(!canRunIntegration)('conntrack-monitor CLI on the real kernel', () => {
  it('--json prints one sample per line and a final partial sample after --duration', async () => {
    const ns = await namespace('cli');
    let traffic: Promise<unknown> | undefined;
    const run = await runCli(['--json', '--netns', ns.name, '--interval', '200', '--duration', '1.5'], () => {
      traffic ??= ns.traffic('tcp', 25);
    });
    await traffic;
    expect(run.code).toBe(0);
    const samples = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(samples.length).toBeGreaterThanOrEqual(5);
    expect(samples.slice(0, -1).every((s) => s.final === false)).toBe(true);
    const last = samples.at(-1);
    expect(last.final).toBe(true);
    expect(last.totals.insert).toBe(25);
    expect(samples.reduce((sum: number, s: { counts: { insert: number } }) => sum + s.counts.insert, 0)).toBe(25);
    expect(last.entries).toBe(await ns.count());
    expect(last.netns).toBe(ns.path);
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('on %s prints the final sample and exits 0', async (signal) => {
    const ns = await namespace('sig');
    let lines = 0;
    const run = await runCli(['--json', '--netns', ns.name, '--interval', '100'], (_line, child) => {
      if (++lines === 2) child.kill(signal);
    });
    expect(run).toMatchObject({ code: 0, signal: null });
    const samples = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(samples.at(-1).final).toBe(true);
    expect(samples.filter((s) => s.final)).toHaveLength(1);
  });

  it('prints a human line per interval without --json', async () => {
    const ns = await namespace('human');
    const run = await runCli(['--netns', ns.name, '--interval', '100', '--duration', '0.35']);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) {
      expect(line).toMatch(/^\d\d:\d\d:\d\d {2}entries 0\/\d+ \(0\.0%\) {2}insert 0\/s {2}delete 0\/s {2}drop 0\/s/);
      expect(line).toMatch(/time_wait 0 \(0\.0%\)/);
    }
    expect(lines.at(-1)).toMatch(/\(final, \d+ ms\)$/);
    // A fresh namespace has the kernel's default nf_conntrack_events=2: not worth a line on
    // every command; --verbose says it once.
    expect(await ns.exec('cat', ['/proc/sys/net/netfilter/nf_conntrack_events'])).toBe('2\n');
    expect(run.stderr).toBe('');
    const verbose = await runCli(['--netns', ns.name, '--interval', '100', '--duration', '0.35', '--verbose']);
    console.info(`--verbose: ${verbose.stderr.trim()}`);
    expect(verbose.stderr).toMatch(
      /^conntrack-monitor: warning: nf_conntrack_events is 2 \(the kernel default\) in the monitored namespace: .*at start, then every 60 s\)\. Setting it to 1 there shows them at once\.\n$/,
    );
  });

  it('exits 1 with the reason when monitoring cannot start', async () => {
    const absent = uniqueName('absent');
    const run = await runCli(['--netns', absent, '--duration', '1']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `cannot start: open network namespace /var/run/netns/${absent}: No such file or directory (no network namespace at /var/run/netns/${absent})`,
    );
  });

  it('lets the process exit while running after unref()', async () => {
    const script = `
      const { ConntrackMonitor } = require(${JSON.stringify(require.resolve('../../dist/index.js'))});
      const m = new ConntrackMonitor({ intervalMs: 100 });
      m.start().then(() => { m.unref(); console.log('started'); });`;
    const started = Date.now();
    const child = spawn(process.execPath, ['-e', script]);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(out.trim()).toBe('started');
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('exits 1 with one line, after the final sample, when the watched namespace is deleted', async () => {
    const ns = await namespace('gone');
    let lines = 0;
    let deletedAt = 0;
    const run = await runCli(['--json', '--netns', ns.name, '--interval', '200'], () => {
      if (++lines === 2) {
        deletedAt = performance.now();
        void ns.remove();
      }
    });
    const ms = performance.now() - deletedAt;
    const samples = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    console.info(
      `namespace deleted under the CLI: exit ${run.code} ${ms.toFixed(0)} ms later; stderr: ${run.stderr.trim()}`,
    );
    expect(run.code).toBe(1);
    expect(samples.at(-1).final).toBe(true);
    expect(samples.filter((s) => s.final)).toHaveLength(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(new RegExp(`^conntrack-monitor: network namespace ${ns.path} is gone: `));
    expect(ms).toBeLessThan(1500);
  });

  it('under timeout(1) during a flood (SIGTERM to the command, then to its group): the final sample, exit 0', async () => {
    const ns = await namespace('flood');
    await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 1); // the floods' entries go (DESTROYs too)
    const rounds: string[] = [];
    for (let round = 0; round < 3; round++) {
      // 150,000 new flows from now on, still running when timeout signals the command, then
      // its own process group (the command is in it) 2.5 s after the start. A flood: under the
      // kernel lock, as the benchmarks' floods are.
      const { run, sent } = await withKernelLock(async () => {
        const flood = ns.traffic('flood', 150_000);
        const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(
            'timeout',
            [
              '--preserve-status',
              '-s',
              'TERM',
              '2.5',
              process.execPath,
              CLI,
              '--json',
              '--netns',
              ns.name,
              '--interval',
              '200',
            ],
            { stdio: ['ignore', 'pipe', 'pipe'] },
          );
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d) => (stdout += d));
          child.stderr.on('data', (d) => (stderr += d));
          child.on('close', (code) => resolve({ code, stdout, stderr }));
        });
        return { run, sent: await flood };
      });
      const samples = run.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line));
      const last = samples.at(-1);
      rounds.push(
        `exit ${run.code}, ${samples.length} samples, final ${last.final}, inserts ${last.totals.insert}, ` +
          `lost ${last.events.lostTotal} (flood: ${sent.ok} flows at ${sent.perSecond}/s)`,
      );
      expect(run).toMatchObject({ code: 0, stderr: '' });
      expect(last.final).toBe(true);
      expect(samples.filter((s) => s.final)).toHaveLength(1);
      expect(last.totals.insert + last.events.lostTotal).toBeGreaterThan(10_000); // it was under load
      await new Promise((r) => setTimeout(r, 1500));
    }
    console.info(`timeout -s TERM during a flood:\n  ${rounds.join('\n  ')}`);
  });
});
