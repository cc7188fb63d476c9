#!/usr/bin/env node
// Soak benchmark: conntrack-monitor under a steady ~100,000 events/s for 10 minutes,
// recording its memory, descriptors and lost events over time.
//
//   node benchmarks/soak.mjs [--minutes 10] [--rate 50000] [--every 10] [--warmup SECONDS]
//
// Root. The namespace of event-rate.mjs (benchmarks/lib/bench.mjs): an nft `ct state new
// counter` rule (the kernel's count of entries created) and a 1 s UDP timeout. benchmarks/native
// loadgen, pinned to CPU 1, sends --rate datagrams/s for --minutes, each one a new UDP flow;
// conntrack-monitor runs in its own process (benchmarks/monitor-child.mjs, library defaults).
//
// Events/s are netlink messages the monitor reads. Each UDP flow gives one NEW event when it is
// created and one DESTROY event once its 1 s timeout has expired and the kernel reaps it, so in
// steady state --rate 50000 new flows/s is ~100,000 events/s; the default is therefore 50000.
// The results report the measured rate (messages received per second), not this estimate.
//
// Every --every seconds one row: elapsed s, the monitor process's RSS (VmRSS) and V8 heap, open
// fds (/proc/PID/fd), threads, events received so far and per second over the row, lost events
// (the monitor's lostTotal: SK_MEMINFO_DROPS of its event socket), resyncs, JS event-loop p99,
// the namespace's nf_conntrack_count and the entries the monitor tracks, and CPU: the monitor,
// the load generator, kernel threads and the rest of the host (a shared machine shows here).
// At the end: after the warm-up (default the first 60 s, or 10% of the run when that is
// shorter) RSS first/last/min/max and growth; events in all; lost; the kernel's ground truth
// (NEW events = nft counter less insert_failed, against the monitor's insert total; once the
// table has drained, every created entry has been destroyed, against its delete total);
// pass/fail of "RSS flat within 5% after warm-up" (max vs min, which bounds last vs first too)
// and "zero lost" (lostTotal 0 and the monitor's totals equal to the kernel's).
// Writes benchmarks/results/soak-<date>.{json,md}.
// Ctrl-C stops the run and removes the namespace and the child processes; it writes no results.
import { randomBytes } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  benchNamespace,
  buildTools,
  cpuSeconds,
  fdCount,
  machine as describeMachine,
  peakRssMiB,
  rssKiB,
  sleep,
  startMonitorChild,
  threads,
} from './lib/bench.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '50000' },
    every: { type: 'string', default: '10' },
    warmup: { type: 'string' },
  },
});
const SECONDS = Math.round(Number(values.minutes) * 60);
const RATE = Number(values.rate);
const EVERY = Number(values.every);
const WARMUP = values.warmup === undefined ? Math.min(60, SECONDS / 10) : Number(values.warmup);
if (!(SECONDS > 0 && RATE > 0 && EVERY > 0 && WARMUP >= 0 && WARMUP < SECONDS)) {
  console.error('usage: node benchmarks/soak.mjs [--minutes 10] [--rate 50000] [--every 10] [--warmup SECONDS]');
  process.exit(2);
}
const RSS_LIMIT_PCT = 5;
const SETTLE_S = 30; // after the load: how long to wait for the monitor to catch up and the table to drain
const nsName = `ctmon-bench-soak-${process.pid}-${randomBytes(4).toString('hex')}`;
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

