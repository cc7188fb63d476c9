#!/usr/bin/env node
// Host cost of reading conntrack events: the marginal busy CPU of the whole host (all CPUs,
// /proc/stat) while a load runs with a reader attached, minus the same load with no reader.
// It includes what the kernel spends building, filtering and queueing each event, which is
// charged to the sender's context, not to the reader's process.
//
//   node benchmarks/host-cost.mjs [--mode udp|tcp] [--rates 100000,150000,max] [--rounds 3]
//        [--readers none,conntrack-E,monitor,monitor-classic,count-only] [--seconds 5] [--wait 20]
//        [--tag NAME]
//
// Root. A private namespace with an nft `ct state new counter` rule (the kernel's count of
// entries created) and 1 s UDP / TIME_WAIT timeouts. Each phase: the namespace's table emptied
// of expired entries (a dump evicts them) outside the window; the reader started and
// subscribed; /proc/stat read; benchmarks/native loadgen pinned to CPU 1 for --seconds at the
// rate; a fixed --wait while the kernel reaps the entries (their DESTROY work counts too);
// /proc/stat read again. Readers:
//   none             nobody listens: with nf_conntrack_events=2 the kernel builds no event
//   conntrack-E      `conntrack -E -e NEW,DESTROY` to /dev/null (conntrack-tools)
//   conntrack-E-all  `conntrack -E` to /dev/null: every event, as a user follows TCP states
//   monitor          conntrack-monitor as shipped (the eBPF event path where it loads)
//   monitor-classic  conntrack-monitor with the classic filter (every event queued)
//   monitor@DIR      conntrack-monitor as built in another checkout DIR (before and after a
//                    change in one run: e.g. monitor@/tmp/base, a worktree of the old commit)
//   count-only       benchmarks/native/count_only_reader: the count-only eBPF program, the
//                    least an event reader can cost
//   count-only-all   the same joined to the UPDATE group too: the least a reader that follows
//                    TCP states through events can cost (the kernel builds every message)
// Rounds interleave the readers (each round in a rotated order); the marginal of a reader is
// its phase minus the no-reader phase of the same round and rate; medians over rounds; ratios
// to conntrack-E-all where it ran, else to conntrack-E. In tcp mode, 3 s after the load the
// monitor's TIME_WAIT and CLOSE counts (its first sample after that moment) are compared with
// conntrack -L's, listed right after that sample.
// Writes benchmarks/results/host-cost-<mode>[-<tag>]-<date>.{json,md}.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  benchNamespace,
  buildTools,
  cpuSeconds,
  machine as describeMachine,
  sleep,
  startCountOnlyReader,
  startMonitorChild,
} from './lib/bench.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'udp' },
    rates: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    readers: { type: 'string', default: 'none,conntrack-E,monitor,monitor-classic,count-only' },
    seconds: { type: 'string', default: '5' },
    wait: { type: 'string', default: '20' },
    tag: { type: 'string' },
  },
});
const MODE = values.mode;
const RATES = (values.rates ?? (MODE === 'tcp' ? '2000,max' : '100000,150000,max'))
  .split(',')
  .map((r) => (r === 'max' ? 0 : Number(r)));
const ROUNDS = Number(values.rounds);
const READERS = values.readers.split(',');
const SECONDS = Number(values.seconds);
const WAIT = Number(values.wait);
const KNOWN = ['none', 'conntrack-E', 'conntrack-E-all', 'monitor', 'monitor-classic', 'count-only', 'count-only-all'];
const REFERENCE = READERS.includes('conntrack-E-all') ? 'conntrack-E-all' : 'conntrack-E';
for (const r of READERS)
  if (!KNOWN.includes(r) && !r.startsWith('monitor@'))
    throw new Error(`unknown reader ${r} (${KNOWN.join(', ')}, monitor@DIR)`);
if (!READERS.includes('none')) throw new Error('the readers must include none: marginals are measured against it');
const nsName = `ctmon-bench-host-${process.pid}`;
let bench;

/** Busy ticks of all CPUs so far: user + nice + system + irq + softirq + steal. */
function busyTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return user + nice + system + irq + softirq + steal;
}

