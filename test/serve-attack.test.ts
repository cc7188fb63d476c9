/**
 * `serve` under hostile clients, unprivileged: the real CLI process on the /proc
 * backend (no ctnetlink listener, so no kernel lock), attacked on loopback by
 * test/helpers/http-attack.py, while well-behaved clients scrape it: Node's http client on a
 * new connection every 250 ms, and Prometheus itself (keep-alive, every second). The server's
 * RSS and descriptors are read from /proc/PID. Bounded: tens of seconds, clients counted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, servingUrl } from './helpers/cli';
import { prometheusAvailable, startPrometheus } from './helpers/prometheus';

const ATTACK = join(__dirname, 'helpers', 'http-attack.py');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const children: ChildProcess[] = [];
const cleanups: (() => void)[] = [];
afterEach(() => {
  children.splice(0).forEach((c) => c.kill('SIGKILL'));
  cleanups.splice(0).forEach((f) => f());
});

async function startServe(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [
    CLI,
    'serve',
    '--backend',
    'proc',
    '--listen',
    '127.0.0.1:0',
    '--interval',
    '500',
  ]);
  children.push(child);
  const url = await servingUrl(child);
  return { child, port: Number(new URL(url).port) };
}

const rssMb = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** Samples RSS and descriptors of `pid` every 200 ms until stop(); returns the peaks. */
function watch(pid: number) {
  const peak = { rssMb: 0, fds: 0 };
  const timer = setInterval(() => {
    peak.rssMb = Math.max(peak.rssMb, rssMb(pid));
    peak.fds = Math.max(peak.fds, fds(pid));
  }, 200);
  return {
    stop: () => {
      clearInterval(timer);
      return peak;
    },
  };
}

function attack(mode: 'pipeline' | 'slowloris' | 'halfopen', port: number, clients: number, seconds: number) {
  const child = spawn('python3', [
    ATTACK,
    mode,
    '127.0.0.1',
    String(port),
    '--clients',
    String(clients),
    '--seconds',
    String(seconds),
  ]);
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  return new Promise<{ connects: number; requests: number }>((resolve, reject) =>
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`attack exited ${code}`)))),
  );
}

interface Scrape {
  ok: boolean;
  ms: number;
  error?: string;
}

/** One scrape on a new connection, as a first scrape or curl makes it (10 s timeout). */
function scrape(port: number): Promise<Scrape> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/metrics', agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () =>
        resolve({
          ok: res.statusCode === 200 && body.includes('nf_conntrack_entries'),
          ms: performance.now() - started,
        }),
      );
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) =>
      resolve({ ok: false, ms: performance.now() - started, error: e.code ?? e.message }),
    );
    req.end();
  });
}

/** Scrapes every `everyMs` while `during` runs; returns every scrape. */
async function scrapeWhile(port: number, everyMs: number, during: Promise<unknown>): Promise<Scrape[]> {
  let running = true;
  void during.finally(() => (running = false));
  const results: Scrape[] = [];
  while (running) {
    const next = sleep(everyMs);
    results.push(await scrape(port));
    await next;
  }
  await during;
  return results;
}

function summary(scrapes: Scrape[]): string {
  const ms = scrapes.map((s) => s.ms).sort((a, b) => a - b);
  return `${scrapes.filter((s) => s.ok).length}/${scrapes.length} good scrapes ok, latency p50 ${ms[ms.length >> 1]!.toFixed(1)} ms, max ${ms.at(-1)!.toFixed(1)} ms`;
}

describe('serve under hostile clients', () => {
  it.skipIf(!prometheusAvailable)(
    'pipelining clients that never read: RSS stays flat, every good scrape (Node, Prometheus) is served quickly',
    async () => {
      const { child, port } = await startServe();
      const prometheus = await startPrometheus(port);
      cleanups.push(() => prometheus.stop());
      await sleep(2500); // Prometheus has scraped a few times; the server is warm
      const idle = rssMb(child.pid!);
      const seconds = 10;
      const watcher = watch(child.pid!);
      const attackStarted = Date.now();
      const attackers = attack('pipeline', port, 20, seconds);
      const scrapes = await scrapeWhile(port, 250, attackers);
      const { connects, requests } = await attackers;
      const peak = watcher.stop();
      const window = `${Math.floor((Date.now() - attackStarted) / 1000)}s`;
      const promScrapes = await prometheus.query(`count_over_time(up{job="serve"}[${window}])`);
      const promUp = await prometheus.query(`min_over_time(up{job="serve"}[${window}])`);
      const promSlowest = await prometheus.query(`max_over_time(scrape_duration_seconds{job="serve"}[${window}])`);
      console.info(
        `pipelining x20 for ${seconds} s (${requests} requests sent on ${connects} connections): RSS ${idle.toFixed(1)} MB idle, ` +
          `peak ${peak.rssMb.toFixed(1)} MB, fds peak ${peak.fds}; ${summary(scrapes)}; Prometheus: ${promScrapes} scrapes, ` +
          `min up ${promUp}, slowest ${(promSlowest * 1000).toFixed(1)} ms`,
      );
      // Before the fix: +300 MB in 10 s and good scrapes timing out (benchmarks/serve-attack.mjs).
      expect(peak.rssMb - idle).toBeLessThan(40);
      expect(scrapes.length).toBeGreaterThanOrEqual(20);
      expect(scrapes.filter((s) => !s.ok)).toEqual([]);
      expect(Math.max(...scrapes.map((s) => s.ms))).toBeLessThan(1000);
      // Prometheus scrapes each second when its own scheduler gets a CPU: on a 2-CPU host busy
      // with other suites it made 7 of ~10. The server's part is that every scrape it made
      // succeeded (min up 1), and fast; the count shows it kept scraping throughout.
      expect(promScrapes).toBeGreaterThanOrEqual(seconds / 2);
      expect(promUp).toBe(1);
      expect(promSlowest).toBeLessThan(1);
    },
  );

  it('slowloris clients, and more half-open connections than the cap: descriptors bounded, good scrapes served', async () => {
    const { child, port } = await startServe();
    await sleep(1000);
    const idle = { rssMb: rssMb(child.pid!), fds: fds(child.pid!) };
    for (const [mode, clients] of [
      ['slowloris', 300],
      ['halfopen', 3000],
    ] as const) {
      const watcher = watch(child.pid!);
      const attackers = attack(mode, port, clients, 6);
      const scrapes = await scrapeWhile(port, 250, attackers);
      const { connects } = await attackers;
      const peak = watcher.stop();
      console.info(
        `${mode} x${clients} (${connects} connections): RSS ${idle.rssMb.toFixed(1)} MB idle, peak ${peak.rssMb.toFixed(1)} MB; ` +
          `fds ${idle.fds} idle, peak ${peak.fds}; ${summary(scrapes)}`,
      );
      expect(peak.fds - idle.fds).toBeLessThanOrEqual(512 + 1); // the connection cap (and a good scrape's)
      expect(peak.rssMb - idle.rssMb).toBeLessThan(60);
      expect(scrapes.filter((s) => !s.ok)).toEqual([]);
      // Thousands of connects compete with the good scraper's in the kernel's accept queue, and
      // other test files share the two cores: well within Prometheus' 10 s scrape timeout
      // (before the fix, good scrapes took up to 9 s or failed).
      expect(Math.max(...scrapes.map((s) => s.ms))).toBeLessThan(2500);
    }
  });
});
