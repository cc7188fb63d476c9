/**
 * Lifecycles on the real kernel: many starts and stops leave no descriptors, threads or memory
 * behind; a monitor in a worker thread works and is released when the worker is terminated;
 * stop() during a long initial dump returns promptly. Each runs in a child process so that
 * its numbers are its own.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { canRunIntegration } from '../helpers/gate';
import { namespace } from '../helpers/scope';

const CHILD = join(__dirname, '..', 'helpers', 'lifecycle-child.mjs');
const child = (args: string[], flags: string[] = []) =>
  JSON.parse(execFileSync(process.execPath, [...flags, CHILD, ...args], { encoding: 'utf8', timeout: 120_000 }));

describe.skipIf(!canRunIntegration)('monitor lifecycles', () => {
  it('2000 start/stop cycles leave no descriptors, threads or memory behind', async () => {
    const ns = await namespace('cycles');
    const r = child(['cycles', ns.path, '2000'], ['--expose-gc']);
    console.info(
      `2000 cycles in ${r.ms} ms: fds ${r.before.fds} -> ${r.after.fds}, threads ${r.before.threads} -> ${r.after.threads}, ` +
        `RSS ${r.before.rssKiB} -> ${r.middle.rssKiB} -> ${r.after.rssKiB} KiB (${r.slopeKiBPerCycle.toFixed(3)} KiB/cycle over the last 1000), ` +
        `native heap ${r.before.nativeKiB} -> ${r.middle.nativeKiB} -> ${r.after.nativeKiB} KiB (${r.nativeSlopeKiBPerCycle.toFixed(3)} KiB/cycle), ` +
        `JS heap ${r.before.heapKiB} -> ${r.after.heapKiB} KiB, native monitors alive ${r.after.liveNativeMonitors}`,
    );
    expect(r.after.fds).toBe(r.before.fds);
    expect(r.after.threads).toBe(r.before.threads);
    expect(r.after.liveNativeMonitors).toBe(0);
    expect(r.after.heapKiB - r.before.heapKiB).toBeLessThan(1024);
    // A leak shows in what the allocator has handed out and not had back: a monitor's own
    // allocations are ~600 KiB (its receive batch, table and buffers), so one lost per cycle
    // would be 600 KiB/cycle; flat within 0.1 KiB/cycle over 1000 cycles means none is.
    expect(Math.abs(r.nativeSlopeKiBPerCycle)).toBeLessThan(0.1);
    // RSS also counts pages glibc keeps in its per-thread arenas after frees (valgrind and
    // heaptrack find nothing lost): bounded, not a slope to assert on a busy machine.
    expect(r.after.rssKiB - r.before.rssKiB).toBeLessThan(0.15 * r.before.rssKiB);
  }, 180_000);

  it('works in several worker threads at once, and terminated workers release their threads and sockets', async () => {
    const ns = await namespace('worker');
    await ns.traffic('tcp', 3);
    const r = child(['workers', ns.path, '3']);
    console.info(`workers: ${JSON.stringify(r)}`);
    expect(r.samples).toEqual(Array(4).fill({ entries: 3, source: 'netlink' }));
    expect(r.during.sockets).toBe(r.before.sockets + 4 * 2); // an event and a request socket each
    expect(r.after.sockets).toBe(r.before.sockets);
    expect(r.after.threads).toBeLessThanOrEqual(r.before.threads);
  });

  it('survives workers terminated at any moment: loading the addon, starting, delivering', async () => {
    const ns = await namespace('churn');
    const r = child(['worker-churn', ns.path, '60']);
    console.info(`worker churn: ${JSON.stringify(r)}`);
    expect(r.rounds).toBe(60);
    expect(r.samples).toBeGreaterThan(0);
    expect(r.after.sockets).toBe(r.before.sockets);
    expect(r.after.threads).toBeLessThanOrEqual(r.before.threads);
  }, 120_000);

  it('stop() during the initial dump, or during a resync, of a large table returns promptly', async () => {
    const ns = await namespace('bigdump');
    await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 600);
    await ns.exec('python3', [join(__dirname, '..', '..', 'benchmarks', 'fill-table.py'), '100000']);
    const r = child(['stop-dump', ns.path]);
    console.info(`stop during the initial dump of 100,000 entries: ${r.stopMs.toFixed(1)} ms`);
    expect(r.stopMs).toBeLessThan(150);
    expect(r.finalSamples).toBe(1);

    const resync = child(['stop-resync', ns.path]);
    console.info(
      `stop during a resync of 100,000 entries (a dump takes ${resync.dumpMs} ms): ${resync.stopMs.toFixed(1)} ms, ` +
        `resyncs ${resync.resyncsBefore} -> ${resync.resyncsAfter}, reader in syscall ${resync.readerSyscall} when stopped`,
    );
    expect(resync.final).toBe(true);
    expect(resync.readerSyscall).not.toBe('7'); // not idle in poll(): inside the dump
    expect(resync.resyncsAfter).toBe(resync.resyncsBefore); // stopped inside the dump: it was cancelled
    expect(resync.stopMs).toBeLessThan(150);
  });

  it('keeps sampling, without crashing, when its namespace is deleted', async () => {
    const ns = await namespace('deleted');
    const script = `
      const { ConntrackMonitor } = require(${JSON.stringify(require.resolve('../../dist/index.js'))});
      const m = new ConntrackMonitor({ netns: ${JSON.stringify(ns.path)}, intervalMs: 100 });
      let samples = 0;
      m.on('sample', () => samples++);
      m.start().then(async () => {
        process.stdout.write('started\\n');
        await new Promise((r) => process.stdin.once('data', r));
        const before = samples;
        await new Promise((r) => setTimeout(r, 500));
        await m.stop();
        console.log(JSON.stringify({ samplesAfterDelete: samples - before }));
      });`;
    const { spawn } = await import('node:child_process');
    const proc = spawn(process.execPath, ['-e', script]);
    let out = '';
    await new Promise<void>((resolve) =>
      proc.stdout.on('data', (d) => ((out += d), out.includes('started') && resolve())),
    );
    await ns.remove(); // the monitor's sockets keep the namespace alive; nothing breaks
    proc.stdin.end('go\n');
    const code = await new Promise((r) => proc.on('close', r));
    expect(code).toBe(0);
    const result = JSON.parse(out.split('\n').filter((l) => l.startsWith('{'))[0]!);
    expect(result.samplesAfterDelete).toBeGreaterThanOrEqual(4);
  });
});
