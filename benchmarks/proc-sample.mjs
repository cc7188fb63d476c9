#!/usr/bin/env node
// Cost of one /proc sample (the proc backend's per-interval work), side by side with the
// conntrack-tools commands that give the same numbers.
//
//   node benchmarks/proc-sample.mjs [--samples 2000] [--runs 21]
//
// Measures, in one run on this host's namespace:
//   - ProcReader.read(): the files one proc sample reads (count, max, buckets, events, TIME_WAIT
//     timeout, /proc/net/stat/nf_conntrack, /proc/net/sockstat), parsed; --samples in a row,
//     as wall time per sample and process CPU per sample;
//   - the per-interval delta work on top (StatDeltas.update);
//   - `conntrack -S` + `conntrack -C` (conntrack-tools' stats and count), --runs times: what an
//     agent that shells out pays for the same counters.
// Writes benchmarks/results/proc-sample-<date>.{json,md}.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { procPaths, ProcReader, StatDeltas } = createRequire(import.meta.url)('../dist/backends/procfs.js');
const { values } = parseArgs({
  options: { samples: { type: 'string', default: '2000' }, runs: { type: 'string', default: '21' } },
});
const SAMPLES = Number(values.samples);
const RUNS = Number(values.runs);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const reader = new ProcReader(procPaths());
const deltas = new StatDeltas();
for (let i = 0; i < 50; i++) deltas.update(reader.read().stat); // warm up

const perSampleUs = [];
const cpuStart = process.cpuUsage();
for (let i = 0; i < SAMPLES; i++) {
  const t = process.hrtime.bigint();
  const reading = reader.read();
  if (reading.stat) deltas.update(reading.stat);
  perSampleUs.push(Number(process.hrtime.bigint() - t) / 1000);
}
const cpu = process.cpuUsage(cpuStart);

const toolsMs = [];
for (let i = 0; i < RUNS; i++) {
  const t = process.hrtime.bigint();
  execFileSync('conntrack', ['-S'], { stdio: 'ignore' });
  execFileSync('conntrack', ['-C'], { stdio: 'ignore' });
  toolsMs.push(Number(process.hrtime.bigint() - t) / 1e6);
}

const result = {
  date: new Date().toISOString(),
  machine: {
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    conntrackTools: (spawnSync('conntrack', ['--version'], { encoding: 'utf8' }).stdout || '').trim(),
    cpuRows: reader.read().stat?.rows.length ?? null,
  },
  procSample: {
    medianUs: Math.round(median(perSampleUs)),
    p99Us: Math.round([...perSampleUs].sort((a, b) => a - b)[Math.floor(perSampleUs.length * 0.99)]),
    cpuUsPerSample: Math.round((cpu.user + cpu.system) / SAMPLES),
    samples: SAMPLES,
  },
  conntrackToolsSAndC: { medianMs: Math.round(median(toolsMs) * 10) / 10, runs: RUNS },
};
result.ratio = Math.round((result.conntrackToolsSAndC.medianMs * 1000) / result.procSample.medianUs);
const stamp = result.date.slice(0, 10);
writeFileSync(join(here, 'results', `proc-sample-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
const md = `# Cost of one /proc sample (${stamp})

Machine: Linux ${result.machine.kernel}, ${result.machine.cpus}, ${result.machine.memoryGiB} GiB, Node ${result.machine.node}, ${result.machine.conntrackTools}; ${result.machine.cpuRows} CPU rows in /proc/net/stat/nf_conntrack.
Command: \`node benchmarks/proc-sample.mjs --samples ${SAMPLES} --runs ${RUNS}\`

| what | median | other |
|---|---|---|
| one proc sample: 7 files re-read (pread on open descriptors) and parsed, per-CPU deltas | **${result.procSample.medianUs} µs** wall | p99 ${result.procSample.p99Us} µs; ${result.procSample.cpuUsPerSample} µs CPU per sample over ${SAMPLES} |
| \`conntrack -S\` + \`conntrack -C\` (same counters from conntrack-tools) | ${result.conntrackToolsSAndC.medianMs} ms | ${RUNS} runs |

A proc sample costs 1/${result.ratio} of shelling out to conntrack-tools for the same numbers. At the default 1 s interval that is ${(result.procSample.cpuUsPerSample / 10000).toFixed(3)}% of one CPU.
`;
writeFileSync(join(here, 'results', `proc-sample-${stamp}.md`), md);
process.stdout.write(md);
