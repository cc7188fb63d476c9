#!/usr/bin/env node
// Event-rate benchmark: conntrack-monitor and `conntrack -E -e NEW` (conntrack-tools) on the
// same load at the same time, in one run.
//
//   node benchmarks/event-rate.mjs [--rates 50000,100000,150000,max] [--seconds 10] [--mode udp|tcp]
//
// Root. A private namespace with an nft `ct state new counter` rule in its output chain (the
// kernel's count of entries created = NEW events generated) and 1 s UDP / TIME_WAIT timeouts
// there. Per rate: a fresh conntrack-monitor process and a fresh `conntrack -E`, both
// subscribed before the load starts; benchmarks/native loadgen pinned to CPU 1 for --seconds;
// then, for each reader: events received, lost, CPU seconds per million events
// (/proc/PID/stat utime+stime), peak RSS (VmHWM), and for conntrack-monitor the JS event-loop
// delay p99 and the number of JS callbacks. Writes benchmarks/results/event-rate-<date>.{json,md}.
import { randomBytes } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  benchNamespace,
  buildTools,
  cpuSeconds,
  machine as describeMachine,
  peakRssMiB,
  sleep,
  startMonitorChild,
} from './lib/bench.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '50000,100000,150000,max' },
    seconds: { type: 'string', default: '10' },
    mode: { type: 'string', default: 'udp' },
    alone: { type: 'boolean', default: false },
  },
});
// --alone: conntrack-monitor without the other readers, to see its own limits.
const ALONE = values.alone;
const SECONDS = Number(values.seconds);
const RATES = values.rates.split(',').map((r) => (r === 'max' ? 0 : Number(r)));
const nsName = `ctmon-bench-rate-${process.pid}-${randomBytes(4).toString('hex')}`;
let bench; // the namespace's helpers, once created

