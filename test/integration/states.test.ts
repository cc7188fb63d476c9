/**
 * TIME_WAIT occupancy and counts by state against the kernel's own listing of the namespace
 * (conntrack -L), with entries made before the monitor started, local expiry, forced event
 * loss and the socket filter.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { ConntrackMonitor, ConntrackSample } from '../../dist/index.js';
import { loadBinding } from '../../dist/native.js';
import { canRunIntegration } from '../helpers/gate';
import type { TestNamespace } from '../helpers/netns';
import { nextSamples } from '../helpers/samples';
import { defer, namespace, startMonitor } from '../helpers/scope';

const BPF_PROG_TYPE_XDP = 6; // a program type the verifier refuses for this filter

/** The sample's view in the kernel listing's shape: nonzero TCP states and protocol counts. */
function view(s: ConntrackSample) {
  return {
    protocols: s.protocols,
    tcpStates: Object.fromEntries(Object.entries(s.tcpStates!).filter(([, n]) => n > 0)),
    entries: Object.values(s.protocols!).reduce((a, b) => a + b, 0),
  };
}

/** Waits for the next sample, then compares it with the kernel's listing. */
async function checkpoint(ns: TestNamespace, monitor: ConntrackMonitor, samples: ConntrackSample[], label: string) {
  await nextSamples(monitor, 2);
  const reported = view(samples.at(-1)!);
  const kernel = await ns.kernelListing();
  console.info(`${label}: reported ${JSON.stringify(reported)} kernel ${JSON.stringify(kernel)}`);
  expect(reported).toEqual(kernel);
  return reported;
}

