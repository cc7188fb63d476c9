/**
 * TCP in the kernel: on the eBPF path every TCP event (NEW, each state change, DESTROY) is
 * handled by the event program and nothing reaches user space, and the states it keeps are what
 * conntrack -L lists: connections of every shape, a churn whose TIME_WAIT entries expire while
 * it runs, and, node-wide, every namespace's states from the one reader. The classic filter,
 * where the kernel refuses the program, gives the same answers from the events it passes.
 */
import { describe, expect, it } from 'vitest';
import {
  AllNamespacesMonitor,
  type AllNamespacesReport,
  type ConntrackMonitor,
  type ConntrackSample,
} from '../../dist/index.js';
import { canRunIntegration } from '../helpers/gate';
import type { TestNamespace } from '../helpers/netns';
import { nextSamples } from '../helpers/samples';
import { defer, namespace, startMonitor, useClassicFilter } from '../helpers/scope';

const PATHS = ['ebpf', 'netlink'] as const;
const received = (samples: ConntrackSample[]) => samples.reduce((n, s) => n + s.events!.received, 0);
const nonzero = (states: Record<string, number> | null) =>
  states && Object.fromEntries(Object.entries(states).filter(([, n]) => n > 0));

/** The next sample with known states against conntrack -L right after it. */
async function checkpoint(ns: TestNamespace, monitor: ConntrackMonitor, samples: ConntrackSample[], label: string) {
  do await nextSamples(monitor, 1);
  while (samples.at(-1)!.tcpStates === null);
  const s = samples.at(-1)!;
  const kernel = await ns.kernelListing();
  const reported = { protocols: s.protocols, tcpStates: nonzero(s.tcpStates), timeWait: s.timeWait.entries };
  console.info(`${label}: reported ${JSON.stringify(reported)} kernel ${JSON.stringify(kernel)}`);
  expect(reported).toEqual({
    protocols: kernel.protocols,
    tcpStates: kernel.tcpStates,
    timeWait: kernel.tcpStates.TIME_WAIT ?? 0,
  });
  return kernel;
}

