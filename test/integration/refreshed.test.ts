/**
 * Flows the kernel keeps alive without telling: every packet refreshes an entry's timeout and
 * sends no event, so a flow outlives the deadline its last event announced. With default options
 * and between listings, the sample's protocols, tcpStates and timeWait must be what conntrack -L
 * lists at that moment, on both event paths: one-way and answered UDP, TCP half-closed while
 * the server sends, ICMP echo streams, SYNs retransmitted to a silent port, timeouts of many
 * minutes, a flow refreshed across a listing, and one deleted by conntrack -D after it outlived
 * its deadline.
 */
import { describe, expect, it } from 'vitest';
import type { ConntrackMonitor, ConntrackSample } from '../../dist/index.js';
import { canRunIntegration } from '../helpers/gate';
import type { TestNamespace } from '../helpers/netns';
import { nextKnownSample, nextSamples } from '../helpers/samples';
import { defer, namespace, startMonitor, useClassicFilter } from '../helpers/scope';

const PATHS = ['ebpf', 'netlink'] as const;

/** The sample's view in the kernel listing's shape. */
function view(s: ConntrackSample) {
  return {
    protocols: s.protocols,
    tcpStates: s.tcpStates && Object.fromEntries(Object.entries(s.tcpStates).filter(([, n]) => n > 0)),
    entries: s.protocols && Object.values(s.protocols).reduce((a, b) => a + b, 0),
  };
}

/**
 * The next sample whose counts are known (nextKnownSample) against conntrack -L right after it.
 */
async function checkpoint(ns: TestNamespace, monitor: ConntrackMonitor, samples: ConntrackSample[], label: string) {
  const { sample, skipped } = await nextKnownSample(monitor, samples, label);
  const kernel = await ns.kernelListing();
  const reported = view(sample);
  console.info(
    `${label}: reported ${JSON.stringify(reported)} kernel ${JSON.stringify(kernel)} ` +
      `(unverified ${sample.events!.unverified}, walks ${sample.events!.walks}, resyncs ${sample.events!.resyncs})`,
  );
  expect(reported).toEqual(kernel);
  return { sample, kernel, skipped };
}

async function setTimeouts(ns: TestNamespace, timeouts: Record<string, number>) {
  for (const [name, seconds] of Object.entries(timeouts))
    await ns.sysctl(`net.netfilter.nf_conntrack_${name}`, seconds);
}

describe.skipIf(!canRunIntegration)('flows the kernel keeps alive without telling', () => {
  it.each(PATHS)(
    'UDP one-way and answered, TCP half-closed while the server sends, ICMP streams and SYN retries stay counted (%s path)',
    async (path) => {
      if (path === 'netlink') useClassicFilter();
      const ns = await namespace(`alive-${path}`);
      // Each flow's first deadline passes within seconds; packets every 700 ms keep them all.
      await setTimeouts(ns, { udp_timeout: 2, udp_timeout_stream: 4, tcp_timeout_close_wait: 3, icmp_timeout: 2 });
      const silentPort = 20000 + Math.floor(Math.random() * 40000);
      await ns.exec('nft', ['add', 'rule', 'inet', 'ctmon_test', 'in', 'tcp', 'dport', String(silentPort), 'drop']);
      const { monitor, samples } = await startMonitor(ns, { intervalMs: 1000 });
      const flows = await ns.keepalive({ answered: 10, oneWay: 10, halfClosed: 10, syns: 3, silentPort }, 700);
      defer(() => flows.release());
      const pings = await ns.icmpStreams(5, 700);
      defer(() => pings.release());

      const started = Date.now();
      const checkpoints = [];
      while (Date.now() - started < 12_000)
        checkpoints.push(await checkpoint(ns, monitor, samples, `${path} +${Date.now() - started} ms`));
      const last = checkpoints.at(-1)!;
      expect(last.kernel.protocols).toEqual({ tcp: 13, udp: 20, icmp: 5, other: 0 });
      expect(last.kernel.tcpStates).toEqual({ CLOSE_WAIT: 10, SYN_SENT: 3 });
      expect(last.sample.events!.path).toBe(path);
      expect(last.sample.events!.walks).toBeGreaterThan(0); // flows outlived their deadline and were found alive
      // Every checkpoint but the few skipped while entries waited for a walk.
      expect(checkpoints.filter((c) => c.skipped > 0).length).toBeLessThanOrEqual(checkpoints.length / 4);
      const s = last.sample;
      console.info(
        `${path}: ${checkpoints.length} checkpoints over ${Date.now() - started} ms; walks ${s.events!.walks} (last ${s.events!.lastWalkMs} ms), resyncs ${s.events!.resyncs}, messages received ${samples.reduce((n, x) => n + x.events!.received, 0)}`,
      );
    },
  );

  it.each(PATHS)('UDP with timeouts of many minutes (%s path)', async (path) => {
    if (path === 'netlink') useClassicFilter();
    const ns = await namespace(`long-${path}`);
    await setTimeouts(ns, { udp_timeout: 400, udp_timeout_stream: 900 });
    const { monitor, samples } = await startMonitor(ns, { intervalMs: 1000 });
    await ns.traffic('udp', 10);
    await ns.traffic('udp-echo', 10);
    const { kernel } = await checkpoint(ns, monitor, samples, `${path} long timeouts`);
    expect(kernel.protocols.udp).toBe(20);
  });

  it.each(PATHS)('flows refreshed across listings (%s path)', async (path) => {
    if (path === 'netlink') useClassicFilter();
    const ns = await namespace(`relist-${path}`);
    await setTimeouts(ns, { udp_timeout: 2 });
    const { monitor, samples } = await startMonitor(ns, { intervalMs: 1000, resyncIntervalMs: 1500 });
    const flows = await ns.keepalive({ oneWay: 5, answered: 5 }, 500);
    defer(() => flows.release());
    for (let i = 0; i < 5; i++) await checkpoint(ns, monitor, samples, `${path} across listings ${i}`);
    expect(samples.at(-1)!.events!.resyncs).toBeGreaterThanOrEqual(2);
  });

  it.each(PATHS)('flows alive past their deadline, then deleted by conntrack -D (%s path)', async (path) => {
    if (path === 'netlink') useClassicFilter();
    const ns = await namespace(`delete-${path}`);
    await setTimeouts(ns, { udp_timeout: 2 });
    const { monitor, samples } = await startMonitor(ns, { intervalMs: 1000 });
    const flows = await ns.keepalive({ oneWay: 5 }, 500);
    defer(() => flows.release());
    // Until a walk found them alive past the deadline their NEW announced.
    while (samples.at(-1)?.events!.walks === 0 || samples.length === 0) await nextSamples(monitor, 1);
    await checkpoint(ns, monitor, samples, `${path} alive`);
    // Deleted while packets still come: the next packet of each makes a new entry.
    await ns.exec('conntrack', ['-D', '-p', 'udp', '--dport', String(flows.sinkPort)]);
    await new Promise((r) => setTimeout(r, 600));
    const again = await checkpoint(ns, monitor, samples, `${path} deleted, sent again`);
    expect(again.kernel.protocols.udp).toBe(5);
    // Deleted once no packet comes.
    await flows.release();
    await ns.exec('conntrack', ['-D', '-p', 'udp', '--dport', String(flows.sinkPort)]);
    const gone = await checkpoint(ns, monitor, samples, `${path} deleted`);
    expect(gone.kernel.protocols.udp).toBe(0);
    expect(samples.at(-1)!.totals).toMatchObject({ insert: 10, delete: 10 });
  });
});
