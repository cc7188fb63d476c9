#!/usr/bin/env node
// What watching a whole node costs: --namespaces network namespaces (default 110, a busy
// Kubernetes node's pods), one holding a --entries table (default ~200k, UDP timeout raised so
// it stays), two with steady new flows (--flow-rate each, 1 s UDP timeout, so NEW and DESTROY
// flow all the time), the rest idle; each with an nft `ct state new counter` rule.
//
//   node benchmarks/node-scale.mjs [--namespaces 110] [--entries 200000] [--flow-rate 1000]
//                                  [--seconds 60] [--rounds 1] [--old] [--note TEXT]
//
// Root. Per round, in one run, with the same load running in each phase:
//   - baseline: no monitor;
//   - node: AllNamespacesMonitor (one reader thread, every namespace's counts, TCP states and
//     TIME_WAIT from the flow table in the kernel);
//   - per-namespace (--old): the engine it replaced, a full ConntrackMonitor per namespace.
// Each phase measures, from the monitor's start, --seconds of the host's busy CPU time (all
// CPUs, /proc/stat: user+nice+system+irq+softirq+steal; the kernel's work of building and
// delivering events is charged to the senders, not to the reader); the marginal host CPU is a
// phase's minus the baseline's of the same round; and the same from a third of the window on
// (steady state: after the start and its listing of the big table). Also the monitor process's
// own CPU, its peak and final RSS and its threads. Half-way, a namespace is created (time until a report has it)
// and later deleted (time until reports drop it); the baseline does the same, for the same cost.
// Then exactness: the flows stop, and a known burst runs in the two flow namespaces and three
// idle ones; every namespace's inserts over the burst must equal its nft counter's increase,
// and every namespace's entries (but the two whose 1 s flows are still being reaped) its
// nf_conntrack_count.
// Writes benchmarks/results/node-scale-<date>.{json,md}. Every namespace it makes is deleted,
// also on failure or Ctrl-C.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildTools, cpuSeconds, machine, peakRssMiB, rssKiB, sleep, threads } from './lib/bench.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    namespaces: { type: 'string', default: '110' },
    entries: { type: 'string', default: '200000' },
    'flow-rate': { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '60' },
    rounds: { type: 'string', default: '1' },
    old: { type: 'boolean', default: false },
    note: { type: 'string' },
  },
});
const COUNT = Number(values.namespaces);
const ENTRIES = Number(values.entries);
const FLOW_RATE = Number(values['flow-rate']);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const INTERVAL_MS = 1000;
const prefix = `ctmon-bench-node-${process.pid}`;
const names = Array.from({ length: COUNT }, (_, i) => `${prefix}-${String(i).padStart(3, '0')}`);
const [BIG, FLOW_A, FLOW_B] = names;
const BURST_IDLE = names.slice(3, 6);
const LATE = `${prefix}-late`;
const RULES = 'table inet bench {\n chain out { type filter hook output priority 0; ct state new counter; }\n}\n';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const made = new Set();
const inNs = (ns, file, args, opts = {}) =>
  execFileSync('ip', ['netns', 'exec', ns, file, ...args], { encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
function makeNamespace(name) {
  execFileSync('ip', ['netns', 'add', name]);
  made.add(name);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  inNs(name, 'nft', ['-f', '-'], { input: RULES });
}
function deleteNamespaces(list) {
  if (list.length === 0) return;
  // -force: one that is already gone does not stop the others.
  execFileSync('ip', ['-force', '-batch', '-'], {
    input: list.map((n) => `netns del ${n}\n`).join(''),
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  for (const n of list) made.delete(n);
}
const cleanup = () => {
  try {
    deleteNamespaces([...made]);
  } catch {
    // best effort, also from the exit handler
  }
};
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

const nftNew = (ns) =>
  Number(/counter packets (\d+)/.exec(inNs(ns, 'nft', ['list', 'chain', 'inet', 'bench', 'out']))[1]);
const count = (ns) => Number(inNs(ns, 'cat', ['/proc/sys/net/netfilter/nf_conntrack_count']));

/** busy and total jiffies of all CPUs */
function cpuTimes() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f; // idle and iowait are not busy
  return { busy: user + nice + system + irq + softirq + steal };
}
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** The two flow namespaces' generators, for `seconds`. */
function startFlows(loadgen, seconds) {
  return [FLOW_A, FLOW_B].map((ns) =>
    spawn('ip', ['netns', 'exec', ns, loadgen, 'udp', String(FLOW_RATE), String(seconds)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
}
const stopFlows = (gens) =>
  Promise.all(
    gens.map((g) =>
      g.exitCode !== null
        ? null
        : new Promise((r) => {
            g.once('close', r);
            g.kill('SIGTERM');
          }),
    ),
  );

function startChild(engine) {
  const child = spawn(process.execPath, [join(here, 'node-scale-child.mjs'), engine, String(INTERVAL_MS)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const events = { seen: new Map(), gone: new Map(), ready: null, reports: [] };
  createInterface({ input: child.stdout }).on('line', (line) => {
    const m = JSON.parse(line);
    if (m.seen) events.seen.set(m.seen, m.t);
    else if (m.gone) events.gone.set(m.gone, m.t);
    else if (m.ready) events.ready = m.t;
    else if (m.namespaces) events.reports.shift()?.(m.namespaces);
  });
  const report = () =>
    new Promise((resolve) => {
      events.reports.push(resolve);
      child.stdin.write('report\n');
    });
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('close', resolve);
      child.stdin.end();
    });
  return { child, events, report, stop };
}

async function phase(engine, loadgen) {
  const gens = startFlows(loadgen, SECONDS + 30);
  await sleep(3000); // flows steady
  const start = cpuTimes();
  const startedAt = Date.now();
  const mon = engine === 'baseline' ? null : startChild(engine);
  let peakThreads = 0;
  const sampler = setInterval(() => {
    if (mon && mon.child.exitCode === null) peakThreads = Math.max(peakThreads, threads(mon.child.pid));
  }, 1000);
  // A third of the way: the steady state's start.
  await sleep((SECONDS * 1000) / 3);
  const steady = { busy: cpuTimes().busy, at: Date.now(), monitorCpu: mon ? cpuSeconds(mon.child.pid) : 0 };
  // Half-way: a namespace made while running, then deleted.
  await sleep(Math.max(0, startedAt + (SECONDS * 1000) / 2 - Date.now()));
  const lateMade = Date.now();
  makeNamespace(LATE);
  await sleep((SECONDS * 1000) / 4);
  const lateDeleted = Date.now();
  deleteNamespaces([LATE]);
  await sleep(Math.max(0, startedAt + SECONDS * 1000 - Date.now()));
  const end = cpuTimes();
  clearInterval(sampler);
  const result = {
    engine,
    hostBusySeconds: (end.busy - start.busy) / TICK,
    wallSeconds: (Date.now() - startedAt) / 1000,
    steadyHostBusySeconds: (end.busy - steady.busy) / TICK,
    steadyWallSeconds: (Date.now() - steady.at) / 1000,
    // The flow generators' own CPU since they started (3 s before the window): where the
    // kernel charges building and delivering each event, a share that does not depend on
    // what else runs on a shared machine.
    generatorCpuSeconds: gens.reduce((t, g) => t + (g.exitCode === null ? cpuSeconds(g.pid) : NaN), 0),
  };
  if (mon) {
    const allNames = names.filter((n) => mon.events.seen.has(n));
    Object.assign(result, {
      monitorCpuSeconds: cpuSeconds(mon.child.pid),
      steadyMonitorCpuSeconds: cpuSeconds(mon.child.pid) - steady.monitorCpu,
      peakRssMiB: peakRssMiB(mon.child.pid),
      rssMiB: rssKiB(mon.child.pid) / 1024,
      threads: threads(mon.child.pid),
      peakThreads,
      namespacesReported: allNames.length,
      allReportedAfterMs:
        allNames.length === COUNT ? Math.max(...allNames.map((n) => mon.events.seen.get(n))) - startedAt : null,
      lateReportedAfterMs: mon.events.seen.has(LATE) ? mon.events.seen.get(LATE) - lateMade : null,
      lateGoneAfterMs: mon.events.gone.has(LATE) ? mon.events.gone.get(LATE) - lateDeleted : null,
    });
    // Exactness: flows stopped, a known burst, then every namespace against its kernel counters.
    await stopFlows(gens);
    await sleep(2.5 * INTERVAL_MS);
    const burstIn = [FLOW_A, FLOW_B, ...BURST_IDLE];
    const n0 = Object.fromEntries(names.map((n) => [n, nftNew(n)]));
    const t0 = await mon.report();
    const gen = burstIn.map((ns, i) =>
      JSON.parse(inNs(ns, loadgen, ['udp', String(i < 2 ? FLOW_RATE : 100), i < 2 ? '2' : '1'])),
    );
    await sleep(2.5 * INTERVAL_MS);
    const t1 = await mon.report();
    const n1 = Object.fromEntries(names.map((n) => [n, nftNew(n)]));
    const counts = Object.fromEntries(names.map((n) => [n, count(n)]));
    const t2 = await mon.report(); // entries read after the kernel's: the nearer in time
    const wrongInserts = [];
    const wrongEntries = [];
    for (const n of names) {
      const inserts = (t1[n]?.insert ?? NaN) - (t0[n]?.insert ?? NaN);
      if (inserts !== n1[n] - n0[n]) wrongInserts.push({ ns: n, monitor: inserts, kernel: n1[n] - n0[n] });
      if (n !== FLOW_A && n !== FLOW_B && t2[n]?.entries !== counts[n])
        wrongEntries.push({ ns: n, monitor: t2[n]?.entries, kernel: counts[n] });
    }
    result.exact = {
      burst: Object.fromEntries(
        burstIn.map((ns, i) => [
          ns,
          { sent: gen[i].sent, kernel: n1[ns] - n0[ns], monitor: t1[ns].insert - t0[ns].insert },
        ]),
      ),
      bigTable: { kernel: counts[BIG], monitor: t2[BIG]?.entries },
      namespacesChecked: names.length,
      wrongInserts,
      wrongEntries,
      lostEvents: names.reduce((s, n) => s + (t1[n]?.lost ?? 0), 0),
      counting: [...new Set(names.map((n) => t1[n]?.counting))],
    };
    await mon.stop();
  } else {
    await stopFlows(gens);
  }
  return result;
}

async function main() {
  const { loadgen } = buildTools();
  const maxBefore = readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').trim();
  console.error(`making ${COUNT} namespaces...`);
  for (const n of names) makeNamespace(n);
  inNs(BIG, 'sysctl', ['-q', '-w', 'net.netfilter.nf_conntrack_udp_timeout=3600']);
  for (const ns of [FLOW_A, FLOW_B]) inNs(ns, 'sysctl', ['-q', '-w', 'net.netfilter.nf_conntrack_udp_timeout=1']);
  console.error(`filling ${BIG} with ${ENTRIES} entries...`);
  const fill = JSON.parse(inNs(BIG, 'python3', [join(here, 'fill-table.py'), String(ENTRIES)]));
  console.error(`filled: ${fill.sent} sent, ${fill.failed} failed; kernel count ${count(BIG)}`);

  const engines = ['baseline', 'node', ...(values.old ? ['per-namespace'] : [])];
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    const round = {};
    for (const engine of engines) {
      console.error(`round ${r + 1}/${ROUNDS}: ${engine}, ${SECONDS} s...`);
      round[engine] = await phase(engine, loadgen);
      console.error(JSON.stringify(round[engine]));
    }
    for (const engine of engines.slice(1)) {
      round[engine].marginalHostSeconds = round[engine].hostBusySeconds - round.baseline.hostBusySeconds;
      round[engine].marginalCoreShare = round[engine].marginalHostSeconds / round[engine].wallSeconds;
      round[engine].steadyMarginalCoreShare =
        (round[engine].steadyHostBusySeconds - round.baseline.steadyHostBusySeconds) / round[engine].steadyWallSeconds;
    }
    rounds.push(round);
  }
  const summary = Object.fromEntries(
    engines.slice(1).map((e) => [
      e,
      {
        marginalCoreSharePct: 100 * median(rounds.map((r) => r[e].marginalCoreShare)),
        monitorCoreSharePct: 100 * median(rounds.map((r) => r[e].monitorCpuSeconds / r[e].wallSeconds)),
        steadyMarginalCoreSharePct: 100 * median(rounds.map((r) => r[e].steadyMarginalCoreShare)),
        steadyMonitorCoreSharePct:
          100 * median(rounds.map((r) => r[e].steadyMonitorCpuSeconds / r[e].steadyWallSeconds)),
        generatorExtraCpuSeconds: median(rounds.map((r) => r[e].generatorCpuSeconds - r.baseline.generatorCpuSeconds)),
        peakRssMiB: Math.max(...rounds.map((r) => r[e].peakRssMiB)),
        threads: Math.max(...rounds.map((r) => r[e].peakThreads)),
        allReportedAfterMs: Math.max(...rounds.map((r) => r[e].allReportedAfterMs ?? Infinity)),
        lateReportedAfterMs: Math.max(...rounds.map((r) => r[e].lateReportedAfterMs ?? Infinity)),
        lateGoneAfterMs: Math.max(...rounds.map((r) => r[e].lateGoneAfterMs ?? Infinity)),
        exact: rounds.every((r) => r[e].exact.wrongInserts.length === 0 && r[e].exact.wrongEntries.length === 0),
      },
    ]),
  );
  const date = new Date().toISOString().slice(0, 10);
  const out = {
    date,
    machine: machine(),
    // What else ran on the machine meanwhile is not something the script can know: --note says it.
    note: values.note ?? null,
    settings: {
      namespaces: COUNT,
      entries: ENTRIES,
      flowRate: FLOW_RATE,
      seconds: SECONDS,
      rounds: ROUNDS,
      intervalMs: INTERVAL_MS,
    },
    fill,
    summary,
    rounds,
  };
  const base = join(here, 'results', `node-scale-${date}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(out, null, 2)}\n`);
  const pct = (x) => (x === undefined ? '-' : `${x.toFixed(2)}%`);
  const md = [
    `# Node scale, ${date}`,
    '',
    `${COUNT} namespaces (one with ${count(BIG)} entries, two with ${FLOW_RATE} new UDP flows/s each, the rest idle), ` +
      `${SECONDS} s from the monitor's start (steady state: its last ${Math.round((SECONDS * 2) / 3)} s), ${ROUNDS} round(s), medians. Machine: ${out.machine.kernel}, ${out.machine.cpus}.${out.note ? ` ${out.note}.` : ''}`,
    '',
    '| engine | marginal host CPU (% of one core) | monitor process CPU | steady state: marginal host CPU, monitor process | flow generators: extra CPU | peak RSS | threads | all reported after | new one reported after | deleted one gone after | inserts and entries exact |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...Object.entries(summary).map(
      ([e, s]) =>
        `| ${e} | ${pct(s.marginalCoreSharePct)} | ${pct(s.monitorCoreSharePct)} | ${pct(s.steadyMarginalCoreSharePct)}, ${pct(s.steadyMonitorCoreSharePct)} | ${s.generatorExtraCpuSeconds.toFixed(2)} s | ${s.peakRssMiB.toFixed(1)} MiB | ${s.threads} | ` +
        `${s.allReportedAfterMs} ms | ${s.lateReportedAfterMs} ms | ${s.lateGoneAfterMs} ms | ${s.exact ? 'yes' : 'NO'} |`,
    ),
    '',
    `Command: \`node benchmarks/node-scale.mjs --namespaces ${COUNT} --entries ${ENTRIES} --flow-rate ${FLOW_RATE} --seconds ${SECONDS} --rounds ${ROUNDS}${values.old ? ' --old' : ''}\``,
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, md);
  process.stdout.write(md);
  if (readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').trim() !== maxBefore)
    throw new Error('nf_conntrack_max changed during the run');
}

try {
  await main();
} finally {
  cleanup();
}
