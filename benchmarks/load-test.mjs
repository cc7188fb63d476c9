#!/usr/bin/env node
// What a user wrapping an HTTP load test pays for watching it: wrk (2 threads, 50 connections,
// `Connection: close`, so every request is a TCP connection) against nginx in a private
// namespace, with and without a reader, in interleaved rounds.
//
//   node benchmarks/load-test.mjs [--rounds 5] [--seconds 8]
//        [--readers none,monitor,conntrack-E-all,count-only-all,monitor@DIR]
//
// Root; needs wrk and nginx (apt-get install wrk nginx-light). Each phase: a fresh namespace
// (lo, an nft `ct state new counter` rule, the kernel's default timeouts), nginx answering 200
// on 127.0.0.1:8080 inside it, the reader started and subscribed, then wrk for --seconds.
// Per phase: requests/s (wrk), the reader's own CPU during the load, and for the monitor: its
// inserts against the nft counter (less insert_failed), messages it received, events lost, and
// its TIME_WAIT in its first sample 2 s after the load against conntrack -L right after it.
// count-only-all is benchmarks/native/count_only_reader --all: joined to every event group, it
// counts each message in the kernel and queues none, the least a reader that follows TCP states
// through events can cost (see host-cost.mjs).
// Throughput ratio: a reader's median requests/s over the no-reader median.
// Writes benchmarks/results/load-test-<date>.{json,md}.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  benchNamespace,
  cpuSeconds,
  machine as describeMachine,
  sleep,
  startCountOnlyReader,
  startMonitorChild,
} from './lib/bench.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '8' },
    readers: { type: 'string', default: 'none,monitor,conntrack-E-all' },
  },
});
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const READERS = values.readers.split(',');
for (const r of READERS)
  if (!['none', 'monitor', 'conntrack-E-all', 'count-only-all'].includes(r) && !r.startsWith('monitor@'))
    throw new Error(`unknown reader ${r} (none, monitor, conntrack-E-all, count-only-all, monitor@DIR)`);
if (!READERS.includes('none')) throw new Error('the readers must include none: throughput is compared with it');
const PORT = 8080; // inside the phase's own namespace
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const work = mkdtempSync(join(tmpdir(), 'ctmon-load-'));

function nginxConfig() {
  const conf = join(work, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;\nworker_processes auto;\npid ${join(work, 'nginx.pid')};\nerror_log ${join(work, 'error.log')};\n` +
      `events { worker_connections 4096; }\n` +
      `http { access_log off; client_body_temp_path ${work}; proxy_temp_path ${work}; fastcgi_temp_path ${work}; uwsgi_temp_path ${work}; scgi_temp_path ${work};\n` +
      `  server { listen 127.0.0.1:${PORT}; location / { return 200 "ok\\n"; } } }\n`,
  );
  return conf;
}

async function startReader(kind, bench) {
  if (kind === 'none') return { pid: null, stop: async () => {} };
  if (kind === 'conntrack-E-all') {
    const p = spawn('ip', ['netns', 'exec', bench.name, 'conntrack', '-E'], { stdio: ['ignore', 'ignore', 'ignore'] });
    return { pid: p.pid, stop: async () => (p.kill('SIGINT'), await new Promise((r) => p.on('close', r))) };
  }
  if (kind === 'count-only-all') {
    const reader = await startCountOnlyReader(bench.path, { all: true });
    return { pid: reader.child.pid, stop: reader.stop };
  }
  const m = await startMonitorChild(bench.path, {
    loopDelay: false,
    checkout: kind.startsWith('monitor@') ? kind.slice('monitor@'.length) : null,
  });
  return { pid: m.child.pid, report: m.report, stop: m.stop };
}

async function phase(kind, round) {
  const bench = benchNamespace(`ctmon-bench-load-${process.pid}-${round}-${kind.replace(/\W/g, '')}`, {
    shortTimeouts: false,
  });
  const nginx = spawn('ip', ['netns', 'exec', bench.name, 'nginx', '-c', nginxConfig()], { stdio: 'ignore' });
  try {
    for (let i = 0; ; i++) {
      try {
        bench.inNs(process.execPath, [
          '-e',
          `fetch('http://127.0.0.1:${PORT}/').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`,
        ]);
        break;
      } catch {
        if (i > 50) throw new Error('nginx did not answer');
        await sleep(100);
      }
    }
    const reader = await startReader(kind, bench);
    if (kind !== 'none') while (bench.listeners() < 1) await sleep(20);
    await sleep(1000);
    const before = {
      counter: bench.newCounter(),
      stats: bench.kernelStats(),
      cpu: reader.pid ? cpuSeconds(reader.pid) : 0,
      monitor: reader.report ? await reader.report() : null,
    };
    const out = bench.inNs('wrk', [
      '-t2',
      '-c50',
      `-d${SECONDS}s`,
      '-H',
      'Connection: close',
      `http://127.0.0.1:${PORT}/`,
    ]);
    const loadEnd = Date.now();
    const readerCpu = reader.pid ? cpuSeconds(reader.pid) - before.cpu : 0;
    const result = {
      round,
      reader: kind,
      requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]),
      readerCpuSeconds: readerCpu,
      readerCoreShare: readerCpu / SECONDS,
    };
    if (reader.report) {
      await sleep(2000);
      let seen;
      do seen = await reader.report();
      while (seen.sampleMs <= loadEnd + 2000 && (await sleep(100), true));
      let timeWait = 0;
      for (const line of bench
        .inNs('conntrack', ['-L', '-p', 'tcp'], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 30 })
        .split('\n'))
        if (line.trim().split(/\s+/)[3] === 'TIME_WAIT') timeWait++;
      const after = { counter: bench.newCounter(), stats: bench.kernelStats() };
      const created = after.counter - before.counter - (after.stats.insert_failed - before.stats.insert_failed);
      result.monitor = {
        path: seen.path,
        inserts: seen.insert - before.monitor.insert,
        created,
        insertsExact: seen.insert - before.monitor.insert === created,
        lost: seen.lostTotal - before.monitor.lostTotal,
        messagesReceived: seen.messages - before.monitor.messages,
        timeWait: seen.tcpStates?.TIME_WAIT ?? null,
        kernelTimeWait: timeWait,
      };
    }
    await reader.stop();
    return result;
  } finally {
    nginx.kill('SIGTERM');
    await new Promise((r) => nginx.on('close', r));
    bench.destroy();
  }
}

