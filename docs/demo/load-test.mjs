#!/usr/bin/env node
// A small HTTP load test for the README's report (docs/report.png), run inside a network
// namespace: an HTTP server and a DNS-like UDP responder on loopback, and clients that ramp up.
//
//   node load-test.mjs [--seconds 60] [--from 50] [--to 600] [--keepalive 300] [--cooldown 20]
//
// - `keepalive` persistent connections send a request every 2 s (ESTABLISHED entries);
// - new connections, one per request (`Connection: close`), ramp from `from` to `to` per second
//   over `seconds`; each leaves a conntrack entry in TIME_WAIT for
//   nf_conntrack_tcp_timeout_time_wait (120 s by default);
// - 30 UDP queries per second, each from a new socket (one entry each, answered);
// - a request or query without an answer in 2 s fails (a SYN the kernel dropped, say);
// then `cooldown` seconds with only the persistent connections and the UDP queries.
// Prints a wrk-like summary; exits 0, or 1 if any request failed.
import dgram from 'node:dgram';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    from: { type: 'string', default: '50' },
    to: { type: 'string', default: '600' },
    keepalive: { type: 'string', default: '300' },
    cooldown: { type: 'string', default: '20' },
  },
});
const [seconds, from, to, keepalive, cooldown] = ['seconds', 'from', 'to', 'keepalive', 'cooldown'].map((k) =>
  Number(values[k]),
);
const TIMEOUT_MS = 2000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const server = http.createServer((req, res) => res.end('ok\n'));
server.keepAliveTimeout = 60_000;
await new Promise((r) => server.listen(8080, '0.0.0.0', r));
const dns = dgram.createSocket('udp4');
dns.on('message', (msg, peer) => dns.send(msg, peer.port, peer.address));
await new Promise((r) => dns.bind(5353, '127.0.0.1', r));

const stats = { requests: 0, failed: 0, queries: 0, queriesFailed: 0, latencies: [] };
let stopping = false;

function request(agent, host) {
  const start = performance.now();
  return new Promise((resolve) => {
    const req = http.get({ host, port: 8080, path: '/', agent, timeout: TIMEOUT_MS }, (res) => {
      res.resume();
      res.on('end', () => {
        stats.requests++;
        stats.latencies.push(performance.now() - start);
        resolve();
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => {
      stats.failed++;
      resolve();
    });
  });
}

function query() {
  const s = dgram.createSocket('udp4');
  const timer = setTimeout(() => {
    stats.queriesFailed++;
    s.close();
  }, TIMEOUT_MS);
  s.once('message', () => {
    clearTimeout(timer);
    stats.queries++;
    s.close();
  });
  s.send('query', 5353, '127.0.0.1', (err) => {
    if (err) {
      clearTimeout(timer);
      stats.queriesFailed++;
      s.close();
    }
  });
}

// Persistent connections: one agent each, so each keeps its own socket.
const persistent = Array.from({ length: keepalive }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
const keepaliveLoops = persistent.map(async (agent, i) => {
  await sleep((i * 2000) / keepalive);
  while (!stopping) {
    await request(agent, '127.0.0.1');
    await sleep(2000);
  }
});
const dnsTimer = setInterval(query, 1000 / 30);

// The ramp: new connections, paced every 10 ms.
const hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];
const inFlight = new Set();
const t0 = performance.now();
let sent = 0;
while ((performance.now() - t0) / 1000 < seconds) {
  const t = (performance.now() - t0) / 1000;
  const due = from * t + ((to - from) / (2 * seconds)) * t * t; // integral of the linear ramp
  while (sent < due && inFlight.size < 2000) {
    const p = request(false, hosts[sent % hosts.length]).then(() => inFlight.delete(p));
    inFlight.add(p);
    sent++;
  }
  await sleep(10);
}
await Promise.all(inFlight);
await sleep(cooldown * 1000);
stopping = true;
clearInterval(dnsTimer);
await Promise.all(keepaliveLoops);
for (const a of persistent) a.destroy();
server.close();
dns.close();

const lat = stats.latencies.sort((a, b) => a - b);
const pct = (p) =>
  lat.length ? lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)].toFixed(1) : 'n/a';
console.log(
  `${stats.requests} requests, ${stats.failed} failed (no answer in ${TIMEOUT_MS} ms); latency p50 ${pct(50)} ms, p99 ${pct(99)} ms; ` +
    `${stats.queries} UDP queries answered, ${stats.queriesFailed} not`,
);
process.exit(stats.failed + stats.queriesFailed > 0 ? 1 : 0);
