/**
 * The eBPF event path (native/ctnetlink/kernel_flows.h) on the real kernel: events counted in
 * the kernel and checked against the namespace's own ground truth (its nft `ct state new`
 * counter, nf_conntrack_count, conntrack -L), UDP and ICMP flows that never reach user space,
 * their expiry and their hand-over at dumps, and the fallback to the classic filter.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { ConntrackMonitor, ConntrackSample } from '../../dist/index.js';
import { loadBinding } from '../../dist/native.js';
import { canRunIntegration } from '../helpers/gate';
import type { TestNamespace } from '../helpers/netns';
import { nextKnownSample, nextSamples } from '../helpers/samples';
import { defer, namespace, startMonitor } from '../helpers/scope';

const BPF_PROG_TYPE_SCHED_CLS = 3; // loads, but SO_ATTACH_BPF takes socket filters only
const BPF_PROG_TYPE_XDP = 6; // the verifier refuses it: no bpf_skb_load_bytes for XDP

const received = (samples: ConntrackSample[]) => samples.reduce((n, s) => n + s.events!.received, 0);

/**
 * The next known sample's protocols (nextKnownSample: what expired counts once a walk checked
 * it) next to the kernel's listing (which also reaps what expired).
 */
async function checkpoint(ns: TestNamespace, monitor: ConntrackMonitor, samples: ConntrackSample[], label: string) {
  await nextSamples(monitor, 1);
  const reported = (await nextKnownSample(monitor, samples, label)).sample.protocols;
  const kernel = (await ns.kernelListing()).protocols;
  console.info(`${label}: reported ${JSON.stringify(reported)} kernel ${JSON.stringify(kernel)}`);
  expect(reported).toEqual(kernel);
  return reported!;
}

