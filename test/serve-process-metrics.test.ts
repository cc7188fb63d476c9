/**
 * `serve` exposes the exporter process's own metrics as every prom-client exporter does
 * (collectDefaultMetrics: process_*, nodejs_*), checked against what the kernel says of the
 * serving process (/proc/PID/limits, stat, fd, status), and how long its last rendering took
 * (conntrack_monitor_scrape_duration_seconds); --no-process-metrics leaves the process's out.
 * Each scrape passes promtool. Runs serve on the proc backend: needs no privileges.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLI, runCli, servingUrl } from './helpers/cli';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const value = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

/** Starts serve, waits for two renderings, scrapes; the child is stopped after `check`. */
async function scrape(args: string[], check: (text: string, pid: number) => void | Promise<void>) {
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--backend', 'proc', '--listen', '127.0.0.1:0', '--interval', '100', ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  try {
    const url = await servingUrl(child);
    await sleep(400);
    const text = await (await fetch(url)).text();
    expect(execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })).toBe('');
    await check(text, child.pid!);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.on('close', r));
  }
}

describe('serve: the exporter’s own metrics', () => {
  it('process_* and nodejs_* by default, equal to what the kernel says of the process', async () => {
    await scrape([], (text, pid) => {
      const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
      const maxFds = Number(/^Max open files\s+(\d+)/m.exec(limits)![1]);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
      const bootTime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))![1]);
      const started = bootTime + startTicks / 100; // USER_HZ
      const rss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
      const fds = readdirSync(`/proc/${pid}/fd`).length;
      console.info(
        `serve's own: max_fds ${value(text, 'process_max_fds')} (limits ${maxFds}), start ${value(text, 'process_start_time_seconds')} (kernel ${started.toFixed(2)}), ` +
          `rss ${value(text, 'process_resident_memory_bytes')} (VmRSS ${rss}), open_fds ${value(text, 'process_open_fds')} (fd/ ${fds}), ` +
          `scrape ${value(text, 'conntrack_monitor_scrape_duration_seconds')} s`,
      );
      expect(value(text, 'process_max_fds')).toBe(maxFds);
      // prom-client: whole seconds, from Node's own start (after the exec the kernel counts from).
      expect(Math.abs(value(text, 'process_start_time_seconds')! - started)).toBeLessThanOrEqual(2);
      expect(value(text, 'process_resident_memory_bytes')! / rss).toBeGreaterThan(0.75);
      expect(value(text, 'process_resident_memory_bytes')! / rss).toBeLessThan(1.25);
      expect(Math.abs(value(text, 'process_open_fds')! - fds)).toBeLessThanOrEqual(3);
      expect(value(text, 'process_cpu_seconds_total')).toBeGreaterThan(0);
      expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
      expect(text).toMatch(/^nodejs_heap_size_used_bytes \d+$/m);
      expect(text).toMatch(new RegExp(`^nodejs_version_info\\{version="${process.version}",`, 'm'));
      const scrapeSeconds = value(text, 'conntrack_monitor_scrape_duration_seconds')!;
      expect(scrapeSeconds).toBeGreaterThan(0);
      expect(scrapeSeconds).toBeLessThan(1);
      expect(text).toMatch(/^# TYPE conntrack_monitor_scrape_duration_seconds gauge$/m);
      expect(text).toMatch(/^nf_conntrack_entries \d+$/m); // the conntrack metrics, as before
    });
  });

  it('--no-process-metrics leaves them out; the scrape duration stays', async () => {
    await scrape(['--no-process-metrics'], (text) => {
      expect(text).not.toMatch(/^(# TYPE )?(process|nodejs)_/m);
      expect(value(text, 'conntrack_monitor_scrape_duration_seconds')).toBeGreaterThan(0);
      expect(text).toMatch(/^nf_conntrack_entries \d+$/m);
    });
  });

  it('serve --help says so', async () => {
    const help = (await runCli(['serve', '--help'])).stdout;
    expect(help).toMatch(/--no-process-metrics {3}leave out the exporter process's own metrics \(process_\* and/);
    expect(help).toMatch(/conntrack_monitor_scrape_duration_seconds/);
  });
});
