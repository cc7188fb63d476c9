#!/usr/bin/env node
// The conntrack-monitor side of the event-rate benchmark, in its own process so that its CPU
// and memory are its own: node monitor-child.mjs NETNS_PATH [--classic] [--no-loop-delay]
// --classic: the classic event filter, as where the kernel refuses the eBPF one (the test
// hook that makes the kernel refuse it). --no-loop-delay: no event-loop delay histogram (its
// 1 ms timer costs more CPU than an idle monitor).
// Prints "ready" once started; on each "report" line on stdin prints one JSON line with the
// totals so far, the samples (JS callbacks) since the last report and the event-loop delay
// percentiles since the last report (perf_hooks), then resets the histogram. `sampleMs` is
// when the latest sample arrived (Date.now()), the instant the totals are for; `tracked` is the
// number of entries the monitor tracks (its own table, from events and dumps); `memory` is
// process.memoryUsage() (bytes); `unknownTimeWait` counts the samples since the last report
// whose TIME_WAIT count was null.
import { createRequire } from 'node:module';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { readdirSync, readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const { ConntrackMonitor } = require('../dist/index.js');
const flags = new Set(process.argv.slice(3));
if (flags.has('--classic')) require('../dist/native.js').loadBinding()._injectFaults({ eventProgramType: 6 });
const monitor = new ConntrackMonitor({ netns: process.argv[2] });
let last = null;
let samples = 0;
let messages = 0;
let sampleMs = null;
let unknownTimeWait = 0; // samples whose TIME_WAIT count was null (flows past their deadline unverified)
monitor.on('sample', (s) => {
  last = s;
  sampleMs = Date.now();
  samples++;
  if (s.timeWait.entries === null) unknownTimeWait++;
  messages += s.events.received;
});

/** CPU seconds of the native reader thread, split into user and system time. */
function readerCpu() {
  const tick = 100; // USER_HZ
  for (const tid of readdirSync('/proc/self/task')) {
    if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== 'ctmon-reader') continue;
    const f = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
    return { user: Number(f[11]) / tick, system: Number(f[12]) / tick };
  }
  return { user: 0, system: 0 };
}
monitor.on('error', (e) => console.error(`monitor: ${e.message}`));
const loop = monitorEventLoopDelay({ resolution: 1 });
await monitor.start();
if (!flags.has('--no-loop-delay')) loop.enable();
console.log('ready');

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line !== 'report') return;
    console.log(
      JSON.stringify({
        insert: last?.totals.insert ?? 0,
        delete: last?.totals.delete ?? 0,
        lostTotal: last?.events.lostTotal ?? 0,
        resyncs: last?.events.resyncs ?? 0,
        path: last?.events.path ?? null,
        messages,
        sampleMs,
        tracked: last?.protocols ? Object.values(last.protocols).reduce((a, b) => a + b, 0) : null,
        tcpStates: last?.tcpStates ?? null,
        memory: process.memoryUsage(),
        reader: readerCpu(),
        samples,
        unknownTimeWait,
        loopP99Ms: loop.percentile(99) / 1e6,
        loopMaxMs: loop.max / 1e6,
      }),
    );
    samples = 0;
    unknownTimeWait = 0;
    loop.reset();
  })
  .on('close', async () => {
    await monitor.stop();
    process.exit(0);
  });
