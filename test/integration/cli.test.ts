/** The CLI on the real kernel: NDJSON per interval, a final sample on exit, clean exits. */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
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
    // A fresh namespace has nf_conntrack_events=2: said once, plainly, on stderr.
    expect(run.stderr.match(/warning: .*nf_conntrack_events is 2/g)).toHaveLength(1);
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
});
