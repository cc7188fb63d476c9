#!/usr/bin/env node
// Cost of one table snapshot (topEntries / conntrack-monitor top) at scale: the dump's kernel
// time against the grouping's user time.
//
//   node benchmarks/top.mjs [--entries 262144] [--runs 7]
//
// Root. Makes a private namespace, fills its table with --entries UDP flows (as dump.mjs does:
// one datagram to each of --entries loopback addresses, its UDP timeout raised to 600 s so
// nothing expires mid-run), then takes --runs snapshots through the addon (NativeSnapshot, the
// code behind topEntries). Each reports its own thread's CPU from getrusage(RUSAGE_THREAD):
// system time is the kernel walking every bucket of the global hash and filling the replies;
// user time is decoding plus grouping, and the thread CPU clock splits those two. Every entry
// has its own destination address, so the destination map holds one key per entry: the
// grouping's worst case. For comparison it times the shell pipeline people use
// (conntrack -L | awk | sort | uniq -c | sort -rn | head).
// nf_conntrack_max is raised only when --entries exceeds it, and restored in any case.
// Writes benchmarks/results/top-<date>.{json,md}. Everything it makes is removed.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { machine } from './lib/bench.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { loadBinding } = createRequire(import.meta.url)('../dist/native.js');
const { values } = parseArgs({
  options: { entries: { type: 'string', default: '262144' }, runs: { type: 'string', default: '7' } },
});
const ENTRIES = Number(values.entries);
const RUNS = Number(values.runs);
const ns = `ctmon-bench-top-${process.pid}`;
const MAX_PATH = '/proc/sys/net/netfilter/nf_conntrack_max';
const inNs = (file, args, opts = {}) =>
  execFileSync('ip', ['netns', 'exec', ns, file, ...args], { encoding: 'utf8', maxBuffer: 1 << 30, ...opts });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const r1 = (x) => Math.round(x * 10) / 10;

async function snapshot() {
  const { NativeSnapshot } = loadBinding();
  const s = new NativeSnapshot({
    netnsPath: `/var/run/netns/${ns}`,
    limit: 10,
    receiveTimeoutMs: 2000,
    deadlineMs: 120000,
  });
  return s.start();
}

async function main() {
  const savedMax = readFileSync(MAX_PATH, 'utf8').trim();
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    if (ENTRIES > Number(savedMax)) writeFileSync(MAX_PATH, String(ENTRIES));
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    inNs('nft', ['-f', '-'], {
      input: 'table inet bench {\n chain out { type filter hook output priority 0; ct state new counter; }\n}\n',
    });
    inNs('sysctl', ['-q', '-w', 'net.netfilter.nf_conntrack_udp_timeout=600']);
    const fill = JSON.parse(inNs('python3', [join(here, 'fill-table.py'), String(ENTRIES)]));
    const kernelCount = Number(inNs('cat', ['/proc/sys/net/netfilter/nf_conntrack_count']));
    console.error(`filled: ${fill.sent} sent, ${fill.failed} failed; kernel count ${kernelCount}`);

    const runs = [];
    await snapshot(); // warm-up: page the addon in, touch the table once
    for (let i = 0; i < RUNS; i++) {
      const r = await snapshot();
      runs.push({ entries: r.entries, ...r.cost });
      console.error(
        `run ${i + 1}: ${r.entries} entries, wall ${r1(r.cost.wallMs)} ms, kernel ${r1(r.cost.systemMs)} ms, user ${r1(r.cost.userMs)} ms (decode ${r1(r.cost.decodeMs)}, group ${r1(r.cost.groupMs)})`,
      );
    }
    const pipeline = [];
    for (let i = 0; i < Math.min(RUNS, 3); i++) {
      const t = process.hrtime.bigint();
      inNs('sh', [
        '-c',
        "conntrack -L 2>/dev/null | awk '{for(i=1;i<=NF;i++) if ($i ~ /^dst=/) {print $i; break}}' | sort | uniq -c | sort -rn | head -10 > /dev/null",
      ]);
      pipeline.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    const m = (key) => r1(median(runs.map((x) => x[key])));
    const result = {
      date: new Date().toISOString(),
      machine: {
        ...machine(),
        buckets: Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_buckets', 'utf8')),
        max: Number(readFileSync(MAX_PATH, 'utf8')),
        conntrackTools: (spawnSync('conntrack', ['--version'], { encoding: 'utf8' }).stdout || '').trim(),
      },
      command: `node benchmarks/top.mjs --entries ${ENTRIES} --runs ${RUNS}`,
      entries: kernelCount,
      snapshot: {
        wallMs: m('wallMs'),
        kernelMs: m('systemMs'),
        userMs: m('userMs'),
        decodeMs: m('decodeMs'),
        groupMs: m('groupMs'),
        groupMiB: r1(median(runs.map((x) => x.groupBytes)) / 2 ** 20),
        datagrams: median(runs.map((x) => x.datagrams)),
        runs,
      },
      shellPipelineMs: { median: Math.round(median(pipeline)), all: pipeline.map(Math.round) },
    };
    result.groupingShareOfKernel = r1((result.snapshot.groupMs / result.snapshot.kernelMs) * 100);
    const stamp = result.date.slice(0, 10);
    writeFileSync(join(here, 'results', `top-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
    const s = result.snapshot;
    const md = `# One table snapshot of a ${kernelCount.toLocaleString('en')}-entry table (${stamp})

Machine: Linux ${result.machine.kernel}, ${result.machine.cpus}, ${result.machine.memoryGiB} GiB, Node ${result.machine.node}; nf_conntrack_buckets ${result.machine.buckets}.
Command: \`${result.command}\` (root; the machine may have been shared).

Every entry has its own destination address (fill-table.py), so the destination group counts ${kernelCount.toLocaleString('en')} distinct keys: the grouping's worst case.
CPU of the snapshot thread (getrusage RUSAGE_THREAD; decode and group from the thread CPU clock), medians of ${RUNS} runs:

| what | median |
|---|---|
| wall time of the snapshot | **${s.wallMs} ms** |
| kernel (system) time: the dump walking ${result.machine.buckets} buckets and filling ${s.datagrams} replies | **${s.kernelMs} ms** |
| user time: decoding + grouping | ${s.userMs} ms |
| of which decoding | ${s.decodeMs} ms |
| of which grouping (4 maps, top 10 by partial sort) | **${s.groupMs} ms** (${result.groupingShareOfKernel}% of the kernel time) |
| address space of the grouping's maps, sized for the namespace's count (pages are touched only where keys land; freed with the snapshot) | ${s.groupMiB} MiB |
| \`conntrack -L \\| awk \\| sort \\| uniq -c \\| sort -rn \\| head\` (destinations only) | ${result.shellPipelineMs.median} ms (${result.shellPipelineMs.all.join(', ')}) |

Per run: ${runs.map((x) => `${r1(x.wallMs)}/${r1(x.systemMs)}/${r1(x.groupMs)}`).join(', ')} ms (wall/kernel/group).
`;
    writeFileSync(join(here, 'results', `top-${stamp}.md`), md);
    process.stdout.write(md);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
    if (readFileSync(MAX_PATH, 'utf8').trim() !== savedMax) writeFileSync(MAX_PATH, savedMax);
  }
}

await main();