async function main() {
  const phases = [];
  try {
    for (let round = 0; round < ROUNDS; round++)
      for (const kind of READERS.map((_, i) => READERS[(i + round) % READERS.length])) {
        const p = await phase(kind, round);
        phases.push(p);
        console.error(JSON.stringify(p));
      }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const base = median(phases.filter((p) => p.reader === 'none').map((p) => p.requestsPerSecond));
  const summary = READERS.map((reader) => {
    const ps = phases.filter((p) => p.reader === reader);
    const rps = median(ps.map((p) => p.requestsPerSecond));
    return {
      reader,
      requestsPerSecond: rps,
      each: ps.map((p) => Math.round(p.requestsPerSecond)),
      ratio: rps / base,
      readerCoreShare: median(ps.map((p) => p.readerCoreShare)),
      monitor: ps.map((p) => p.monitor ?? null),
    };
  });
  const date = new Date().toISOString();
  const stamp = date.slice(0, 10);
  // wrk -v prints its version and exits 1.
  const wrkVersion = spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0];
  const machine = { ...describeMachine(), wrk: wrkVersion };
  const command = `node benchmarks/load-test.mjs --rounds ${ROUNDS} --seconds ${SECONDS} --readers ${READERS.join(',')}`;
  writeFileSync(
    join(here, 'results', `load-test-${stamp}.json`),
    `${JSON.stringify({ date, machine, command, summary, phases }, null, 2)}\n`,
  );
  const rows = summary.map(
    (s) =>
      `| ${s.reader}${s.monitor[0]?.path ? ` (${s.monitor[0].path})` : ''} | ${Math.round(s.requestsPerSecond)} (${s.each.join(', ')}) | **${s.ratio.toFixed(2)}** | ${s.reader === 'none' ? '' : `${(s.readerCoreShare * 100).toFixed(1)}%`} | ${s.monitor.every((m) => m === null) ? '' : s.monitor.map((m) => `${m.inserts}${m.insertsExact ? ' =' : ' ≠'} ${m.created}, lost ${m.lost}, received ${m.messagesReceived}, TIME_WAIT ${m.timeWait} / ${m.kernelTimeWait}`).join('; ')} |`,
  );
  const md = `# HTTP load test with and without a reader (${stamp})

Machine: Linux ${machine.kernel}, ${machine.cpus}, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.wrk}.
Command: \`${command}\`

wrk -t2 -c50 -d${SECONDS}s -H 'Connection: close' against nginx (return 200) in a private namespace with the kernel's default timeouts, a fresh namespace per phase, ${ROUNDS} interleaved rounds. Ratio: the median requests/s with the reader over the median with none. Reader CPU: its own process during the load, share of one core. Monitor: inserts = the nft counter's entries created (less insert_failed), events lost, messages it received, and its TIME_WAIT in its first sample 2 s after the load / conntrack -L's right after it, per round.

| reader | requests/s: median (each round) | throughput ratio | reader CPU | monitor: inserts = kernel, lost, received, TIME_WAIT monitor / kernel |
|---|---|---|---|---|
${rows.join('\n')}
`;
  writeFileSync(join(here, 'results', `load-test-${stamp}.md`), md);
  process.stdout.write(md);
}

await main();
