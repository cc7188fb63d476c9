#!/usr/bin/env node
// Child process for lifecycle tests: node lifecycle-child.mjs MODE NETNS_PATH [N]
//   cycles N    after 150 warm-up cycles, start and stop a monitor N times; prints fds,
//               threads, RSS, JS heap and native monitor objects still alive, before/after
//   workers N   run a monitor in each of N worker threads and one on the main thread, take one
//               sample from each, terminate the workers; prints threads and netlink sockets
//               before/during/after
//   worker-churn N  N rounds of 4 workers each starting a monitor, terminated at varied
//               moments; prints samples seen and threads/sockets before/after
//   stop-dump   start, then stop at once while the initial dump of a large table runs;
//               prints how long stop() took
//   stop-resync the same during a periodic resync (a re-dump after the initial one); prints
//               how long stop() took and whether the resync was really cut short
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const { ConntrackMonitor } = require('../../dist/index.js');
const { loadBinding } = require('../../dist/native.js');
const [mode, netns, countText] = process.argv.slice(2);
const fds = () => readdirSync('/proc/self/fd').length;
const threads = () => readdirSync('/proc/self/task').length;
const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
const heapKiB = () => Math.round(process.memoryUsage().heapUsed / 1024);
const nativeKiB = () => Math.round(loadBinding()._nativeHeapBytes() / 1024);
const netlinkSockets = () =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return (
        readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8') &&
        require('node:fs').readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')
      );
    } catch {
      return false;
    }
  }).length;