// Everything started, for cleanup on any exit.
let bench = null;
let monitor = null;
let loadgen = null;
let cleaning = null;
const alive = (p) => p && p.exitCode === null && p.signalCode === null;
async function cleanup() {
  cleaning ??= (async () => {
    if (alive(loadgen)) loadgen.kill('SIGTERM');
    if (monitor && alive(monitor.child)) {
      const timer = setTimeout(() => alive(monitor.child) && monitor.child.kill('SIGKILL'), 5000);
      await monitor.stop();
      clearTimeout(timer);
    }
    bench?.destroy();
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping; no results written`);
    cleanup().finally(() => process.exit(128 + (signal === 'SIGINT' ? 2 : 15)));
  });
}
process.once('exit', () => {
  // Last resort (an exception on the way): synchronous kills and namespace removal.
  if (alive(loadgen)) loadgen.kill('SIGKILL');
  if (monitor && alive(monitor.child)) monitor.child.kill('SIGKILL');
  try {
    bench?.destroy();
  } catch {
    // nothing more can be done this late
  }
});

/** Busy and total jiffies of all CPUs (/proc/stat). */
function hostCpu() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal (guest is inside user)
  return { busy: total - f[3] - f[4] - f[7], total }; // less idle, iowait and steal
}

/** CPU seconds of each of the kernel's own threads (kthreadd's children: workers, ksoftirqd, ...), by pid. */
function kernelThreadsCpu() {
  const byPid = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      if (f[1] === '2' || pid === '2') byPid.set(pid, (Number(f[11]) + Number(f[12])) / TICK); // ppid kthreadd
    } catch {
      // the thread exited meanwhile
    }
  }
  return byPid;
}
/**
 * Their CPU seconds between two readings; a thread that exited meanwhile drops out, a new one
 * (or a reused pid) counts whole.
 */
const kernelThreadsDelta = (prev, cur) =>
  [...cur].reduce((sum, [pid, s]) => sum + (s >= (prev.get(pid) ?? 0) ? s - (prev.get(pid) ?? 0) : s), 0);

/** One reading of everything a row needs. */
async function snapshot() {
  const m = await monitor.report();
  const pid = monitor.child.pid;
  return {
    at: performance.now(),
    monitor: m,
    rssKiB: rssKiB(pid),
    fds: fdCount(pid),
    threads: threads(pid),
    cpu: cpuSeconds(pid),
    loadgenCpu: alive(loadgen) ? cpuSeconds(loadgen.pid) : null,
    host: hostCpu(),
    kthreads: kernelThreadsCpu(),
    tableCount: bench.tableCount(),
  };
}

function row(start, prev, cur, t0) {
  const span = (cur.monitor.sampleMs - prev.monitor.sampleMs) / 1000;
  const out = {
    elapsedS: Math.round((cur.at - t0) / 100) / 10,
    rssMiB: round(cur.rssKiB / 1024, 1),
    jsHeapMiB: round(cur.monitor.memory.heapTotal / 2 ** 20, 1),
    jsHeapUsedMiB: round(cur.monitor.memory.heapUsed / 2 ** 20, 1),
    externalMiB: round(cur.monitor.memory.external / 2 ** 20, 1),
    fds: cur.fds,
    threads: cur.threads,
    events: cur.monitor.messages - start.monitor.messages,
    eventsPerS: span > 0 ? Math.round((cur.monitor.messages - prev.monitor.messages) / span) : null,
    inserts: cur.monitor.insert - start.monitor.insert,
    deletes: cur.monitor.delete - start.monitor.delete,
    lostTotal: cur.monitor.lostTotal,
    resyncs: cur.monitor.resyncs,
    loopP99Ms: round(cur.monitor.loopP99Ms, 2),
    loopMaxMs: round(cur.monitor.loopMaxMs, 2),
    kernelTable: cur.tableCount,
    tracked: cur.monitor.tracked,
    monitorCpuPct: round(((cur.cpu - prev.cpu) / ((cur.at - prev.at) / 1000)) * 100, 1),
    loadgenCpuPct:
      cur.loadgenCpu === null
        ? null
        : round(((cur.loadgenCpu - (prev.loadgenCpu ?? 0)) / ((cur.at - prev.at) / 1000)) * 100, 1),
    hostCpuPct: round(((cur.host.busy - prev.host.busy) / (cur.host.total - prev.host.total)) * 100, 1),
  };
  // The rest of the host's busy time: kernel threads, and everything else (this script, and
  // whatever else runs on the machine), in % of one CPU.
  const wall = (cur.at - prev.at) / 1000;
  out.kernelThreadsCpuPct = round((kernelThreadsDelta(prev.kthreads, cur.kthreads) / wall) * 100, 1);
  const hostBusyCpus = (cur.host.busy - prev.host.busy) / TICK / wall;
  out.otherCpuPct = round(
    Math.max(0, hostBusyCpus * 100 - out.monitorCpuPct - (out.loadgenCpuPct ?? 0) - out.kernelThreadsCpuPct),
    1,
  );
  return out;
}
const round = (x, d) => Math.round(x * 10 ** d) / 10 ** d;
const pct = (a, b) => round(((a - b) / b) * 100, 2);

async function main() {
  const tools = buildTools();
  const build = buildInfo(); // before the monitor loads the addon
  bench = benchNamespace(nsName);
  const loadavgStart = readFileSync('/proc/loadavg', 'utf8').trim();
  const kernelBefore = { stats: bench.kernelStats(), counter: bench.newCounter() };
  monitor = await startMonitorChild(bench.path, { stderr: 'pipe' });
  const monitorErrors = [];
  monitor.child.stderr.setEncoding('utf8').on('data', (d) => {
    process.stderr.write(d);
    monitorErrors.push(...d.split('\n').filter(Boolean));
  });
  while (bench.listeners() < 1) await sleep(20);
  // Subscribed; wait for a first sample (the initial dump is done) so rates have a start.
  let start = await snapshot();
  for (let i = 0; i < 50 && start.monitor.sampleMs === null; i++) {
    await sleep(100);
    start = await snapshot();
  }
  const fdsStart = start.fds;

  const t0 = performance.now();
  loadgen = spawn('ip', ['netns', 'exec', nsName, tools.loadgen, 'udp', String(RATE), String(SECONDS), '1'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let genOut = '';
  loadgen.stdout.setEncoding('utf8').on('data', (d) => (genOut += d));
  const loadDone = new Promise((r) => loadgen.once('close', r));
  console.error(
    `soak: ${SECONDS} s at ${RATE} new UDP flows/s, a row every ${EVERY} s, warm-up ${WARMUP} s; monitor pid ${monitor.child.pid}, namespace ${nsName}`,
  );

  const rows = [];
  let prev = start;
  for (let k = 1; k * EVERY <= SECONDS; k++) {
    await sleep(Math.max(0, t0 + k * EVERY * 1000 - performance.now()));
    const cur = await snapshot();
    const r = row(start, prev, cur, t0);
    rows.push(r);
    console.error(JSON.stringify(r));
    prev = cur;
  }
  const exitCode = await loadDone;
  if (exitCode !== 0) throw new Error(`loadgen exited with ${exitCode}`);
  const generator = JSON.parse(genOut);
  const loadEnd = prev;

  // The monitor may be behind (queued events are late, not lost), and the last entries are
  // destroyed only once their timeout has passed: wait until the table has drained and the
  // monitor has read nothing more for two polls, at most SETTLE_S.
  let end = await snapshot();
  const settleStart = performance.now();
  for (let quiet = 0; quiet < 2 && performance.now() - settleStart < SETTLE_S * 1000;) {
    await sleep(1000);
    const next = await snapshot();
    quiet = next.tableCount === 0 && next.monitor.messages === end.monitor.messages ? quiet + 1 : 0;
    end = next;
  }
  const settleS = round((performance.now() - settleStart) / 1000, 1);
  const kernelAfter = { stats: bench.kernelStats(), counter: bench.newCounter() };
  const peakRss = peakRssMiB(monitor.child.pid);
  const fdsEnd = end.fds;
  await cleanup();

  const generated = kernelAfter.counter - kernelBefore.counter;
  const insertFailed = kernelAfter.stats.insert_failed - kernelBefore.stats.insert_failed;
  const truth = {
    generated,
    insertFailed,
    created: generated - insertFailed,
    tableFullDrops: kernelAfter.stats.drop - kernelBefore.stats.drop,
    earlyDrops: kernelAfter.stats.early_drop - kernelBefore.stats.early_drop,
    tableDrained: end.tableCount === 0,
  };
  const received = {
    inserts: end.monitor.insert - start.monitor.insert,
    deletes: end.monitor.delete - start.monitor.delete,
    messages: end.monitor.messages - start.monitor.messages,
  };
  const lost = end.monitor.lostTotal - start.monitor.lostTotal;
  const insertsMissing = truth.created - received.inserts;
  const deletesMissing = truth.tableDrained ? truth.created - received.deletes : null;

  const after = rows.filter((r) => r.elapsedS >= WARMUP);
  const rss = after.map((r) => r.rssMiB);
  const rssSummary = {
    firstMiB: rss[0],
    lastMiB: rss.at(-1),
    minMiB: Math.min(...rss),
    maxMiB: Math.max(...rss),
    peakMiB: round(peakRss, 1),
  };
  rssSummary.growthLastVsFirstPct = pct(rssSummary.lastMiB, rssSummary.firstMiB);
  rssSummary.spreadMaxVsMinPct = pct(rssSummary.maxMiB, rssSummary.minMiB);
  const loadSpan = (loadEnd.monitor.sampleMs - start.monitor.sampleMs) / 1000;
  const firstAfter = rows.indexOf(after[0]);
  const warmBase = firstAfter > 0 ? rows[firstAfter - 1] : null;
  const rates = after.map((r) => r.eventsPerS);
  const events = {
    // Messages read while the load ran, per second of it.
    duringLoad: loadEnd.monitor.messages - start.monitor.messages,
    perSecond: Math.round((loadEnd.monitor.messages - start.monitor.messages) / loadSpan),
    // The same after the warm-up (rows after it only): the steady state.
    perSecondAfterWarmup: warmBase
      ? Math.round((rows.at(-1).events - warmBase.events) / (rows.at(-1).elapsedS - warmBase.elapsedS))
      : Math.round(rates.reduce((a, b) => a + b, 0) / rates.length),
    rowMinPerSecond: Math.min(...rates),
    rowMaxPerSecond: Math.max(...rates),
    // Everything, the drain after the load included.
    total: received.messages,
  };
  const pass = {
    rssFlat: rssSummary.spreadMaxVsMinPct <= RSS_LIMIT_PCT,
    zeroLost: lost === 0 && insertsMissing === 0 && (deletesMissing === null || deletesMissing === 0),
  };
  report({
    date: new Date().toISOString(),
    machine: {
      ...describeMachine(),
      nfConntrackMax: Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8')),
      loadavgStart,
      loadavgEnd: readFileSync('/proc/loadavg', 'utf8').trim(),
      note: 'loadgen pinned to CPU 1; monitor unpinned, library defaults (1 s interval, 32 MiB buffer, 60 s resync)',
    },
    build,
    command: `node benchmarks/soak.mjs --minutes ${values.minutes} --rate ${RATE} --every ${EVERY}${values.warmup === undefined ? '' : ` --warmup ${WARMUP}`}`,
    seconds: SECONDS,
    rate: RATE,
    everySeconds: EVERY,
    warmupSeconds: WARMUP,
    settleSeconds: settleS,
    generator,
    kernel: truth,
    monitor: { ...received, lost, resyncs: end.monitor.resyncs, insertsMissing, deletesMissing, errors: monitorErrors },
    events,
    rss: rssSummary,
    fds: {
      start: fdsStart,
      end: fdsEnd,
      min: Math.min(...rows.map((r) => r.fds)),
      max: Math.max(...rows.map((r) => r.fds)),
    },
    threads: { start: start.threads, end: end.threads },
    pass,
    rows,
  });
}

/**
 * Which code was measured: the commit, the addon file, and the native sources that differ from
 * the commit, split by whether they were changed before the addon was built (so may be in it)
 * or after (not in it).
 */
function buildInfo() {
  const root = join(here, '..');
  const git = (...args) => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8' }).replace(/\n$/, '');
  const addon = join(root, 'build', 'Release', 'conntrack_monitor.node');
  const built = statSync(addon).mtimeMs;
  const changed = git('status', '--porcelain', '--', 'native', 'binding.gyp')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.slice(3));
  const changedAt = (f) => statSync(join(root, f), { throwIfNoEntry: false })?.mtimeMs ?? Infinity;
  return {
    commit: git('log', '-1', '--format=%h'),
    commitDate: git('log', '-1', '--format=%cI'),
    addonBuilt: new Date(built).toISOString(),
    addonSha256: createHash('sha256').update(readFileSync(addon)).digest('hex').slice(0, 16),
    nativeChangesBeforeBuild: changed.filter((f) => changedAt(f) <= built),
    nativeChangesAfterBuild: changed.filter((f) => changedAt(f) > built),
  };
}

function report(r) {
  const stamp = r.date.slice(0, 10);
  const name = `soak-${stamp}`;
  writeFileSync(join(here, 'results', `${name}.json`), `${JSON.stringify(r, null, 2)}\n`);
  const n = (x) => (x === null || x === undefined ? 'n/a' : Number(x).toLocaleString('en-US'));
  const yes = (ok) => (ok ? '**PASS**' : '**FAIL**');
  const m = r.machine;
  // Where events were lost, and how much of the machine was taken by others meanwhile.
  const lossRows = r.rows.filter((x, i) => x.lostTotal > (i ? r.rows[i - 1].lostTotal : 0));
  const others = r.rows.map((x) => x.otherCpuPct);
  const fullRows = r.rows.filter((x) => x.hostCpuPct >= 99).map((x) => `${x.elapsedS} s`);
  const table = r.rows.map(
    (x) =>
      `| ${x.elapsedS}${x.elapsedS < r.warmupSeconds ? ' (warm-up)' : ''} | ${x.rssMiB.toFixed(1)} | ${x.jsHeapMiB.toFixed(1)} | ${x.fds} | ${x.threads} | ${n(x.events)} | ${n(x.eventsPerS)} | ${n(x.lostTotal)} | ${x.resyncs} | ${x.loopP99Ms.toFixed(2)} | ${n(x.kernelTable)} | ${n(x.tracked)} | ${x.monitorCpuPct} | ${x.loadgenCpuPct ?? 'n/a'} | ${x.kernelThreadsCpuPct} | ${x.otherCpuPct} | ${x.hostCpuPct} |`,
  );
  const md = `# Soak: conntrack-monitor, ${n(r.rate)} new UDP flows/s (~${n(r.rate * 2)} events/s) for ${r.seconds / 60} min (${stamp})

Machine: Linux ${m.kernel}, ${m.cpus}, ${m.memoryGiB} GiB, Node ${m.node}; nf_conntrack_max ${n(m.nfConntrackMax)}; ${m.note}. Load average at start ${m.loadavgStart.split(' ').slice(0, 3).join(' ')}, at end ${m.loadavgEnd.split(' ').slice(0, 3).join(' ')}.
Code: commit ${r.build.commit} (${r.build.commitDate}); addon built ${r.build.addonBuilt}, sha256 ${r.build.addonSha256}${r.build.nativeChangesBeforeBuild.length ? `; native sources changed from the commit before that build: ${r.build.nativeChangesBeforeBuild.join(', ')}` : ''}${r.build.nativeChangesAfterBuild.length ? `; changed after it (not measured): ${r.build.nativeChangesAfterBuild.join(', ')}` : ''}.
Command: \`${r.command}\`

Load: ${n(r.rate)} new UDP flows/s asked (loadgen sent ${n(r.generator.sent)} in ${r.generator.seconds} s, ${n(r.generator.rate)}/s; ${n(r.generator.failed)} failed). Each flow is one NEW event and, once its 1 s timeout has passed, one DESTROY event. Events are the netlink messages the monitor read.

## Summary

| | |
|---|---|
| events/s measured (messages read per second of load) | **${n(r.events.perSecond)}** (after warm-up ${n(r.events.perSecondAfterWarmup)}; rows ${n(r.events.rowMinPerSecond)} to ${n(r.events.rowMaxPerSecond)}) |
| events read | ${n(r.events.duringLoad)} during the load; ${n(r.events.total)} in all, with the drain after it (${n(r.monitor.inserts)} NEW + ${n(r.monitor.deletes)} DESTROY) |
| lost events (monitor lostTotal) | **${n(r.monitor.lost)}** |
| kernel: NEW events generated (nft counter ${n(r.kernel.generated)} less insert_failed ${n(r.kernel.insertFailed)}) | ${n(r.kernel.created)}; the monitor counted ${n(r.monitor.inserts)} inserts (${n(r.monitor.insertsMissing)} missing) |
| kernel: table drained after the load | ${r.kernel.tableDrained ? `yes, so ${n(r.kernel.created)} entries were destroyed; the monitor counted ${n(r.monitor.deletes)} deletes (${n(r.monitor.deletesMissing)} missing)` : `no (within ${SETTLE_S} s): DESTROY totals not checked`} |
| kernel: table-full drops / early drops | ${n(r.kernel.tableFullDrops)} / ${n(r.kernel.earlyDrops)} |
| resyncs (re-dumps: every 60 s, and repairs after loss or drift) | ${r.monitor.resyncs} |
| RSS after warm-up (${r.warmupSeconds} s): first / last / min / max | ${r.rss.firstMiB} / ${r.rss.lastMiB} / ${r.rss.minMiB} / ${r.rss.maxMiB} MiB (peak VmHWM over the run ${r.rss.peakMiB} MiB) |
| RSS growth after warm-up | last vs first ${r.rss.growthLastVsFirstPct}%, max vs min ${r.rss.spreadMaxVsMinPct}% |
| fds start / end (min / max of the rows) | ${r.fds.start} / ${r.fds.end} (${r.fds.min} / ${r.fds.max}) |
| threads start / end | ${r.threads.start} / ${r.threads.end} |
| monitor errors | ${r.monitor.errors.length ? r.monitor.errors.join('; ') : 'none'} |
| rows in which events were lost | ${lossRows.length ? lossRows.map((x) => `${x.elapsedS} s (${n(x.lostTotal)} lost in all)`).join(', ') : 'none'} |
| CPU of everything else on the host (not the monitor, loadgen or kernel threads), % of one CPU | mean ${round(others.reduce((a, b) => a + b, 0) / others.length, 1)}, max ${Math.max(...others)}; host ≥ 99% busy in rows ${fullRows.length ? fullRows.join(', ') : 'none'} |
| RSS flat within ${RSS_LIMIT_PCT}% after warm-up (max vs min) | ${yes(r.pass.rssFlat)} |
| zero lost (lostTotal 0 and every NEW${r.kernel.tableDrained ? ' and DESTROY' : ''} the kernel generated counted) | ${yes(r.pass.zeroLost)} |

## Rows

RSS is VmRSS of the monitor process (Node and the addon), JS heap its V8 heap (heapTotal; the JSON has heapUsed and external too); fds and threads are its /proc/PID/fd and Threads; events/s is over the row, from the monitor's samples; loop p99 is the JS event-loop delay over the row; kernel table is the namespace's nf_conntrack_count, tracked the entries the monitor tracks; CPU, in % of one CPU: the monitor process; the load generator (with the kernel work done in its system calls: creating entries, queueing NEW events); the kernel's threads (workers reaping expired entries, which queues the DESTROY events; softirqs); and the rest of the host's busy time (this script, and anything else running on the machine). Host busy is in % of all ${m.cpus.split(' ')[0]} CPUs.

| elapsed s | RSS MiB | JS heap MiB | fds | threads | events | events/s | lost | resyncs | loop p99 ms | kernel table | tracked | monitor CPU % | loadgen CPU % | kernel threads CPU % | other CPU % | host busy % |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
${table.join('\n')}
`;
  writeFileSync(join(here, 'results', `${name}.md`), md);
  process.stdout.write(md);
}

try {
  await main();
} finally {
  await cleanup();
}
