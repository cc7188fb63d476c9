/**
 * Faults the monitor must survive, on the real kernel. A kernel without nfnetlink or without
 * ctnetlink cannot be had on this machine (both are built in), so the test points the monitor
 * at a netlink protocol or an nfnetlink subsystem that nothing implements, and the real kernel
 * answers exactly as it would without the feature: socket() fails with EPROTONOSUPPORT, and
 * nfnetlink answers EINVAL to requests for an unregistered subsystem (nfnetlink_rcv_msg).
 * The redirection is native/fault_injection.h, set through the _injectFaults test hook.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConntrackMonitor, type ConntrackError, type ConntrackSample } from '../../dist/index.js';
import { loadBinding } from '../../dist/native.js';
import { unprivilegedCopy } from '../helpers/unprivileged';
import { canRunIntegration } from '../helpers/gate';
import { uniqueName } from '../helpers/netns';
import { nextSamples } from '../helpers/samples';
import { defer, namespace, startMonitor, useClassicFilter } from '../helpers/scope';

const UNIMPLEMENTED_PROTOCOL = 30; // netlink protocol numbers go to 31; nothing registers 30
const UNREGISTERED_SUBSYSTEM = 0xfe; // above NFNL_SUBSYS_COUNT: no module can register it

/** Redirects the monitor's kernel calls until the end of the test. */
function injectFaults(faults: { netlinkProtocol?: number; ctnetlinkSubsystem?: number }): () => void {
  const binding = loadBinding();
  const previous = binding._injectFaults(faults);
  const restore = () => void binding._injectFaults(previous);
  defer(restore);
  return restore;
}