if (mode === 'cycles') {
  const n = Number(countText);
  const once = async () => {
    const m = new ConntrackMonitor({ netns, intervalMs: 50 });
    await m.start();
    await m.stop();
    // One loop turn, as any real program has between a stop and the next start: Node frees a
    // thread-safe function (and with it the native monitor) from a close callback on a later
    // turn. A loop of bare awaits never turns, so every stopped monitor would stay alive.
    await new Promise((r) => setImmediate(r));
  };
  // Wrappers are released when their thread-safe function is finalized, on a later loop
  // turn, and collected objects are finalized later still: collect until none is left.
  const settle = async () => {
    for (let i = 0; i < 40 && (i === 0 || loadBinding()._liveMonitors() > 0); i++) {
      globalThis.gc?.();
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  for (let i = 0; i < 150; i++) await once(); // warm up: the allocator's arenas and free lists fill
  await settle();
  const before = { fds: fds(), threads: threads(), rssKiB: rssKiB(), heapKiB: heapKiB(), nativeKiB: nativeKiB() };
  const started = Date.now();
  for (let i = 0; i < n / 2; i++) await once();
  await settle();
  const middle = { rssKiB: rssKiB(), nativeKiB: nativeKiB() };
  for (let i = 0; i < n / 2; i++) await once();
  await settle();
  const after = {
    fds: fds(),
    threads: threads(),
    rssKiB: rssKiB(),
    heapKiB: heapKiB(),
    nativeKiB: nativeKiB(),
    liveNativeMonitors: loadBinding()._liveMonitors(),
  };
  // Growth per cycle over the second half: a leak keeps a slope, a filling allocator does not.
  const slopeKiBPerCycle = (after.rssKiB - middle.rssKiB) / (n / 2);
  const nativeSlopeKiBPerCycle = (after.nativeKiB - middle.nativeKiB) / (n / 2);
  console.log(
    JSON.stringify({ before, middle, after, slopeKiBPerCycle, nativeSlopeKiBPerCycle, ms: Date.now() - started }),
  );
} else if (mode === 'workers') {
  // N workers load the addon at once, each runs a monitor beside one on the main thread.
  const n = Number(countText);
  const before = { threads: threads(), sockets: netlinkSockets() };
  const main = new ConntrackMonitor({ netns, intervalMs: 100 });
  const mainSample = new Promise((r) => main.once('sample', (s) => r({ entries: s.entries, source: s.source })));
  await main.start();
  const workers = Array.from(
    { length: n },
    () =>
      new Worker(
        `
    const { parentPort, workerData } = require('node:worker_threads');
    const { ConntrackMonitor } = require(workerData.lib);
    const m = new ConntrackMonitor({ netns: workerData.netns, intervalMs: 100 });
    m.on('sample', (s) => parentPort.postMessage({ entries: s.entries, source: s.source }));
    m.start().catch((e) => parentPort.postMessage({ error: e.message }));
  `,
        { eval: true, workerData: { lib: require.resolve('../../dist/index.js'), netns } },
      ),
  );
  const samples = await Promise.all([mainSample, ...workers.map((w) => new Promise((r) => w.once('message', r)))]);
  const during = { threads: threads(), sockets: netlinkSockets() };
  await Promise.all(workers.map((w) => w.terminate()));
  await main.stop();
  await new Promise((r) => setTimeout(r, 300));
  console.log(JSON.stringify({ samples, before, during, after: { threads: threads(), sockets: netlinkSockets() } }));
} else if (mode === 'worker-churn') {
  // Workers terminated at random moments: while loading the addon, starting, delivering a
  // sample or idle. Terminating a worker stops JS from running in it at any moment (from
  // this thread), so every Node-API call the addon makes there may fail; none may abort.
  const rounds = Number(countText);
  const before = { threads: threads(), sockets: netlinkSockets() };
  let samples = 0;
  const spawnWorkers = () =>
    Array.from(
      { length: 4 },
      () =>
        new Worker(
          `
      const { parentPort, workerData } = require('node:worker_threads');
      const { ConntrackMonitor } = require(workerData.lib);
      const m = new ConntrackMonitor({ netns: workerData.netns, intervalMs: 50 });
      m.on('sample', () => parentPort.postMessage('sample'));
      m.start().catch(() => {});
    `,
          { eval: true, workerData: { lib: require.resolve('../../dist/index.js'), netns } },
        ),
    );
  // How long a worker takes, here and now, to load the addon, start and deliver a sample: the
  // rounds' moments of termination spread over one and a half times that (at least 300 ms),
  // on a quiet machine as on a busy one.
  const calibration = spawnWorkers();
  const t0 = performance.now();
  await new Promise((resolve) => calibration.forEach((w) => w.once('message', resolve)));
  const firstSampleMs = performance.now() - t0;
  await Promise.all(calibration.map((w) => w.terminate()));
  const spanMs = Math.max(300, 1.5 * firstSampleMs);
  for (let round = 0; round < rounds; round++) {
    const workers = spawnWorkers();
    for (const w of workers) w.on('message', () => samples++);
    // Spread over load, start, samples.
    await new Promise((r) => setTimeout(r, (((round * 37) % 300) / 300) * spanMs));
    await Promise.all(workers.map((w) => w.terminate()));
  }
  await new Promise((r) => setTimeout(r, 300));
  console.log(
    JSON.stringify({
      rounds,
      samples,
      firstSampleMs: Math.round(firstSampleMs),
      before,
      after: { threads: threads(), sockets: netlinkSockets() },
    }),
  );
} else if (mode === 'stop-dump') {
  const m = new ConntrackMonitor({ netns, intervalMs: 1000 });
  const samples = [];
  m.on('sample', (s) => samples.push(s));
  await m.start(); // returns before the initial dump, which runs on the reader thread
  const t = process.hrtime.bigint();
  await m.stop();
  const stopMs = Number(process.hrtime.bigint() - t) / 1e6;
  console.log(JSON.stringify({ stopMs, finalSamples: samples.length, synced: samples.at(-1)?.protocols !== null }));
} else if (mode === 'stop-resync') {
  // Every close re-dumps (resync period 1 s < interval 2 s), and the sample is delivered after
  // the dump: the next dump starts about 2 s - dumpMs after a sample arrives. From a little
  // before that, the reader thread is watched (the first field of /proc/.../syscall: the
  // syscall it is blocked in, poll, 7 on x86-64, when idle, or "running"): busy for 20 ms in a
  // row is the dump (a stats reading takes well under 1 ms), and it is stopped there.
  const m = new ConntrackMonitor({ netns, intervalMs: 2000, resyncIntervalMs: 1000 });
  const samples = [];
  m.on('sample', (s) => samples.push(s));
  await m.start();
  while (samples.length < 2) await new Promise((r) => setTimeout(r, 5));
  const arrived = Date.now();
  const dumpMs = samples.at(-1).events.lastResyncMs;
  await new Promise((r) => setTimeout(r, Math.max(0, arrived + 2000 - dumpMs - 200 - Date.now())));
  const reader = readdirSync('/proc/self/task').find(
    (tid) => readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'ctmon-reader',
  );
  const syscall = () => readFileSync(`/proc/self/task/${reader}/syscall`, 'utf8').split(' ')[0].trim();
  let busySince = null;
  for (const deadline = Date.now() + 6000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 2))) {
    if (syscall() === '7') busySince = null;
    else if ((busySince ??= performance.now()) < performance.now() - 20) break;
  }
  const readerSyscall = syscall();
  const resyncsBefore = samples.at(-1).events.resyncs;
  const t = process.hrtime.bigint();
  await m.stop();
  const stopMs = Number(process.hrtime.bigint() - t) / 1e6;
  const last = samples.at(-1);
  // A cancelled resync is not counted; a completed one would have been.
  console.log(
    JSON.stringify({
      stopMs,
      dumpMs,
      readerSyscall,
      resyncsBefore,
      resyncsAfter: last.events.resyncs,
      final: last.final,
    }),
  );
}
