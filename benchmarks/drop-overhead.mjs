#!/usr/bin/env node
// Overhead of the eBPF drop probe (DropMonitor): nanoseconds per skb:kfree_skb invocation of the
// attached program, and what it costs a packet-heavy workload.
//
//   node benchmarks/drop-overhead.mjs [--seconds 5] [--runs 5]
//
// Root. In a private namespace (benchmarks/lib/bench.mjs), benchmarks/native loadgen sends UDP
// datagrams as fast as it can (pinned to CPU 1), each a new flow to a loopback address where
// nothing listens, so every datagram ends in kfree_skb (NO_SOCKET): the program's common path,
// which returns after checking the drop reason. Per run, alternating:
//   - without the probe: datagrams/s;
//   - with it attached and BPF run-time stats held (BPF_ENABLE_STATS): datagrams/s, and the
//     kernel's run_cnt and run_time_ns for the program: ns per invocation;
//   - "table full": the same with nf_conntrack_max lowered to 1 (restored in finally), so every
//     datagram is a table-full drop and the program takes its full path (BTF-guided reads,
//     per-namespace count, flow map update).
// Reports medians. Writes benchmarks/results/drop-overhead-<date>.{json,md}.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchNamespace, buildTools, machine } from './lib/bench.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { loadBinding } = createRequire(import.meta.url)('../dist/native.js');
const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '5' }, runs: { type: 'string', default: '5' } },
});
const SECONDS = Number(values.seconds);
const RUNS = Number(values.runs);
const MAX = '/proc/sys/net/netfilter/nf_conntrack_max';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const binding = loadBinding();
const reason = binding.dropProbeAvailable();
if (reason) {
  console.error(`drop-overhead: the probe cannot run here: ${reason}`);
  process.exit(1);
}
const { loadgen } = buildTools();
const ns = benchNamespace(`ctmon-bench-drops-${process.pid}-${randomBytes(4).toString('hex')}`);
process.on('SIGINT', () => {
  ns.destroy();
  process.exit(130);
});

const send = () => JSON.parse(ns.inNs(loadgen, ['udp', '0', String(SECONDS), '1'])).rate;
function withProbe(body) {
  const probe = new binding.NativeDropProbe({ maxFlows: 4096 });
  binding._bpfRunTimeStats(true);
  try {
    const before = probe.stats();
    const rate = body();
    const after = probe.stats();
    const runs = after.runCount - before.runCount;
    return {
      rate,
      runs,
      nsPerRun: (after.runTimeNs - before.runTimeNs) / runs,
      drops: probe.namespaces().reduce((t, n) => t + n.drops, 0),
    };
  } finally {
    binding._bpfRunTimeStats(false);
    probe.close();
  }
}
function tableFull(body) {
  const saved = readFileSync(MAX, 'utf8').trim();
  writeFileSync(MAX, '1');
  try {
    return body();
  } finally {
    writeFileSync(MAX, saved);
  }
}

const rows = [];
try {
  for (let run = 0; run < RUNS; run++) {
    const without = send();
    const common = withProbe(send);
    const full = tableFull(() => withProbe(send));
    const row = { run, without, common, full };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
} finally {
  ns.destroy();
}

const summary = {
  date: new Date().toISOString().slice(0, 10),
  machine: machine(),
  command: `node benchmarks/drop-overhead.mjs --seconds ${SECONDS} --runs ${RUNS}`,
  program: (() => {
    const p = new binding.NativeDropProbe({ maxFlows: 4096 });
    const s = p.stats();
    p.close();
    return { instructions: s.instructions };
  })(),
  medians: {
    datagramsPerSecondWithout: median(rows.map((r) => r.without)),
    datagramsPerSecondWith: median(rows.map((r) => r.common.rate)),
    nsPerRunCommonPath: median(rows.map((r) => r.common.nsPerRun)),
    runsPerDatagramCommonPath: median(rows.map((r) => r.common.runs / (r.common.rate * SECONDS))),
    nsPerRunTableFull: median(rows.map((r) => r.full.nsPerRun)),
    tableFullDropsCounted: median(rows.map((r) => r.full.drops)),
  },
  rows,
};
summary.medians.throughputRatio = summary.medians.datagramsPerSecondWith / summary.medians.datagramsPerSecondWithout;
const m = summary.medians;
const md = `# eBPF drop probe overhead (${summary.date})

Machine: Linux ${summary.machine.kernel}, ${summary.machine.cpus}, ${summary.machine.memoryGiB} GiB, Node ${summary.machine.node}; loadgen pinned to CPU 1.
Command: \`${summary.command}\`. Program: ${summary.program.instructions} instructions (as loaded), tp_btf on skb:kfree_skb.

Every datagram goes to a loopback address where nothing listens, so each ends in kfree_skb. Medians of ${RUNS} runs of ${SECONDS} s.

| | |
|---|---|
| ns per program run, common path (not a table-full drop: returns after the reason check) | **${m.nsPerRunCommonPath.toFixed(1)}** |
| program runs per datagram | ${m.runsPerDatagramCommonPath.toFixed(2)} |
| ns per program run, table-full drop (full path: namespace and flow maps) | **${m.nsPerRunTableFull.toFixed(1)}** |
| datagrams/s without the probe | ${Math.round(m.datagramsPerSecondWithout)} |
| datagrams/s with the probe | ${Math.round(m.datagramsPerSecondWith)} (ratio ${m.throughputRatio.toFixed(3)}) |

| run | datagrams/s without | with | ns/run | runs | table full: ns/run | drops counted |
|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.run} | ${Math.round(r.without)} | ${Math.round(r.common.rate)} | ${r.common.nsPerRun.toFixed(1)} | ${r.common.runs} | ${r.full.nsPerRun.toFixed(1)} | ${r.full.drops} |`).join('\n')}
`;
const out = join(here, 'results', `drop-overhead-${summary.date}`);
writeFileSync(`${out}.json`, `${JSON.stringify(summary, null, 2)}\n`);
writeFileSync(`${out}.md`, md);
console.log(md);