async function phase({ loadgen, nullReader }, rate) {
  const { path: nsPath, inNs, kernelStats, newCounter, listeners } = bench;
  // The floor: the same socket, read the same way, messages thrown away.
  const floor = ALONE ? null : spawn(nullReader, [nsPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const floorLines = floor && createInterface({ input: floor.stdout });
  if (floorLines) await new Promise((r) => floorLines.once('line', r));
  // conntrack-monitor, in its own process.
  const { child, report } = await startMonitorChild(nsPath);
  // conntrack -E, reading NEW events, printing them to /dev/null (its cheapest output); on
  // SIGINT it says how many it showed.
  const reference = spawn(
    'ip',
    ['netns', 'exec', nsName, ...(ALONE ? ['sleep', '3600'] : ['conntrack', '-E', '-e', 'NEW'])],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let referenceWarnings = '';
  reference.stderr.on('data', (d) => (referenceWarnings += d));
  while (listeners() < (ALONE ? 1 : 3)) await sleep(20);
  await sleep(300);

  const before = {
    stats: kernelStats(),
    counter: newCounter(),
    monitor: await report(),
    monitorCpu: cpuSeconds(child.pid),
    refCpu: cpuSeconds(reference.pid),
  };
  const started = Date.now();
  const gen = JSON.parse(inNs(loadgen, [values.mode, String(rate), String(SECONDS), '1']));
  const duringLoad = await report(); // the event-loop delay of the loaded period
  // Readers may be behind on a busy 2-core box: queued events are late, not lost. Wait until
  // the monitor has seen every created entry (or the kernel says it lost some), at most 20 s;
  // conntrack -E gets the same time.
  const created = newCounter() - before.counter - (kernelStats().insert_failed - before.stats.insert_failed);
  let settled = duringLoad;
  for (
    let i = 0;
    i < 20 && settled.insert - before.monitor.insert < created && settled.lostTotal === before.monitor.lostTotal;
    i++
  ) {
    await sleep(1000);
    const next = await report();
    settled = {
      ...next,
      loopP99Ms: duringLoad.loopP99Ms,
      loopMaxMs: duringLoad.loopMaxMs,
      samples: settled.samples + next.samples,
    };
  }
  const elapsed = (Date.now() - started) / 1000;
  const after = {
    stats: kernelStats(),
    counter: newCounter(),
    monitor: settled,
    monitorCpu: cpuSeconds(child.pid),
    refCpu: cpuSeconds(reference.pid),
  };
  const refRss = peakRssMiB(reference.pid);
  reference.kill('SIGINT');
  await new Promise((r) => reference.on('close', r));
  const shown = /(\d+) flow events have been shown/.exec(referenceWarnings);
  let floorStats = { messages: 0, userSeconds: 0, systemSeconds: 0 };
  if (floor) {
    const floorResult = new Promise((r) => floorLines.once('line', (l) => r(JSON.parse(l))));
    floor.kill('SIGTERM');
    floorStats = await floorResult;
  }
  const result = {
    requestedRate: rate || 'max',
    generator: gen,
    generated: after.counter - before.counter,
    // New entries that failed at confirmation (chain too long, clash) passed the nft rule but
    // never became entries: no NEW event exists for them.
    insertFailed: after.stats.insert_failed - before.stats.insert_failed,
    tableFullDrops: after.stats.drop - before.stats.drop,
    floor: {
      ...floorStats,
      cpuSecondsPerMillionMessages: (floorStats.userSeconds + floorStats.systemSeconds) / (floorStats.messages / 1e6),
    },
    monitor: {
      received: after.monitor.insert - before.monitor.insert,
      messages: after.monitor.messages - before.monitor.messages,
      destroys: after.monitor.delete - before.monitor.delete,
      readerUserSeconds: after.monitor.reader.user - before.monitor.reader.user,
      readerSystemSeconds: after.monitor.reader.system - before.monitor.reader.system,
      lost: after.monitor.lostTotal - before.monitor.lostTotal,
      resyncs: after.monitor.resyncs - before.monitor.resyncs,
      cpuSeconds: after.monitorCpu - before.monitorCpu,
      peakRssMiB: peakRssMiB(child.pid),
      loopP99Ms: after.monitor.loopP99Ms,
      loopMaxMs: after.monitor.loopMaxMs,
      jsCallbacks: after.monitor.samples,
      intervals: Math.round(elapsed),
    },
    conntrackE: {
      received: shown ? Number(shown[1]) : 0,
      cpuSeconds: after.refCpu - before.refCpu,
      peakRssMiB: refRss,
      enobufs: /ENOBUFS/.test(referenceWarnings),
    },
  };
  result.created = result.generated - result.insertFailed;
  result.conntrackE.lost = result.created - result.conntrackE.received;
  for (const r of [result.monitor, result.conntrackE])
    r.cpuSecondsPerMillion = r.received ? r.cpuSeconds / (r.received / 1e6) : null;
  result.cpuRatio = result.monitor.cpuSecondsPerMillion / result.conntrackE.cpuSecondsPerMillion;
  // The monitor also reads DESTROY (and state-change UPDATE) messages; conntrack -E -e NEW does not.
  result.monitor.cpuSecondsPerMillionMessages = result.monitor.cpuSeconds / (result.monitor.messages / 1e6);
  result.cpuRatioPerMessage = result.monitor.cpuSecondsPerMillionMessages / result.conntrackE.cpuSecondsPerMillion;
  child.stdin.end();
  await new Promise((r) => child.on('close', r));
  return result;
}

async function main() {
  const tools = buildTools();
  bench = benchNamespace(nsName);
  try {
    const phases = [];
    for (const rate of RATES) {
      const p = await phase(tools, rate);
      phases.push(p);
      console.error(JSON.stringify(p));
      await sleep(2000);
    }
    report(phases);
  } finally {
    bench.destroy();
  }
}

function report(phases) {
  const date = new Date().toISOString();
  const machine = {
    ...describeMachine(),
    conntrackTools: execFileSync('conntrack', ['--version'], { encoding: 'utf8' }).trim(),
    note: 'loadgen pinned to CPU 1; readers unpinned; monitor defaults (32 MiB buffer); conntrack -E defaults',
  };
  const stamp = date.slice(0, 10);
  const name = `event-rate-${values.mode}${ALONE ? '-alone' : ''}-${stamp}`;
  writeFileSync(
    join(here, 'results', `${name}.json`),
    `${JSON.stringify({ date, machine, seconds: SECONDS, mode: values.mode, phases }, null, 2)}\n`,
  );
  const f = (x, d = 2) => (x === null || x === undefined ? 'n/a' : Number(x).toFixed(d));
  const rows = phases.map(
    (p) =>
      `| ${p.requestedRate} | ${p.created} (${Math.round(p.created / SECONDS)}/s) | ${p.monitor.received} / ${p.monitor.lost} | ${p.conntrackE.received} / ${p.conntrackE.lost} | ${f(p.monitor.cpuSecondsPerMillion)} | ${f(p.conntrackE.cpuSecondsPerMillion)} | **${f(p.cpuRatio, 3)}** | ${p.monitor.messages} msgs: ${f(p.monitor.cpuSecondsPerMillionMessages)} s/M, ratio ${f(p.cpuRatioPerMessage, 3)}; reader ${f(p.monitor.readerUserSeconds)} s user + ${f(p.monitor.readerSystemSeconds)} s sys | ${p.floor.messages} msgs: ${f(p.floor.cpuSecondsPerMillionMessages)} s/M (${f(p.floor.userSeconds)} user + ${f(p.floor.systemSeconds)} sys) | ${f(p.monitor.peakRssMiB, 0)} / ${f(p.conntrackE.peakRssMiB, 0)} | ${f(p.monitor.loopP99Ms)} | ${p.monitor.jsCallbacks} in ${p.monitor.intervals} s |`,
  );
  const md = `# Event rate: conntrack-monitor${ALONE ? ' alone' : ' vs conntrack -E'} (${values.mode}, ${stamp})

Machine: Linux ${machine.kernel}, ${machine.cpus}, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.conntrackTools}; ${machine.note}.
Command: \`node benchmarks/event-rate.mjs --rates ${values.rates} --seconds ${SECONDS} --mode ${values.mode}${ALONE ? ' --alone' : ''}\`

The readers ran at the same time on the same load. "NEW events created" is the kernel's count: packets the nft \`ct state new counter\` saw, less the kernel's insert_failed delta (entries refused at confirmation send no event). conntrack -E reads NEW events only; conntrack-monitor also reads DESTROY (and TCP state UPDATE) messages, and its "lost" counts every event type the kernel could not queue (SK_MEMINFO_DROPS). CPU is the whole process (/proc/PID/stat); "reader" is conntrack-monitor's native thread alone; "floor" is benchmarks/native/null_reader, the same socket read the same way with the messages discarded: the kernel's share.

| rate asked | NEW events created | monitor NEW received / events lost | conntrack -E NEW received / lost | monitor CPU s per M NEW | conntrack -E CPU s per M NEW | CPU ratio (NEW) | monitor, all messages (NEW+DESTROY+UPDATE) | floor: same socket, messages discarded | peak RSS MiB (monitor / -E) | JS event-loop p99 ms | JS callbacks |
|---|---|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}
`;
  const aloneRows = phases.map(
    (p) =>
      `| ${p.requestedRate} | ${p.created} (${Math.round(p.created / SECONDS)}/s) | ${p.monitor.received} / ${p.monitor.lost} | ${p.monitor.messages} | ${f(p.monitor.cpuSecondsPerMillion)} | ${f(p.monitor.cpuSecondsPerMillionMessages)} (reader ${f(p.monitor.readerUserSeconds)} s user + ${f(p.monitor.readerSystemSeconds)} s sys) | ${f(p.monitor.peakRssMiB, 0)} | ${f(p.monitor.loopP99Ms)} | ${p.monitor.jsCallbacks} in ${p.monitor.intervals} s |`,
  );
  const aloneMd = `# Event rate: conntrack-monitor alone (${values.mode}, ${stamp})

Machine: Linux ${machine.kernel}, ${machine.cpus}, ${machine.memoryGiB} GiB, Node ${machine.node}; loadgen pinned to CPU 1; monitor defaults (32 MiB buffer).
Command: \`node benchmarks/event-rate.mjs --rates ${values.rates} --seconds ${SECONDS} --mode ${values.mode} --alone\`

"NEW events created" is the kernel's count (nft \`ct state new counter\` less insert_failed). "Lost" counts every event type the kernel could not queue (SK_MEMINFO_DROPS).

| rate asked | NEW events created | NEW received / events lost | messages read (NEW+DESTROY+UPDATE) | CPU s per M NEW | CPU s per M messages | peak RSS MiB | JS event-loop p99 ms | JS callbacks |
|---|---|---|---|---|---|---|---|---|
${aloneRows.join('\n')}
`;
  writeFileSync(join(here, 'results', `${name}.md`), ALONE ? aloneMd : md);
  if (ALONE) {
    process.stdout.write(aloneMd);
    return;
  }
  process.stdout.write(md);
}

await main();