describe.skipIf(!canRunIntegration)('faults on the real kernel', () => {
  it.each([
    ['nfnetlink', { netlinkProtocol: UNIMPLEMENTED_PROTOCOL }, 'EPROTONOSUPPORT', 'socket', 'CONFIG_NETFILTER_NETLINK'],
    [
      'ctnetlink',
      { ctnetlinkSubsystem: UNREGISTERED_SUBSYSTEM },
      'EINVAL',
      'recv',
      'load nf_conntrack_netlink (CONFIG_NF_CT_NETLINK)',
    ],
  ] as const)(
    'a kernel without %s: a clear error naming it, or the /proc fallback',
    async (feature, faults, code, syscall, text) => {
      const ns = await namespace(`no-${feature}`);
      await ns.traffic('udp', 6);
      injectFaults(faults);

      const forced = new ConntrackMonitor({ netns: ns.name, backend: 'netlink' });
      const error = (await forced.start().then(
        () => null,
        (e: unknown) => e,
      )) as ConntrackError;
      console.info(`no ${feature}: ${error.message}`);
      expect(error.code).toBe(code);
      expect(error.syscall).toBe(syscall);
      expect(error.missing).toBe(feature);
      expect(error.message).toContain(text);

      // The proc backend reads another namespace through a process in it.
      const { child } = await ns.start(process.execPath, ['-e', 'console.log("in"); setInterval(() => {}, 1e6)']);
      defer(() => child.kill());
      const auto = new ConntrackMonitor({ netns: ns.name, intervalMs: 100 });
      const fallbacks: string[] = [];
      auto.on('fallback', (f) => fallbacks.push(f.reason));
      const first = new Promise<ConntrackSample>((r) => auto.once('sample', r));
      await auto.start();
      defer(() => auto.stop());
      const sample = await first;
      expect(fallbacks).toHaveLength(1);
      expect(fallbacks[0]).toContain(text);
      expect(sample.source).toBe('proc');
      expect(sample.entries).toBe(await ns.count());
    },
  );

  it('a stats request failing mid-run: the samples say so, events are still counted, it recovers', async () => {
    const ns = await namespace('stats-fail');
    const monitor = new ConntrackMonitor({ netns: ns.name, intervalMs: 200 });
    const samples: ConntrackSample[] = [];
    const errors: ConntrackError[] = [];
    monitor.on('sample', (s) => samples.push(s));
    monitor.on('error', (e) => errors.push(e));
    await monitor.start();
    defer(() => monitor.stop());
    await nextSamples(monitor, 2);

    // As if nf_conntrack_netlink were unloaded while running: every request now fails.
    const restore = injectFaults({ ctnetlinkSubsystem: UNREGISTERED_SUBSYSTEM });
    const failingFrom = samples.length;
    await ns.traffic('tcp', 25);
    await nextSamples(monitor, 3);
    restore();
    const failing = samples.slice(failingFrom + 1); // the first may have read before the switch
    await ns.traffic('tcp', 5);
    await nextSamples(monitor, 3);
    const last = samples.at(-1)!;
    const kernelEntries = await ns.count();
    console.info(
      `stats failing: ${failing.length} samples with entries ${failing.map((s) => s.entries).join(',')}, ` +
        `errors ${errors.length} (${errors[0]?.message}); after: entries ${last.entries} (kernel ${kernelEntries}), inserts ${last.totals.insert}`,
    );

    expect(failing.length).toBeGreaterThanOrEqual(2);
    for (const s of failing) {
      expect(s.entries).toBeNull();
      expect(s.unavailable.entries).toMatch(/^the conntrack statistics request failed in this interval \(E[A-Z]+\)$/);
      expect(s.counts.drop).toBeNull();
      expect(s.unavailable['counts.drop']).toMatch(/statistics request failed/);
    }
    expect(errors).toHaveLength(1); // reported once for the streak, not every interval
    expect(errors[0]!.message).toContain('read conntrack statistics');
    expect(last.entries).toBe(kernelEntries);
    expect(last.counts.drop).toBe(0);
    expect(last.totals.insert).toBe(30); // events kept flowing through the failure
  });

  it('an ENOBUFS storm on the classic filter: every lost event counted, resynced, sampling never stalls', async () => {
    useClassicFilter(); // the eBPF path queues none of these events, so nothing could be lost
    const ns = await namespace('storm');
    // ~6 events of room; each round opens 150 connections and flushes the table, a burst of
    // hundreds of events within milliseconds.
    const { monitor, samples } = await startMonitor(ns, { receiveBufferBytes: 4096, intervalMs: 200 });
    const started = Date.now();
    for (let round = 0; round < 5; round++) {
      await ns.traffic('tcp', 150);
      await ns.exec('conntrack', ['-F']);
      await nextSamples(monitor, 1);
    }
    await ns.traffic('tcp', 20);
    await nextSamples(monitor, 4);
    const elapsedIntervals = (Date.now() - started) / 200;
    const [kernelDrops] = await ns.eventSocketDrops();
    const last = samples.at(-1)!;
    const kernel = await ns.kernelListing();
    console.info(
      `storm: lostTotal ${last.events!.lostTotal}, kernel socket drops ${kernelDrops}, resyncs ${last.events!.resyncs}, ` +
        `samples ${samples.length} in ${elapsedIntervals.toFixed(1)} intervals, TIME_WAIT ${last.timeWait.entries} (kernel ${kernel.tcpStates.TIME_WAIT})`,
    );
    expect(last.events!.lostTotal).toBeGreaterThan(100);
    expect(last.events!.lostTotal).toBe(kernelDrops);
    expect(last.events!.resyncs).toBeGreaterThanOrEqual(1);
    expect(samples.length).toBeGreaterThanOrEqual(Math.floor(elapsedIntervals) - 2);
    expect(last.timeWait.entries).toBe(kernel.tcpStates.TIME_WAIT);
    expect(last.entries).toBe(kernel.entries);
  });

  // Paths unique to this run: another run on the host must not meet (or remove) them.
  const unreadable = `/root/${uniqueName('unreadable')}`;
  const priv = `/tmp/${uniqueName('private')}`;
  it.each([
    [
      unreadable,
      new RegExp(
        `^conntrack-monitor: cannot start: open network namespace ${unreadable}: EACCES: permission denied, stat '${unreadable}' \\(no permission to read ${unreadable}\\)$`,
      ),
    ],
    [
      priv,
      new RegExp(
        `^conntrack-monitor: cannot start: ${priv} is a regular file, not a network namespace \\(pass /var/run/netns/NAME or /proc/PID/ns/net\\)$`,
      ),
    ],
  ])('as nobody, --netns %s (mode 0600, owned by root) gives one clear line and exit 1', (path, message) => {
    execFileSync('install', ['-m', '600', '/dev/null', path]);
    defer(() => rmSync(path, { force: true }));
    const r = spawnSync(
      'runuser',
      ['-u', 'nobody', '--', process.execPath, unprivilegedCopy().cli, '--netns', path, '--duration', '1'],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toMatch(message);
  });
});
