// `serve` under hostile HTTP clients: the server's RSS and the latency of well-behaved scrapes
// before, during and after an attack (clients that pipeline GET /metrics
// with a 4 KiB receive buffer and never read, 10 and then 20 of them, 40 s each).
//
//   node benchmarks/serve-attack.mjs [--clients 10,20] [--seconds 40] [--mode pipeline]
//        [--scrape-every-ms 2000] [--backend netlink|proc] [--cli dist/cli.js]
//
// Each phase starts a fresh `serve` child (so phases do not inherit each other's heap),
// measures it idle, runs the attack (test/helpers/http-attack.py) while a good client scrapes
// /metrics on a new connection every --scrape-every-ms (10 s timeout), then measures again 5 s
// after the attack. RSS is the child's VmRSS (/proc/PID/status), peak its VmHWM.
// With --backend netlink (the default as root) the monitor listens to ctnetlink events: run it
// under the kernel lock (flock /tmp/ctmon-kernel.lock node benchmarks/serve-attack.mjs).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '10,20' },
    seconds: { type: 'string', default: '40' },
    mode: { type: 'string', default: 'pipeline' },
    'scrape-every-ms': { type: 'string', default: '2000' },
    backend: { type: 'string', default: process.getuid?.() === 0 ? 'netlink' : 'proc' },
    cli: { type: 'string', default: join(root, 'dist', 'cli.js') },
  },
});
const phases = values.clients.split(',').map(Number);
const seconds = Number(values.seconds);
const scrapeEvery = Number(values['scrape-every-ms']);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

const TICK = 100; // USER_HZ: /proc/PID/stat counts CPU time in 1/100 s on Linux
/** User plus system CPU seconds of a process so far. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICK;
}

function openFds(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** One scrape on a new connection: latency in ms, or the reason it failed. */
function scrape(port) {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/metrics', agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const ok = res.statusCode === 200 && body.includes('nf_conntrack_entries');
        resolve({ ok, ms: performance.now() - started, error: ok ? null : `status ${res.statusCode}` });
      });
      res.on('error', (e) => resolve({ ok: false, ms: performance.now() - started, error: e.code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ ok: false, ms: performance.now() - started, error: e.code ?? e.message }));
    req.end();
  });
}

function startServer() {
  const child = spawn(
    process.execPath,
    [values.cli, 'serve', '--listen', '127.0.0.1:0', '--backend', values.backend, '--interval', '1000'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
      const m = /serving http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(err);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${err}`)));
  });
}

function attack(port, clients) {
  const child = spawn(
    'python3',
    [
      join(root, 'test', 'helpers', 'http-attack.py'),
      values.mode,
      '127.0.0.1',
      String(port),
      '--clients',
      String(clients),
      '--seconds',
      String(seconds),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  return new Promise((resolve) => child.on('exit', () => resolve(out.trim() ? JSON.parse(out) : null)));
}

const quantile = (xs, q) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');

const results = [];
for (const clients of phases) {
  const { child, port } = await startServer();
  const pid = child.pid;
  await sleep(3000);
  const idle = memory(pid);
  const before = [];
  for (let i = 0; i < 3; i++) before.push(await scrape(port));
  const during = [];
  let peakRss = idle.rssMb;
  let maxFds = 0;
  let attacking = true;
  const cpuBefore = cpuSeconds(pid);
  const attacker = attack(port, clients).then((r) => ((attacking = false), r));
  const scraper = (async () => {
    while (attacking) {
      const next = sleep(scrapeEvery);
      during.push(await scrape(port));
      await next;
    }
  })();
  const sampler = (async () => {
    while (attacking) {
      if (child.exitCode !== null) break;
      peakRss = Math.max(peakRss, memory(pid).rssMb);
      maxFds = Math.max(maxFds, openFds(pid));
      await sleep(500);
    }
  })();
  const attackStats = await attacker;
  await Promise.all([scraper, sampler]);
  const cpuDuring = child.exitCode === null ? cpuSeconds(pid) - cpuBefore : NaN;
  await sleep(5000);
  const alive = child.exitCode === null;
  const after = alive ? memory(pid) : { rssMb: NaN, peakMb: NaN };
  const afterScrapes = [];
  for (let i = 0; alive && i < 3; i++) afterScrapes.push(await scrape(port));
  child.kill('SIGTERM');
  await new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));

  const okMs = during.filter((s) => s.ok).map((s) => s.ms);
  const failures = during.filter((s) => !s.ok).map((s) => s.error);
  const row = {
    mode: values.mode,
    clients,
    seconds,
    backend: values.backend,
    rssIdleMb: idle.rssMb,
    rssPeakMb: Math.max(peakRss, after.peakMb || 0),
    rssAfterMb: after.rssMb,
    maxFds,
    serverCpuShare: cpuDuring / seconds,
    goodScrapes: during.length,
    goodFailed: failures.length,
    failures,
    latencyBeforeMs: quantile(
      before.filter((s) => s.ok).map((s) => s.ms),
      0.5,
    ),
    latencyP50Ms: quantile(okMs, 0.5),
    latencyMaxMs: okMs.length ? Math.max(...okMs) : NaN,
    latencyAfterMs: quantile(
      afterScrapes.filter((s) => s.ok).map((s) => s.ms),
      0.5,
    ),
    serverAlive: alive,
    attack: attackStats,
  };
  results.push(row);
  console.log(
    `${values.mode} x${clients} for ${seconds} s (${values.backend}): RSS ${f1(row.rssIdleMb)} MB idle, ` +
      `peak ${f1(row.rssPeakMb)} MB, ${f1(row.rssAfterMb)} MB 5 s after; fds max ${row.maxFds}; ` +
      `server CPU ${f1(row.serverCpuShare * 100)}% of a core; ` +
      `good scrapes ${row.goodScrapes - row.goodFailed}/${row.goodScrapes} ok` +
      `${failures.length ? ` (failed: ${[...new Set(failures)].join(', ')})` : ''}, ` +
      `latency ${f1(row.latencyBeforeMs)} ms before, p50 ${f1(row.latencyP50Ms)} / max ${f1(row.latencyMaxMs)} ms during, ` +
      `${f1(row.latencyAfterMs)} ms after; attacker sent ${attackStats?.requests ?? '?'} requests on ` +
      `${attackStats?.connects ?? '?'} connections`,
  );
}
console.log(JSON.stringify({ machine: { cpus: cpus().length, node: process.version }, results }));