describe.skipIf(!canRunIntegration)('TCP states kept in the kernel', () => {
  it.each(PATHS)(
    'connections of every shape: reset, closed at once by both ends, half-closed with data, SYN to a closed port, IPv6 (%s path)',
    async (path) => {
      if (path === 'netlink') useClassicFilter();
      const ns = await namespace(`shapes-${path}`);
      await ns.sysctl('net.netfilter.nf_conntrack_tcp_timeout_time_wait', 4);
      await ns.sysctl('net.netfilter.nf_conntrack_tcp_timeout_close', 4);
      const { monitor, samples } = await startMonitor(ns, { intervalMs: 500 });
      await ns.traffic('tcp-shapes', 10);
      const open = await checkpoint(ns, monitor, samples, `${path} after the connections`);
      // The resets in CLOSE; the others in TIME_WAIT; a SYN answered by RST leaves no entry (the
      // kernel kills an unreplied entry at the RST: its NEW and DESTROY are counted).
      expect(open.tcpStates).toEqual({ CLOSE: 10, TIME_WAIT: 30 });
      expect(await ns.nftNewCount()).toBe(50);
      // Their timeouts pass: the entries go without an event until the kernel reaps them.
      await new Promise((r) => setTimeout(r, 4500));
      const expired = await checkpoint(ns, monitor, samples, `${path} expired`);
      expect(expired.protocols.tcp).toBe(0);
      const last = samples.at(-1)!;
      expect(last.totals.insert).toBe(await ns.nftNewCount());
      expect(last.events!.path).toBe(path);
      if (path === 'ebpf') expect(received(samples)).toBe(0);
      console.info(`${path}: messages received ${received(samples)}, updates ${last.events!.updateTotal}`);
    },
  );

  it('TCP churn: TIME_WAIT and CLOSE equal conntrack -L 3 s after the load, inserts exact, nothing queued', async () => {
    const ns = await namespace('churn');
    await ns.sysctl('net.netfilter.nf_conntrack_tcp_timeout_time_wait', 1); // reaped while it runs
    const { monitor, samples } = await startMonitor(ns, { intervalMs: 1000 });
    const churn = await ns.traffic('tcp', 3000);
    await new Promise((r) => setTimeout(r, 3000));
    const kernel = await checkpoint(ns, monitor, samples, 'churn + 3 s');
    const last = samples.at(-1)!;
    console.info(
      `churn: ${churn.ok} connections; inserts ${last.totals.insert} (nft ${await ns.nftNewCount()}), deletes ${last.totals.delete}, ` +
        `TIME_WAIT ${last.timeWait.entries} CLOSE ${last.tcpStates!.CLOSE} (conntrack -L ${kernel.tcpStates.TIME_WAIT ?? 0}, ${kernel.tcpStates.CLOSE ?? 0}), ` +
        `received ${received(samples)}, lost ${last.events!.lostTotal}`,
    );
    expect(churn).toMatchObject({ ok: 3000, failed: 0 });
    expect(last.totals.insert).toBe(await ns.nftNewCount());
    expect(last.events!.lostTotal).toBe(0);
    expect(received(samples)).toBe(0);
  });

  it("node-wide: 30 namespaces, TCP churn in 3: every namespace's TIME_WAIT and states equal its conntrack -L", async () => {
    const all: TestNamespace[] = [];
    for (let i = 0; i < 30; i++) all.push(await namespace(`node-tcp-${i}`));
    const host = new AllNamespacesMonitor({ intervalMs: 500, containerdRoot: null, crioRoot: null });
    const reports: AllNamespacesReport[] = [];
    host.on('report', (r) => reports.push(r));
    defer(() => host.stop());
    await host.start();
    const busy = all.slice(0, 3);
    const held = await all[3]!.hold(3, 2);
    defer(() => held.release());
    await Promise.all(busy.map((ns, i) => ns.traffic('tcp', 300 * (i + 1))));
    for (const ns of all.slice(4, 10)) await ns.traffic('tcp-shapes', 1);
    const at = reports.length;
    while (reports.length < at + 2) await new Promise((r) => setTimeout(r, 50));
    const report = reports.at(-1)!;
    let compared = 0;
    for (const ns of all) {
      const row = report.namespaces.find((n) => n.name === ns.name)!;
      const kernel = await ns.kernelListing();
      expect({ name: ns.name, tcpStates: nonzero(row.tcpStates), timeWait: row.timeWait?.entries }).toEqual({
        name: ns.name,
        tcpStates: kernel.tcpStates,
        timeWait: kernel.tcpStates.TIME_WAIT ?? 0,
      });
      expect(row.protocols).toEqual(kernel.protocols);
      expect(row.events!.counting).toBe('ebpf');
      compared++;
    }
    const first = report.namespaces.find((n) => n.name === busy[2]!.name)!;
    console.info(
      `node: ${compared} namespaces compared; busiest ${JSON.stringify(nonzero(first.tcpStates))}; received ${report.namespaces.reduce((n, r) => n + (r.events?.received ?? 0), 0)} messages in the last interval`,
    );
    expect(first.timeWait!.entries).toBe(900);
  });

  it('node-wide on the classic filter: trackStates still gives the named namespaces their states', async () => {
    const a = await namespace('classic-tracked');
    const b = await namespace('classic-untracked');
    const host = new AllNamespacesMonitor({
      intervalMs: 200,
      containerdRoot: null,
      crioRoot: null,
      counting: 'filter',
      trackStates: [a.name],
    });
    const reports: AllNamespacesReport[] = [];
    host.on('report', (r) => reports.push(r));
    defer(() => host.stop());
    await host.start();
    const held = await a.hold(4, 3);
    defer(() => held.release());
    await b.traffic('tcp', 2);
    const row = (name: string) => reports.at(-1)!.namespaces.find((n) => n.name === name)!;
    // Its full monitor starts with a listing of its own.
    const deadline = Date.now() + 10_000;
    while (!(reports.at(-1) && row(a.name)?.tcpStates) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const listing = await a.kernelListing();
    expect(nonzero(row(a.name).tcpStates)).toEqual(listing.tcpStates);
    expect(row(a.name).events!.counting).toBe('filter');
    expect(row(b.name).tcpStates).toBeNull();
    expect(row(b.name).unavailable.tcpStates).toMatch(/trackStates/);
  });
});