/** Empties the table of expired entries (a dump evicts what it meets) and waits for the count. */
async function drain() {
  for (let i = 0; i < 60; i++) {
    bench.inNs('conntrack', ['-L'], { stdio: ['ignore', 'ignore', 'ignore'] });
    if (bench.tableCount() < 64) return;
    await sleep(500);
  }
}

/** Starts a reader; returns { pid, report?, stop } where stop() resolves to its own summary. */
async function startReader(kind) {
  if (kind === 'none') return { pid: null, stop: async () => ({}) };
  if (kind === 'monitor' || kind === 'monitor-classic' || kind.startsWith('monitor@')) {
    const m = await startMonitorChild(bench.path, {
      classic: kind === 'monitor-classic',
      loopDelay: false,
      checkout: kind.startsWith('monitor@') ? kind.slice('monitor@'.length) : null,
    });
    return {
      pid: m.child.pid,
      report: m.report,
      stop: async () => {
        await m.stop();
        return {};
      },
    };
  }
  if (kind === 'conntrack-E' || kind === 'conntrack-E-all') {
    const only = kind === 'conntrack-E' ? ['-e', 'NEW,DESTROY'] : [];
    const p = spawn('ip', ['netns', 'exec', nsName, 'conntrack', '-E', ...only], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    return {
      pid: p.pid,
      stop: async () => {
        p.kill('SIGINT');
        await new Promise((r) => p.on('close', r));
        return {
          shown: Number(/(\d+) flow events have been shown/.exec(err)?.[1] ?? NaN),
          enobufs: /ENOBUFS/.test(err),
        };
      },
    };
  }
  const reader = await startCountOnlyReader(bench.path, { all: kind === 'count-only-all' });
  return { pid: reader.child.pid, stop: reader.stop };
}

async function phase(tools, kind, rate) {
  await drain();
  const reader = await startReader(kind);
  if (kind !== 'none') while (bench.listeners() < 1) await sleep(20);
  await sleep(1000); // the monitor's initial dump and first samples are outside the window
  const before = {
    busy: busyTicks(),
    counter: bench.newCounter(),
    stats: bench.kernelStats(),
    cpu: reader.pid ? cpuSeconds(reader.pid) : 0,
    monitor: reader.report ? await reader.report() : null,
  };
  const gen = JSON.parse(bench.inNs(tools.loadgen, [MODE, String(rate), String(SECONDS), '1']));
  const loadEnd = Date.now();
  const floodCpu = reader.pid ? cpuSeconds(reader.pid) - before.cpu : 0;
  // Its samples during the load: how many could not vouch for their TIME_WAIT count.
  const during = reader.report ? await reader.report() : null;
  let states = null;
  if (MODE === 'tcp' && reader.report) {
    // The monitor's first sample from 3 s after the load, then the kernel's listing.
    await sleep(3000);
    let seen;
    do seen = await reader.report();
    while (seen.sampleMs <= loadEnd + 3000 && (await sleep(100), true));
    const listed = { TIME_WAIT: 0, CLOSE: 0 };
    for (const line of bench
      .inNs('conntrack', ['-L', '-p', 'tcp'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')) {
      const state = line.trim().split(/\s+/)[3];
      if (state in listed) listed[state]++;
    }
    const reported = seen.tcpStates && { TIME_WAIT: seen.tcpStates.TIME_WAIT, CLOSE: seen.tcpStates.CLOSE };
    states = { monitor: reported, kernel: listed, equal: JSON.stringify(reported) === JSON.stringify(listed) };
  }
  await sleep(Math.max(0, WAIT * 1000 - (Date.now() - loadEnd)));
  const after = {
    busy: busyTicks(),
    counter: bench.newCounter(),
    stats: bench.kernelStats(),
    cpu: reader.pid ? cpuSeconds(reader.pid) : 0,
    monitor: reader.report ? await reader.report() : null,
  };
  const own = await reader.stop();
  const created = after.counter - before.counter - (after.stats.insert_failed - before.stats.insert_failed);
  const result = {
    reader: kind,
    requestedRate: rate || 'max',
    generator: gen,
    created,
    busyTicks: after.busy - before.busy,
    readerCpuSeconds: after.cpu - before.cpu,
    readerCoreShareDuringLoad: floodCpu / gen.seconds,
  };
  if (after.monitor) {
    result.monitor = {
      path: after.monitor.path,
      inserts: after.monitor.insert - before.monitor.insert,
      deletes: after.monitor.delete - before.monitor.delete,
      lost: after.monitor.lostTotal - before.monitor.lostTotal,
      messagesReceived: after.monitor.messages - before.monitor.messages,
      resyncs: after.monitor.resyncs - before.monitor.resyncs,
    };
    result.monitor.insertsExact = result.monitor.inserts === created;
    result.monitor.samplesDuringLoad = { samples: during.samples, timeWaitUnknown: during.unknownTimeWait ?? null };
    if (states) result.monitor.statesAfter3s = states;
  }
  if (kind.startsWith('conntrack-E')) result.conntrackE = own;
  if (kind.startsWith('count-only')) result.countOnly = { ...own, insertsExact: own.new === created };
  return result;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : null;
};

async function main() {
  const tools = buildTools();
  bench = benchNamespace(nsName);
  const phases = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const rate of RATES) {
        const order = READERS.map((_, i) => READERS[(i + round) % READERS.length]);
        for (const kind of order) {
          const p = { round, ...(await phase(tools, kind, rate)) };
          phases.push(p);
          console.error(JSON.stringify(p));
        }
      }
    }
  } finally {
    bench.destroy();
  }
  report(phases);
}

