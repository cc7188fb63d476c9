/**
 * Lifecycles on the real kernel: many starts and stops leave no descriptors, threads or memory
 * behind; a monitor in a worker thread works and is released when the worker is terminated;
 * stop() during a long initial dump returns promptly. Each runs in a child process so that
 * its numbers are its own.
 */
import { execFileSync, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { canRunIntegration } from '../helpers/gate';
import { nsidFreed, nsidListed } from '../helpers/netns';
import { defer, namespace } from '../helpers/scope';

const CHILD = join(__dirname, '..', 'helpers', 'lifecycle-child.mjs');
/**
 * A monitor on the namespace at argv[1], in a child process so that its descriptors, threads
 * and tasks are counted alone. stdin: 'samples' asks how many samples came; it prints
 * 'started', then one JSON line when the monitor ends: the events in order and the process's
 * sockets, threads and tasks inside the namespace before start, while running and after.
 */
const WATCH_DELETED = `
  const { readdirSync, readFileSync, readlinkSync, statSync } = require('node:fs');
  const { ConntrackMonitor } = require(${JSON.stringify(require.resolve('../../dist/index.js'))});
  const path = process.argv[1];
  const inode = statSync(path).ino;
  const state = () => {
    const links = readdirSync('/proc/self/fd').map((fd) => { try { return readlinkSync('/proc/self/fd/' + fd); } catch { return ''; } });
    const tasks = readdirSync('/proc/self/task');
    return {
      sockets: links.filter((l) => l.startsWith('socket:')).length,
      threads: tasks.length,
      readers: tasks.filter((t) => { try { return readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() === 'ctmon-reader'; } catch { return false; } }).length,
      tasksInside: tasks.filter((t) => { try { return statSync('/proc/self/task/' + t + '/ns/net').ino === inode; } catch { return false; } }).length,
    };
  };
  const before = state();
  const m = new ConntrackMonitor({ netns: path, intervalMs: 200 });
  const events = [];
  let samples = 0, running;
  m.on('sample', (s) => { samples++; events.push(s.final ? 'sample final' : 'sample'); });
  m.on('error', (e) => {
    events.push('error ' + e.code);
    if (e.code !== 'NAMESPACE_GONE') return;
    setTimeout(() => console.log(JSON.stringify({ events: events.slice(-3), message: e.message, runningAfter: m.running, before, running, after: state() })), 100);
  });
  require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => l === 'samples' && console.log(samples));
  m.start().then(() => { running = state(); console.log('started'); });`;

function spawnChild(script: string, args: string[]) {
  const proc = spawn(process.execPath, ['-e', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  defer(() => void proc.kill('SIGKILL'));
  const lines: string[] = [];
  const waiting: { prefix: string; resolve: (line: string) => void }[] = [];
  createInterface({ input: proc.stdout }).on('line', (line) => {
    const i = waiting.findIndex((w) => line.startsWith(w.prefix));
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(line);
    else lines.push(line);
  });
  const line = (prefix: string) =>
    new Promise<string>((resolve) => {
      const i = lines.findIndex((l) => l.startsWith(prefix));
      if (i >= 0) resolve(lines.splice(i, 1)[0]!);
      else waiting.push({ prefix, resolve });
    });
  return {
    line,
    send: (text: string) => proc.stdin.write(`${text}\n`),
    ask: (question: string) => (proc.stdin.write(`${question}\n`), line('')),
  };
}

const child = (args: string[], flags: string[] = []) =>
  JSON.parse(execFileSync(process.execPath, [...flags, CHILD, ...args], { encoding: 'utf8', timeout: 120_000 }));

describe.skipIf(!canRunIntegration)('monitor lifecycles', () => {
  it('400 start/stop cycles leave no descriptors, threads or memory behind', async () => {
    const ns = await namespace('cycles');
    const r = child(['cycles', ns.path, '400'], ['--expose-gc']);
    console.info(
      `400 cycles in ${r.ms} ms: fds ${r.before.fds} -> ${r.after.fds}, threads ${r.before.threads} -> ${r.after.threads}, ` +
        `RSS ${r.before.rssKiB} -> ${r.middle.rssKiB} -> ${r.after.rssKiB} KiB (${r.slopeKiBPerCycle.toFixed(3)} KiB/cycle over the last 200), ` +
        `native heap ${r.before.nativeKiB} -> ${r.middle.nativeKiB} -> ${r.after.nativeKiB} KiB (${r.nativeSlopeKiBPerCycle.toFixed(3)} KiB/cycle), ` +
        `JS heap ${r.before.heapKiB} -> ${r.after.heapKiB} KiB, native monitors alive ${r.after.liveNativeMonitors}`,
    );
    expect(r.after.fds).toBe(r.before.fds);
    expect(r.after.threads).toBe(r.before.threads);
    expect(r.after.liveNativeMonitors).toBe(0);
    expect(r.after.heapKiB - r.before.heapKiB).toBeLessThan(1024);
    // A leak shows in what the allocator has handed out and not had back: a monitor's own
    // allocations are ~600 KiB (its receive batch, table and buffers), so one lost per cycle
    // would be 600 KiB/cycle; flat within 0.1 KiB/cycle over 200 cycles (20 KiB in all; the
    // allocator's own noise is ~0.02 KiB/cycle here) means none is, nor any 100 bytes a cycle.
    // (Each cycle verifies the event program afresh, ~60 ms of CPU: 400 keep the suite short.)
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

  it('a deleted namespace stops the monitor within an interval: final sample, NAMESPACE_GONE, released', async () => {
    const ns = await namespace('deleted');
    const inode = statSync(ns.path).ino;
    const nsid = await ns.setNsid(); // listed by the kernel for as long as the namespace lives
    const child = spawnChild(WATCH_DELETED, [ns.path]);
    await child.line('started');
    const deletedAt = performance.now();
    await ns.remove(); // the monitor's own sockets are all that keep it alive now
    const listedAfterDelete = await nsidListed(nsid);
    const r = JSON.parse(await child.line('{'));
    const noticedMs = performance.now() - deletedAt;
    const freed = await nsidFreed(nsid);
    console.info(
      `namespace deleted: noticed after ${noticedMs.toFixed(0)} ms (interval 200 ms), events ${r.events.join(' > ')}, ` +
        `sockets ${r.before.sockets} -> ${r.running.sockets} -> ${r.after.sockets}, reader threads ${r.running.readers} -> ${r.after.readers}, ` +
        `tasks in it ${r.running.tasksInside} -> ${r.after.tasksInside}; the kernel listed it (nsid ${nsid}) after the delete: ${listedAfterDelete}, after the release: ${!freed}`,
    );
    expect(r.events.slice(-2)).toEqual(['sample final', 'error NAMESPACE_GONE']);
    expect(r.message).toMatch(
      new RegExp(
        `^network namespace ${ns.path} is gone: no path names it \\(inode ${inode}\\) and no process or mount holds it` +
          '( \\(not counted: pids? [\\d, .]+, whose namespace cannot be read\\))?; the monitor stopped and released it$',
      ),
    );
    expect(r.runningAfter).toBe(false);
    expect(noticedMs).toBeLessThan(1000);
    expect(r.running.sockets).toBe(r.before.sockets + 2);
    expect(r.running.tasksInside).toBe(1); // the reader thread
    expect(r.running.readers).toBe(1);
    expect(r.after).toMatchObject({ sockets: r.before.sockets, tasksInside: 0, readers: 0 });
    expect(listedAfterDelete).toBe(true); // alive through the monitor's sockets until it let go
    expect(freed).toBe(true);
  });

  it('a deleted name whose namespace a process still holds keeps the monitor running until the process ends', async () => {
    const ns = await namespace('held');
    const inode = statSync(ns.path).ino;
    const nsid = await ns.setNsid();
    const holder = spawn('ip', ['netns', 'exec', ns.name, 'sleep', '60']);
    defer(() => void holder.kill('SIGKILL'));
    while (statSync(`/proc/${holder.pid}/ns/net`).ino !== inode) await new Promise((r) => setTimeout(r, 20));
    const child = spawnChild(WATCH_DELETED, [ns.path]);
    await child.line('started');
    await ns.remove();
    const samplesAtDelete = Number(await child.ask('samples'));
    await new Promise((r) => setTimeout(r, 1500)); // 7 intervals: the namespace lives on
    const samplesWhileHeld = Number(await child.ask('samples')) - samplesAtDelete;
    const listedWhileHeld = await nsidListed(nsid);
    const endedAt = performance.now();
    holder.kill('SIGKILL');
    const r = JSON.parse(await child.line('{'));
    const noticedMs = performance.now() - endedAt;
    const freed = await nsidFreed(nsid);
    console.info(
      `deleted name, namespace held by a process: ${samplesWhileHeld} samples in the 1.5 s after the name was deleted (the kernel lists it: ${listedWhileHeld}); ` +
        `after the process ended: NAMESPACE_GONE in ${noticedMs.toFixed(0)} ms, then freed: ${freed}`,
    );
    expect(listedWhileHeld).toBe(true);
    expect(samplesWhileHeld).toBeGreaterThanOrEqual(5);
    expect(r.events.slice(-2)).toEqual(['sample final', 'error NAMESPACE_GONE']);
    expect(noticedMs).toBeLessThan(6000); // the holder search runs at most every 5 s
    expect(r.after).toMatchObject({ sockets: r.before.sockets, tasksInside: 0 });
    expect(freed).toBe(true);
  });
});
