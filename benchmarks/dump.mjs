#!/usr/bin/env node
// Cost of a full table dump and resync at scale, side by side with conntrack-tools.
//
//   node benchmarks/dump.mjs [--entries 262144] [--runs 7]
//
// Root. Makes a private namespace, fills its table with --entries UDP flows (its UDP timeout
// raised to 600 s there so nothing expires mid-run), then measures, in one run:
//   - conntrack-monitor: the initial dump and --runs periodic resyncs (dump + reconcile into
//     the tracked table), from the sample's events.lastResyncMs; table memory per entry;
//   - conntrack -L > /dev/null and cat /proc/net/nf_conntrack, --runs times each;
//   - raw-dump.py: a minimal reader that decodes nothing, to show how much is the kernel's.
// CPU time of the monitor process over its dumps is split into user (decode + tracked table)
// and system (the kernel filling and copying the dump).
// Writes benchmarks/results/dump-<date>.{json,md}. Everything it makes is removed.
import { randomBytes } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { writeFileSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
// The native monitor directly: its raw samples also carry the tracked table's allocation.
const { loadBinding } = createRequire(import.meta.url)('../dist/native.js');
const { values } = parseArgs({
  options: { entries: { type: 'string', default: '262144' }, runs: { type: 'string', default: '7' } },
});
const ENTRIES = Number(values.entries);
const RUNS = Number(values.runs);
const ns = `ctmon-bench-dump-${process.pid}-${randomBytes(4).toString('hex')}`;
const inNs = (file, args, opts = {}) =>
  execFileSync('ip', ['netns', 'exec', ns, file, ...args], { encoding: 'utf8', maxBuffer: 1 << 30, ...opts });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const timeMs = (fn) => {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
};

function machine() {
  return {
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    conntrackTools:
      spawnSync('conntrack', ['--version'], { encoding: 'utf8' }).stdout.trim() ||
      spawnSync('conntrack', ['--version'], { encoding: 'utf8' }).stderr.trim(),
    buckets: Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_buckets', 'utf8')),
    max: Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8')),
  };
}

async function main() {
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    inNs('nft', ['-f', '-'], {
      input: 'table inet bench {\n chain out { type filter hook output priority 0; ct state new counter; }\n}\n',
    });
    inNs('sysctl', ['-q', '-w', 'net.netfilter.nf_conntrack_udp_timeout=600']);
    const fill = JSON.parse(inNs('python3', [join(here, 'fill-table.py'), String(ENTRIES)]));
    const kernelCount = Number(inNs('cat', ['/proc/sys/net/netfilter/nf_conntrack_count']));
    console.error(`filled: ${fill.sent} sent, ${fill.failed} failed; kernel count ${kernelCount}\n`);

    const rssBefore = process.memoryUsage().rss;
    const resyncMs = [];
    let initialMs = null;
    let tracked = 0;
    let tableBytes = 0;
    let onSample;
    const { NativeMonitor } = loadBinding();
    const monitor = new NativeMonitor(
      { netnsPath: `/var/run/netns/${ns}`, intervalMs: 1000, receiveBufferBytes: 32 << 20, resyncIntervalMs: 2000 },
      (records) => {
        for (const r of records) {
          if (r.type === 'error') console.error(r.error.message);
          else onSample?.(r.sample);
        }
      },
    );
    monitor.start();
    let cpuStart = null;
    while (resyncMs.length < RUNS) {
      const s = await new Promise((resolve) => (onSample = resolve));
      tracked = s.tracked.entries;
      tableBytes = s.tableBytes;
      if (s.resyncs === 0) {
        initialMs = s.lastResyncMs;
        cpuStart = process.cpuUsage();
      } else if (s.resyncs > resyncMs.length) resyncMs.push(s.lastResyncMs);
    }
    const cpu = process.cpuUsage(cpuStart);
    const rssAfter = process.memoryUsage().rss;
    monitor.stop();

    const conntrackL = [];
    const procRead = [];
    const rawDump = [];
    for (let i = 0; i < RUNS; i++) {
      rawDump.push(Number(inNs('python3', [join(here, 'raw-dump.py')])));
      conntrackL.push(timeMs(() => inNs('sh', ['-c', 'conntrack -L -f ipv4 > /dev/null 2>&1'])));
      procRead.push(timeMs(() => inNs('sh', ['-c', 'cat /proc/net/nf_conntrack > /dev/null'])));
    }
    const shellBaseline = median(Array.from({ length: RUNS }, () => timeMs(() => inNs('sh', ['-c', 'true']))));

    const result = {
      date: new Date().toISOString(),
      machine: machine(),
      entries: kernelCount,
      tracked,
      monitor: {
        initialDumpMs: initialMs,
        resyncMs: { median: median(resyncMs), all: resyncMs },
        cpuPerResyncMs: { user: Math.round(cpu.user / 1000 / RUNS), system: Math.round(cpu.system / 1000 / RUNS) },
        rssGrowthMiB: Math.round(((rssAfter - rssBefore) / 2 ** 20) * 10) / 10,
        tableBytes,
      },
      conntrackL: { medianMs: Math.round(median(conntrackL) - shellBaseline), all: conntrackL.map(Math.round) },
      rawDumpFloor: { medianMs: median(rawDump), all: rawDump },
      procNfConntrack: { medianMs: Math.round(median(procRead) - shellBaseline), all: procRead.map(Math.round) },
      note: 'conntrack -L and cat times are wall times of the command minus the median cost of starting `ip netns exec sh -c true`.',
    };
    result.ratio = Math.round((result.conntrackL.medianMs / result.monitor.resyncMs.median) * 10) / 10;
    const stamp = result.date.slice(0, 10);
    writeFileSync(join(here, 'results', `dump-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
    const md = `# Full dump of a ${kernelCount.toLocaleString('en')}-entry table (${stamp})

Machine: Linux ${result.machine.kernel}, ${result.machine.cpus}, ${result.machine.memoryGiB} GiB, Node ${result.machine.node}, ${result.machine.conntrackTools}; nf_conntrack_buckets ${result.machine.buckets}.
Command: \`node benchmarks/dump.mjs --entries ${ENTRIES} --runs ${RUNS}\`

| what | median | runs |
|---|---|---|
| conntrack-monitor resync (dump + reconcile into the tracked table) | **${result.monitor.resyncMs.median.toFixed(1)} ms** | ${resyncMs.map((x) => x.toFixed(0)).join(', ')} |
| conntrack-monitor initial dump | ${initialMs?.toFixed(1)} ms | 1 |
| \`conntrack -L -f ipv4 > /dev/null\` | ${result.conntrackL.medianMs} ms | ${result.conntrackL.all.join(', ')} |
| minimal Python reader that only walks the reply headers (raw-dump.py) | ${result.rawDumpFloor.medianMs} ms | ${result.rawDumpFloor.all.join(', ')} |
| \`cat /proc/net/nf_conntrack > /dev/null\` | ${result.procNfConntrack.medianMs} ms | ${result.procNfConntrack.all.join(', ')} |

CPU per resync, monitor process: ${result.monitor.cpuPerResyncMs.user} ms user (decoding and the tracked table), ${result.monitor.cpuPerResyncMs.system} ms system (the kernel walking its ${result.machine.buckets} buckets and filling the dump).
conntrack -L takes ${result.ratio}x the time of a conntrack-monitor resync. Tracked entries after the dump: ${tracked}.
Memory: the tracked table holds ${result.monitor.tableBytes ?? '?'} bytes (${result.monitor.tableBytes ? (result.monitor.tableBytes / tracked).toFixed(1) : '?'} bytes per entry); process RSS grew ${result.monitor.rssGrowthMiB} MiB while monitoring.
`;
    writeFileSync(join(here, 'results', `dump-${stamp}.md`), md);
    process.stdout.write(md);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

await main();