describe.skipIf(!canRunIntegration)('the eBPF event path on the real kernel', () => {
  it('counts UDP and ICMP flows in the kernel: exact inserts and protocols, through expiry, with nothing queued', async () => {
    const FLOWS = 3000;
    const ns = await namespace('ebpf-udp');
    // Long enough that none expires while they are made and listed on a busy machine.
    await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 8);
    const { monitor, samples } = await startMonitor(ns);
    await nextSamples(monitor, 1);
    expect(samples[0]!.events).toMatchObject({ path: 'ebpf', pathReason: null });

    const traffic = await ns.traffic('udp', FLOWS);
    expect(await ns.icmpEcho(5)).toBe(5);
    const live = await checkpoint(ns, monitor, samples, 'live');
    expect(traffic).toMatchObject({ ok: FLOWS, failed: 0 });
    expect(live).toEqual({ tcp: 0, udp: FLOWS, icmp: 5, other: 0 });

    // The UDP flows reach their 8 s timeout; the kernel has yet to reap them.
    await new Promise((r) => setTimeout(r, 8200));
    await nextSamples(monitor, 2);
    const unreaped = await ns.count();
    const expired = await checkpoint(ns, monitor, samples, 'expired');
    expect(expired).toEqual({ tcp: 0, udp: 0, icmp: 5, other: 0 });

    // conntrack -L reaped them: each sent a DESTROY, counted in the kernel.
    await nextSamples(monitor, 2);
    const last = samples.at(-1)!;
    const created = await ns.nftNewCount();
    console.info(
      `udp flood: inserts ${last.totals.insert} (nft counter ${created}), deletes ${last.totals.delete}, ` +
        `nf_conntrack_count ${unreaped} (expired, not yet reaped) when udp showed 0, messages received ${received(samples)}, resyncs ${last.events!.resyncs}`,
    );
    expect(last.totals.insert).toBe(created);
    expect(created).toBe(FLOWS + 5);
    expect(last.totals.delete).toBe(FLOWS);
    expect(received(samples)).toBe(0); // not one UDP or ICMP event was queued
    expect(last.events!.lostTotal).toBe(0);
  });

  it('counts each flow once through dumps that run while flows come and go', async () => {
    const ns = await namespace('ebpf-dumps');
    await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 30);
    // A dump every second while the flows are made: each dump lists flows the kernel filter
    // tracks, and DESTROYs remove some of them meanwhile. A round lasts about as long as the
    // machine takes: each ends only once a dump ran since it began.
    const { monitor, samples } = await startMonitor(ns, { resyncIntervalMs: 1000 });
    await nextSamples(monitor, 1);
    for (let round = 0; round < 4; round++) {
      const resyncs = samples.at(-1)!.events!.resyncs;
      await ns.traffic('udp', 500);
      await ns.icmpEcho(5);
      await ns.exec('conntrack', ['-D', '-p', 'udp', '--dport', String((await ns.traffic('udp', 1)).port)]);
      while (samples.at(-1)!.events!.resyncs === resyncs) await nextSamples(monitor, 1);
    }
    await nextSamples(monitor, 6);
    const counts = await checkpoint(ns, monitor, samples, 'after dumps');
    const last = samples.at(-1)!;
    console.info(
      `dumps: ${last.events!.resyncs} resyncs, inserts ${last.totals.insert}, deletes ${last.totals.delete}`,
    );
    expect(last.events!.resyncs).toBeGreaterThanOrEqual(3);
    expect(counts).toEqual({ tcp: 0, udp: 2000, icmp: 20, other: 0 });
    expect(last.totals.insert).toBe(await ns.nftNewCount());
    expect(received(samples)).toBe(0);
  });

  it('hands a flow kept alive by packets that send no event to the table at the next dump', async () => {
    const ns = await namespace('ebpf-stream');
    await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 2);
    const { monitor, samples } = await startMonitor(ns, { resyncIntervalMs: 1000 });
    await nextSamples(monitor, 1);
    // One flow for 6 s; its NEW gave the kernel filter a 2 s deadline, then nothing.
    const stream = ns.traffic('udp-stream', 30);
    await new Promise((r) => setTimeout(r, 4500));
    const handed = await checkpoint(ns, monitor, samples, 'kept alive');
    await stream;
    expect(handed.udp).toBe(1);
    expect(received(samples)).toBe(0); // the hand-over needs no event
  });

  it.each([
    ['the verifier refuses it', BPF_PROG_TYPE_XDP, /verifier rejected/],
    ['the socket will not take it', BPF_PROG_TYPE_SCHED_CLS, /^SO_ATTACH_BPF: Invalid argument$/],
  ] as const)(
    'falls back to the classic filter when %s, says why, and still counts exactly',
    async (_, programType, reason) => {
      const binding = loadBinding();
      const previous = binding._injectFaults({ eventProgramType: programType });
      defer(() => binding._injectFaults(previous));
      const ns = await namespace('ebpf-fallback');
      const { monitor, samples } = await startMonitor(ns);
      await ns.traffic('udp', 200);
      await ns.traffic('tcp', 20);
      const counts = await checkpoint(ns, monitor, samples, 'classic filter');
      const last = samples.at(-1)!;
      console.info(`fallback: path ${last.events!.path}, reason "${last.events!.pathReason}"`);
      expect(last.events!.path).toBe('netlink');
      expect(last.events!.pathReason).toMatch(reason);
      expect(last.totals.insert).toBe(await ns.nftNewCount());
      expect(counts).toEqual({ tcp: 20, udp: 200, icmp: 0, other: 0 });
      // Every NEW was queued and read, and the TCP state changes.
      const updates = samples.reduce((n, s) => n + s.events!.updates, 0);
      expect(received(samples)).toBe(220 + updates);
      expect(updates).toBeGreaterThan(0);
    },
  );

  it('without CAP_BPF and CAP_SYS_ADMIN uses the classic filter and names the capability', async () => {
    const ns = await namespace('ebpf-nocap');
    const script = `
      const { ConntrackMonitor } = require(${JSON.stringify(require.resolve('../../dist/index.js'))});
      const m = new ConntrackMonitor({ intervalMs: 100 });
      m.once('sample', (s) => { console.log(JSON.stringify(s.events)); m.stop(); });
      m.start().catch((e) => console.log(JSON.stringify({ error: e.message })));`;
    const r = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        ns.name,
        'setpriv',
        '--bounding-set',
        '-bpf,-sys_admin,-perfmon',
        process.execPath,
        '-e',
        script,
      ],
      { encoding: 'utf8' },
    );
    const events = JSON.parse(r.stdout);
    console.info(`no CAP_BPF: path ${events.path}, reason "${events.pathReason}"`);
    expect(events.path).toBe('netlink');
    expect(events.pathReason).toMatch(/BPF_MAP_CREATE.*Operation not permitted.*CAP_BPF or CAP_SYS_ADMIN/);
  });
});