describe.skipIf(!canRunIntegration)('TIME_WAIT and TCP states on the real kernel', () => {
  it('counts TIME_WAIT entries created before the monitor started (nf_conntrack_events=2)', async () => {
    const ns = await namespace('before');
    await ns.traffic('tcp', 40);
    const { monitor, samples, warnings } = await startMonitor(ns);
    await nextSamples(monitor, 1);
    const first = samples[0]!;
    const kernel = await ns.kernelListing();
    console.info(`pre-existing: reported TIME_WAIT ${first.timeWait.entries}, kernel ${kernel.tcpStates.TIME_WAIT}`);
    expect(first.eventsMode).toBe(2);
    expect(first.timeWait.entries).toBe(40);
    expect(kernel.tcpStates.TIME_WAIT).toBe(40);
    expect(first.timeWait.timeoutSeconds).toBe(120);
    expect(first.timeWait.share).toBe(40 / first.max!);
    expect(first.totals.insert).toBe(0); // none of them came as an event
    expect(warnings.map((w) => w.code)).toEqual(['EVENTS_AUTO']);
  });

  it('drops TIME_WAIT entries at their expiry, within an interval, without waiting for DESTROY', async () => {
    const ns = await namespace('expiry');
    await ns.sysctl('net.netfilter.nf_conntrack_tcp_timeout_time_wait', 3);
    const { monitor, samples } = await startMonitor(ns, { intervalMs: 250 });
    await ns.traffic('tcp', 20);
    const closedAt = Date.now();
    await nextSamples(monitor, 1);
    expect(samples.at(-1)!.timeWait).toMatchObject({ entries: 20, timeoutSeconds: 3 });
    const zero = await new Promise<ConntrackSample>((resolve) => {
      const on = (s: ConntrackSample) => s.timeWait.entries === 0 && (monitor.off('sample', on), resolve(s));
      monitor.on('sample', on);
    });
    const lagMs = Date.parse(zero.time) - (closedAt + 3000);
    const kernelCount = await ns.count(); // reading the count does not reap anything
    const kernel = await ns.kernelListing();
    console.info(
      `expiry: TIME_WAIT reported 0 at ${lagMs} ms after expiry; DESTROYs received by then ${zero.totals.delete}; nf_conntrack_count still ${kernelCount}; kernel listing TIME_WAIT ${kernel.tcpStates.TIME_WAIT ?? 0}`,
    );
    expect(lagMs).toBeLessThanOrEqual(250 + 100);
    expect(kernel.tcpStates.TIME_WAIT ?? 0).toBe(0);
  });

  it('tcpStates and protocols match the kernel listing while connections open, close and expire', async () => {
    const ns = await namespace('states');
    await ns.traffic('tcp', 5); // TIME_WAIT before start
    const { monitor, samples } = await startMonitor(ns);
    const held = await ns.hold(6, 4); // ESTABLISHED and CLOSE_WAIT
    await ns.traffic('udp-echo', 7);
    await ns.exec(process.execPath, [
      '-e',
      'require("dgram").createSocket("udp6").send("x", 9, "::1", () => process.exit(0))',
    ]);
    const open = await checkpoint(ns, monitor, samples, 'open');
    expect(open.tcpStates).toEqual({ ESTABLISHED: 6, CLOSE_WAIT: 4, TIME_WAIT: 5 });
    expect(open.protocols).toEqual({ tcp: 15, udp: 8, icmp: 0, other: 0 });

    await held.release(); // both ends close: everything goes to TIME_WAIT
    const closed = await checkpoint(ns, monitor, samples, 'closed');
    expect(closed.tcpStates).toEqual({ TIME_WAIT: 15 });

    await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 1); // new UDP flows expire in 1 s
    await ns.traffic('udp', 3);
    await new Promise((r) => setTimeout(r, 1500));
    const expired = await checkpoint(ns, monitor, samples, 'udp expired');
    expect(expired.protocols!.udp).toBe(8); // the 3 one-second flows are gone, the older 8 remain
  });

  it.each(['netlink', 'ebpf'] as const)(
    'after forced event loss (%s path): the kernel drop count, insert/delete null with reasons or counted in the kernel, converged',
    async (path) => {
      if (path === 'netlink') {
        // The classic filter, as where the kernel refuses the eBPF one (fault_injection.h).
        const binding = loadBinding();
        const previous = binding._injectFaults({ eventProgramType: BPF_PROG_TYPE_XDP });
        defer(() => binding._injectFaults(previous));
      }
      const ns = await namespace(`loss-${path}`);
      // The smallest buffer (the kernel doubles it: ~6 events of room) and a flush, which sends
      // 300 DESTROY events within a few milliseconds. Flushing is test tooling, not the library.
      const { monitor, samples } = await startMonitor(ns, { receiveBufferBytes: 4096, intervalMs: 300 });
      await ns.traffic('tcp', 300); // made while the monitor listens, so each will send DESTROY
      await nextSamples(monitor, 2);
      const flushedAt = Date.now();
      await ns.exec('conntrack', ['-F']);
      // The flush's DESTROYs may take a few intervals to drain on a busy host: wait for an
      // interval without loss (bounded by the test's timeout).
      do await nextSamples(monitor, 1);
      while (samples.at(-1)!.events!.lost > 0 || samples.at(-1)!.events!.lostTotal === 0);
      // After the loss: every NEW the kernel makes is counted again, interval by interval. One
      // connection at a time (~7 events each): a burst of 30 would overflow this tiny buffer.
      const afterLoss = samples.length;
      const flowsBefore = await ns.newFlows();
      for (let i = 0; i < 30; i++) await ns.traffic('tcp', 1);
      await nextSamples(monitor, 3);
      const flowsAfter = await ns.newFlows();
      const [kernelDrops] = await ns.eventSocketDrops();
      const converged = await checkpoint(ns, monitor, samples, 'after loss');
      await monitor.stop();
      const last = samples.at(-1)!;
      const lossy = samples.filter((s) => s.events!.lost > 0);
      const firstLossy = samples.indexOf(lossy[0]!);
      const after = samples.slice(afterLoss);
      const insertedAfter = after.reduce((sum, s) => sum + s.counts.insert!, 0);
      console.info(
        `loss: lostTotal ${last.events!.lostTotal}, kernel socket drops ${kernelDrops}, in ${lossy.length} intervals ` +
          `(${lossy.map((s) => s.events!.lost).join(', ')}) since ${last.events!.lostSince}; resyncs ${last.events!.resyncs}; ` +
          `after it: inserts ${insertedAfter} over ${after.length} intervals, kernel's new flows ${flowsAfter - flowsBefore}; ` +
          `reason: ${lossy[0]!.unavailable['counts.insert']}`,
      );
      expect(last.events!.lostTotal).toBeGreaterThan(0);
      expect(last.events!.lostTotal).toBe(kernelDrops);
      expect(lossy.reduce((sum, s) => sum + s.events!.lost, 0)).toBe(kernelDrops);
      expect(last.events!.resyncs).toBeGreaterThanOrEqual(1);
      expect(converged.tcpStates).toEqual({ TIME_WAIT: 30 });
      expect(last.events!.path).toBe(path);
      if (path === 'ebpf') {
        // The filter counted every event before the queue: the lossy intervals count too, and
        // the sums are the kernel's: 330 entries made (nft counter), 300 flushed.
        const inserted = samples.reduce((sum, s) => sum + s.counts.insert!, 0);
        const deleted = samples.reduce((sum, s) => sum + s.counts.delete!, 0);
        console.info(
          `ebpf path under loss: inserts ${inserted} (nft counter ${flowsAfter}), deletes ${deleted} (flushed 300)`,
        );
        for (const s of samples) expect(s.counts.insert).not.toBeNull();
        expect(inserted).toBe(flowsAfter);
        expect(inserted).toBe(330);
        expect(deleted).toBe(300);
        expect(last.totals).toMatchObject({ insert: 330, delete: 300 });
        expect(last.events).toMatchObject({ newTotal: 330, destroyTotal: 300 });
        expect(Object.keys(last.unavailable).filter((k) => /insert|delete/.test(k))).toEqual([]);
        return;
      }
      // Where events were lost, insert and delete are unknown, and say why...
      for (const s of lossy) {
        expect(s.counts.insert).toBeNull();
        expect(s.counts.delete).toBeNull();
        expect(s.rates.insert).toBeNull();
        expect(s.unavailable['counts.insert']).toMatch(new RegExp(`^${s.events!.lost} events lost in this interval`));
        expect(s.unavailable['rates.delete']).toBe(s.unavailable['counts.delete']);
      }
      // ...their totals from the first loss on, with the number lost and when it began...
      expect(Date.parse(last.events!.lostSince!)).toBeGreaterThanOrEqual(Date.parse(samples[0]!.time) - 1000);
      for (const s of samples.slice(0, firstLossy)) expect(s.totals.insert).not.toBeNull();
      for (const s of samples.slice(firstLossy)) {
        expect(s.totals.insert).toBeNull();
        expect(s.unavailable['totals.insert']).toBe(
          `${s.events!.lostTotal} events lost since ${last.events!.lostSince}: NEW and DESTROY among them were not counted (events.newTotal and events.destroyTotal count those received)`,
        );
      }
      if (lossy.length === 1) expect(lossy[0]!.events!.lostSince).toBe(last.events!.lostSince);
      expect(Date.parse(lossy.at(-1)!.time)).toBeGreaterThanOrEqual(flushedAt);
      // ...and once nothing is lost, each interval's count is exact again: the kernel's count.
      for (const s of after) expect(s.events!.lost).toBe(0);
      expect(insertedAfter).toBe(flowsAfter - flowsBefore);
      expect(insertedAfter).toBe(30);
    },
  );

  it('notices entries deleted without DESTROY (nf_conntrack_events=2) and resyncs', async () => {
    const ns = await namespace('nodestroy');
    // Entries made while no one listens never send events. Whether anyone listens is one flag
    // for the whole host (any event socket, in any namespace: another monitor, conntrack -E), so
    // the namespace turns events off while these are made, as no listener anywhere would.
    await ns.sysctl('net.netfilter.nf_conntrack_events', 0);
    await ns.traffic('tcp', 50);
    await ns.sysctl('net.netfilter.nf_conntrack_events', 2);
    const { monitor, samples } = await startMonitor(ns, { intervalMs: 200 });
    await nextSamples(monitor, 1);
    expect(samples.at(-1)!.timeWait.entries).toBe(50);
    await ns.exec('conntrack', ['-F']); // deletes them; no DESTROY comes
    await ns.traffic('tcp', 10);
    const converged = await checkpoint(ns, monitor, samples, 'deleted without DESTROY');
    expect(converged.tcpStates).toEqual({ TIME_WAIT: 10 });
    expect(samples.at(-1)!.events!.resyncs).toBe(1);
    expect(samples.at(-1)!.events!.lostTotal).toBe(0);
  });

  it.each(['ebpf', 'netlink'] as const)(
    'keeps the UPDATEs it does not need out of the socket (%s filter)',
    async (path) => {
      if (path === 'netlink') {
        // The classic filter, as where the kernel refuses the eBPF one (fault_injection.h).
        const binding = loadBinding();
        const previous = binding._injectFaults({ eventProgramType: BPF_PROG_TYPE_XDP });
        defer(() => binding._injectFaults(previous));
      }
      // conntrack -E, the reference reader, sees every UPDATE the kernel sends, unless its own
      // small buffer overflows (it says ENOBUFS): then the run says nothing and is made again.
      for (let attempt = 1; ; attempt++) {
        const ns = await namespace(`filter${attempt}`);
        const { monitor, samples } = await startMonitor(ns);
        const reference = spawn('ip', ['netns', 'exec', ns.name, 'conntrack', '-E', '-e', 'UPDATE']);
        let referenceOut = '';
        let referenceErr = '';
        reference.stdout.on('data', (d) => (referenceOut += d));
        reference.stderr.on('data', (d) => (referenceErr += d));
        await ns.waitForListener(process.pid); // the monitor...
        await ns.waitForListener(reference.pid!); // ...and conntrack -E (ip netns exec runs it as itself)
        await ns.traffic('udp-echo', 50);
        await ns.traffic('tcp', 20);
        await nextSamples(monitor, 2);
        await monitor.stop();
        reference.kill('SIGINT');
        await new Promise((r) => reference.on('close', r));
        const lines = referenceOut.split('\n').filter((l) => l.includes('[UPDATE]'));
        // conntrack -E says how many events it showed; a shortfall or ENOBUFS is its own loss.
        const shown = Number(/(\d+) flow events have been shown/.exec(referenceErr)?.[1] ?? -1);
        if ((/ENOBUFS/.test(referenceErr) || shown !== lines.length) && attempt < 3) continue;
        const udpUpdates = lines.filter((l) => /\budp\b/.test(l)).length;
        const tcpStateChanges = lines.filter(
          (l) => /\btcp\b/.test(l) && /\b(SYN_RECV|ESTABLISHED|FIN_WAIT|CLOSE_WAIT|LAST_ACK|TIME_WAIT|CLOSE)\b/.test(l),
        ).length;
        const received = samples.reduce((sum, s) => sum + s.events!.updates, 0);
        console.info(
          `filter: conntrack -E saw ${lines.length} UPDATEs (${udpUpdates} UDP, ${tcpStateChanges} TCP state changes); the monitor received ${received}`,
        );
        expect(referenceErr).not.toMatch(/ENOBUFS/);
        expect(shown).toBe(lines.length);
        expect(udpUpdates).toBeGreaterThan(0); // the kernel sent UDP UPDATEs (one per echo flow)...
        expect(udpUpdates).toBeLessThanOrEqual(50);
        expect(received).toBe(tcpStateChanges); // ...and the monitor got exactly the TCP state changes
        expect(received).toBe(lines.length - udpUpdates);
        expect(samples.at(-1)!.totals.insert).toBe(70);
        expect(samples.at(-1)!.events!.path).toBe(path);
        return;
      }
    },
  );

  it('with nf_conntrack_events=0 says what it cannot know and warns', async () => {
    const ns = await namespace('off');
    await ns.sysctl('net.netfilter.nf_conntrack_events', 0);
    const { monitor, samples, warnings } = await startMonitor(ns);
    await nextSamples(monitor, 1);
    const s = samples[0]!;
    expect(s.eventsMode).toBe(0);
    expect(s.counts.insert).toBeNull();
    expect(s.tcpStates).toBeNull();
    expect(s.timeWait.entries).toBeNull();
    expect(s.unavailable['counts.insert']).toMatch(/nf_conntrack_events is 0/);
    expect(s.counts.drop).toBe(0); // kernel counters do not depend on events
    expect(warnings.map((w) => w.code)).toEqual(['EVENTS_OFF']);
  });
});
