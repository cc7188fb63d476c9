/**
 * The netlink backend against the real kernel, in namespaces made for each test. Every
 * expected number is the kernel's own: nf_conntrack_count, /proc/net/stat/nf_conntrack,
 * conntrack -C, and the traffic generator's socket results.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConntrackError, ConntrackMonitor } from '../../dist/index.js';
import { unprivilegedCopy } from '../helpers/unprivileged';
import { canRunIntegration } from '../helpers/gate';
import { withConntrackMax } from '../helpers/kernel-lock.mjs';
import { uniqueName } from '../helpers/netns';
import { nextSamples } from '../helpers/samples';
import { namespace, startMonitor } from '../helpers/scope';

describe.skipIf(!canRunIntegration)('netlink backend on the real kernel', () => {
  it('counts N TCP connections as N inserts, and its entries equal the kernel count', async () => {
    const N = 200;
    const ns = await namespace('insert');
    const { monitor, samples } = await startMonitor(ns);
    const traffic = await ns.traffic('tcp', N);
    await nextSamples(monitor, 2);
    await monitor.stop();

    const kernelCount = await ns.count();
    const last = samples.at(-1)!;
    console.info(
      `inserts: monitor ${last.totals.insert}, connections ${traffic.ok}; entries: monitor ${last.entries}, kernel ${kernelCount}, conntrack -C ${await ns.conntrackToolsCount()}`,
    );
    expect(traffic).toEqual({ ok: N, failed: 0 });
    expect(last.final).toBe(true);
    expect(last.totals.insert).toBe(N);
    expect(samples.reduce((sum, s) => sum + s.counts.insert!, 0)).toBe(N);
    expect(last.totals.delete).toBe(0); // closed connections linger in TIME_WAIT
    expect(kernelCount).toBe(N);
    expect(last.entries).toBe(kernelCount);
    expect(await ns.conntrackToolsCount()).toBe(kernelCount);
    expect(last.fill).toBe(kernelCount / last.max!);
    expect(last.events!.lostTotal).toBe(0);
    expect(last.netns).toBe(ns.path);
    // Everything is known but the forecast, which needs 5 samples over 5 s.
    expect(last.unavailable).toEqual({
      timeToFullSeconds: expect.stringMatching(/^a trend needs 5 s of samples; [\d.]+ s so far$/),
    });
    expect(last.timeToFullSeconds).toBeNull();
  });

  it('reproduces "table full, dropping packet": drops equal the kernel counter and the failed sends', async () => {
    const LIMIT = 50;
    const FLOWS = 150;
    const ns = await namespace('full');
    const { monitor, samples } = await startMonitor(ns);
    const before = await ns.kernelStats();
    const traffic = await withConntrackMax(LIMIT, async () => {
      const result = await ns.traffic('udp', FLOWS);
      await nextSamples(monitor, 2);
      return result;
    });
    await monitor.stop();
    const after = await ns.kernelStats();
    const kernelDrops = after.drop! - before.drop!;
    const kernelEarlyDrops = after.early_drop! - before.early_drop!;
    const last = samples.at(-1)!;
    console.info(
      `table full at max=${LIMIT}: drops monitor ${last.totals.drop}, kernel ${kernelDrops}, failed sends ${traffic.failed}; early_drop monitor ${last.totals.earlyDrop}, kernel ${kernelEarlyDrops}; inserts ${last.totals.insert} for ${traffic.ok} sent`,
    );

    expect(kernelDrops).toBeGreaterThan(0);
    expect(last.totals.drop).toBe(kernelDrops);
    expect(traffic.failed).toBe(kernelDrops);
    expect(traffic.errors).toEqual({ EPERM: kernelDrops });
    expect(last.totals.earlyDrop).toBe(kernelEarlyDrops);
    expect(last.totals.insert).toBe(traffic.ok); // every datagram that got out made one entry
    expect(last.totals.delete).toBe(kernelEarlyDrops); // evicted entries send DESTROY
    expect(samples.some((s) => s.max === LIMIT && s.entries === LIMIT && s.fill === 1)).toBe(true);
    expect(samples.some((s) => (s.rates.drop ?? 0) > 0)).toBe(true);
    expect(last.entries).toBe(await ns.count());
  });

  it("monitors another namespace through `netns`: its traffic, not the others'", async () => {
    const a = await namespace('a');
    const b = await namespace('b');
    const ma = await startMonitor(a);
    const mb = await startMonitor(b);
    await Promise.all([a.traffic('tcp', 7), b.traffic('tcp', 13)]);
    await Promise.all([nextSamples(ma.monitor, 2), nextSamples(mb.monitor, 2)]);
    await Promise.all([ma.monitor.stop(), mb.monitor.stop()]);
    const lastA = ma.samples.at(-1)!;
    const lastB = mb.samples.at(-1)!;
    expect(lastA.totals.insert).toBe(7);
    expect(lastB.totals.insert).toBe(13);
    expect(lastA.entries).toBe(await a.count());
    expect(lastB.entries).toBe(await b.count());
  });

  it('emits one sample per interval, whatever the event rate', async () => {
    const ns = await namespace('cadence');
    const { monitor, samples } = await startMonitor(ns);
    const started = Date.now();
    await ns.traffic('tcp', 300);
    await nextSamples(monitor, 3);
    const elapsed = Date.now() - started;
    await monitor.stop();
    const regular = samples.filter((s) => !s.final);
    expect(regular.length).toBeLessThanOrEqual(Math.ceil(elapsed / 200) + 1);
    for (const s of regular) expect(s.intervalMs).toBeGreaterThan(150);
  });

  it('fails to start with a ConntrackError naming the problem', async () => {
    await expect(new ConntrackMonitor({ netns: uniqueName('absent') }).start()).rejects.toMatchObject({
      name: 'ConntrackError',
      code: 'ENOENT',
      syscall: 'open',
    });
    const notANamespace = new ConntrackMonitor({ netns: '/etc/hostname' }).start();
    await expect(notANamespace).rejects.toBeInstanceOf(ConntrackError);
    await expect(notANamespace).rejects.toMatchObject({ code: 'EINVAL', syscall: 'fstatfs' });
    await expect(notANamespace).rejects.toThrow(/not a network namespace/);
  });

  it('without CAP_NET_ADMIN, the netlink backend fails with EPERM and says what is needed', async () => {
    const script = `
      const { ConntrackMonitor } = require(${JSON.stringify(unprivilegedCopy().index)});
      new ConntrackMonitor({ backend: 'netlink' }).start().then(
        () => console.log(JSON.stringify({ started: true })),
        (e) => console.log(JSON.stringify({ name: e.name, code: e.code, syscall: e.syscall, message: e.message })));`;
    const child = spawn(process.execPath, ['-e', script], { uid: 65534, gid: 65534 });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await new Promise((resolve) => child.on('close', resolve));
    const result = JSON.parse(out);
    expect(result).toMatchObject({ name: 'ConntrackError', code: 'EPERM', syscall: 'setsockopt' });
    expect(result.message).toMatch(/CAP_NET_ADMIN/);
  });
});