function report(phases) {
  const date = new Date().toISOString();
  const stamp = date.slice(0, 10);
  const machine = {
    ...describeMachine(),
    conntrackTools: execFileSync('conntrack', ['--version'], { encoding: 'utf8' }).trim(),
    tick: Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })),
  };
  const summary = [];
  for (const rate of RATES) {
    const at = phases.filter((p) => p.requestedRate === (rate || 'max'));
    const none = (round) => at.find((p) => p.round === round && p.reader === 'none');
    const conntrackE = median(
      at.filter((p) => p.reader === REFERENCE).map((p) => p.busyTicks - none(p.round).busyTicks),
    );
    for (const reader of READERS) {
      const ps = at.filter((p) => p.reader === reader);
      const marginal = reader === 'none' ? 0 : median(ps.map((p) => p.busyTicks - none(p.round).busyTicks));
      summary.push({
        rate: rate || 'max',
        reader,
        rounds: ps.length,
        achievedRate: Math.round(median(ps.map((p) => p.created / p.generator.seconds))),
        busyTicks: median(ps.map((p) => p.busyTicks)),
        marginalTicks: marginal,
        marginalTicksEach: ps.map((p) => p.busyTicks - none(p.round).busyTicks),
        // The sender's own CPU (loadgen's user+system), which the kernel's packet-path work on
        // its flows, NEW events included, is charged to: less noisy than the host's total.
        senderCpuSeconds: median(ps.map((p) => p.generator.cpuSeconds)),
        senderMarginalSeconds:
          reader === 'none' ? 0 : median(ps.map((p) => p.generator.cpuSeconds - none(p.round).generator.cpuSeconds)),
        ratioToConntrackE: conntrackE ? marginal / conntrackE : null,
        lost: ps.map((p) => p.monitor?.lost ?? (p.conntrackE ? (p.conntrackE.enobufs ? 'ENOBUFS' : 0) : null)),
        insertsExact: ps.map((p) => p.monitor?.insertsExact ?? p.countOnly?.insertsExact ?? null),
        messagesReceived: ps.map((p) => p.monitor?.messagesReceived ?? null),
        readerCoreShareDuringLoad: median(ps.map((p) => p.readerCoreShareDuringLoad)),
        path: ps[0]?.monitor?.path ?? null,
        statesAfter3s: ps.map((p) => p.monitor?.statesAfter3s ?? null),
        samplesDuringLoad: ps.map((p) => p.monitor?.samplesDuringLoad ?? null),
      });
    }
  }
  const tag = values.tag ? `-${values.tag.replace(/[^A-Za-z0-9_.-]/g, '_')}` : '';
  const name = `host-cost-${MODE}${tag}-${stamp}`;
  const command = `node benchmarks/host-cost.mjs --mode ${MODE} --rates ${RATES.map((r) => r || 'max').join(',')} --rounds ${ROUNDS} --readers ${READERS.join(',')} --seconds ${SECONDS} --wait ${WAIT}${values.tag ? ` --tag ${values.tag}` : ''}`;
  writeFileSync(
    join(here, 'results', `${name}.json`),
    `${JSON.stringify({ date, machine, command, summary, phases }, null, 2)}\n`,
  );
  const f = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : Number(x).toFixed(d));
  const rows = summary.map(
    (s) =>
      `| ${s.rate} | ${s.achievedRate}/s | ${s.reader}${s.path ? ` (${s.path})` : ''} | ${s.reader === 'none' ? `${s.busyTicks} busy` : `+${f(s.marginalTicks, 0)} (${s.marginalTicksEach.join(', ')})`} | ${s.reader === 'none' ? '' : `**${f(s.ratioToConntrackE)}**`} | ${s.reader === 'none' ? `${f(s.senderCpuSeconds)} s` : `+${f(s.senderMarginalSeconds)} s`} | ${s.lost.join(', ')} | ${s.insertsExact.every((x) => x === null) ? '' : s.insertsExact.join(', ')} | ${s.messagesReceived.every((x) => x === null) ? '' : s.messagesReceived.join(', ')} | ${s.reader === 'none' ? '' : `${f(s.readerCoreShareDuringLoad * 100, 1)}%`} |${MODE === 'tcp' ? ` ${s.statesAfter3s.every((x) => x === null) ? '' : s.statesAfter3s.map((x) => (x ? `${x.monitor ? `${x.monitor.TIME_WAIT}, ${x.monitor.CLOSE}` : 'null'} / ${x.kernel.TIME_WAIT}, ${x.kernel.CLOSE}` : '')).join('; ')} | ${s.samplesDuringLoad.every((x) => x === null) ? '' : s.samplesDuringLoad.map((x) => `${x.timeWaitUnknown ?? '?'} of ${x.samples}`).join(', ')} |` : ''}`,
  );
  const md = `# Host cost of reading conntrack events (${MODE}, ${stamp})

Machine: Linux ${machine.kernel}, ${machine.cpus}, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.conntrackTools}; ${machine.tick} ticks/s.
Command: \`${command}\`

Busy ticks of all CPUs (/proc/stat user+nice+system+irq+softirq+steal) from the start of a ${SECONDS} s load (loadgen pinned to CPU 1) to ${WAIT} s after it, while the kernel reaps the entries. Marginal = the phase with the reader minus the no-reader phase of the same round and rate (each round's values in brackets), median over ${ROUNDS} interleaved rounds; the ratio is to ${REFERENCE === 'conntrack-E' ? '`conntrack -E -e NEW,DESTROY`' : '`conntrack -E` (every event)'}'s median marginal. "Lost": events the monitor's socket could not queue (SK_MEMINFO_DROPS), or whether conntrack -E saw ENOBUFS. "Inserts exact": the reader's inserts equal the entries the kernel created (nft counter less insert_failed). "Received": messages queued to and read by the monitor. Sender CPU: loadgen's own user+system time (the kernel's work on its packets, NEW events included, is charged to it), marginal to the no-reader phase: less noisy than the host's total on a shared machine, but without the DESTROY work of the kernel's garbage collector. Reader CPU: its own process during the load, share of one core.${MODE === 'tcp' ? " TIME_WAIT, CLOSE: the monitor's counts in its first sample 3 s after the load, and conntrack -L's right after it (monitor / kernel, per round). TIME_WAIT unknown: the monitor's samples during the load whose TIME_WAIT count was null (flows past their deadline it had not yet verified with a walk of the table), per round." : ''}

| rate asked | achieved | reader | marginal ticks | ratio to ${REFERENCE.replace('-all', ' (all)')} | sender CPU | lost | inserts exact | received | reader CPU during load |${MODE === 'tcp' ? ' TIME_WAIT, CLOSE 3 s after | TIME_WAIT unknown during the load |' : ''}
|---|---|---|---|---|---|---|---|---|---|${MODE === 'tcp' ? '---|---|' : ''}
${rows.join('\n')}
`;
  writeFileSync(join(here, 'results', `${name}.md`), md);
  process.stdout.write(md);
}

await main();
