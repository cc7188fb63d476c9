/**
 * The /proc fallback as an unprivileged user: root makes the namespace, the monitor (the CLI)
 * runs as nobody in a child process, falls back from netlink, and reports the kernel's numbers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ConntrackSample } from '../../dist/index.js';
import { unprivilegedCopy } from '../helpers/unprivileged';
import { canRunIntegration } from '../helpers/gate';
import { CONNTRACK_MAX, withConntrackMax } from '../helpers/kernel-lock.mjs';
import { TestNamespace } from '../helpers/netns';
import { defer, namespace } from '../helpers/scope';

const NOBODY = 65534;

/** A process living in the namespace, so /proc/PID/net shows it. */
function resident(ns: TestNamespace): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns.name, 'sleep', '600'], { stdio: 'ignore' });
  defer(() => void child.kill());
  return child;
}

describe.skipIf(!canRunIntegration)('proc backend as an unprivileged user', () => {
  it("falls back from netlink, says why once, and reports the kernel's entries, max and drops", async () => {
    const ns = await namespace('proc');
    const pid = resident(ns).pid!;
    await new Promise((r) => setTimeout(r, 200)); // let `ip netns exec` enter the namespace
    await ns.traffic('tcp', 15);

    const cli = spawn(
      process.execPath,
      [unprivilegedCopy().cli, '--json', '--netns', `/proc/${pid}/ns/net`, '--interval', '200'],
      {
        uid: NOBODY,
        gid: NOBODY,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    defer(() => void cli.kill());
    let stderr = '';
    cli.stderr.on('data', (d) => (stderr += d));
    const samples: ConntrackSample[] = [];
    const waiters: (() => void)[] = [];
    let buffer = '';
    cli.stdout.on('data', (d) => {
      buffer += d;
      for (let nl; (nl = buffer.indexOf('\n')) >= 0; buffer = buffer.slice(nl + 1)) {
        samples.push(JSON.parse(buffer.slice(0, nl)));
        waiters.splice(0).forEach((w) => w());
      }
    });
    cli.on('close', () => waiters.splice(0).forEach((w) => w())); // fail fast, not by timeout
    const nextSample = () => new Promise<void>((r) => waiters.push(r));

    await nextSample();
    const first = samples[0]!;
    const kernelCount = await ns.count();
    console.info(`proc as nobody: entries ${first.entries} (kernel ${kernelCount}), max ${first.max}`);
    expect(first.source).toBe('proc');
    expect(first.entries).toBe(kernelCount);
    expect(kernelCount).toBe(15);
    expect(first.max).toBe(Number(readFileSync(CONNTRACK_MAX, 'utf8'))); // the host's, global
    expect(first.counts.insert).toBeNull();
    expect(first.socketTimeWait).toBe(15);

    const before = await ns.kernelStats();
    const traffic = await withConntrackMax(20, async () => {
      const result = await ns.traffic('udp', 30);
      await nextSample();
      await nextSample();
      return result;
    });
    const after = await ns.kernelStats();
    cli.kill('SIGTERM');
    const code = await new Promise((r) => cli.on('close', r));
    const last = samples.at(-1)!;
    const kernelDrops = after.drop! - before.drop!;
    console.info(
      `proc table full: drops reported ${last.totals.drop}, kernel ${kernelDrops}, failed sends ${traffic.failed}`,
    );
    expect(code).toBe(0);
    expect(last.final).toBe(true);
    expect(kernelDrops).toBeGreaterThan(0);
    expect(last.totals.drop).toBe(kernelDrops);
    expect(traffic.failed).toBe(kernelDrops);
    expect(samples.some((s) => s.entries === 20 && s.max === 20)).toBe(true);
    expect(samples.every((s) => s.source === 'proc')).toBe(true);

    const notes = stderr.trim().split('\n');
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(
      /^conntrack-monitor: using \/proc instead of ctnetlink: .*(permission|Permission|EPERM|EACCES)/,
    );
  });

  it('reads a namespace named under /var/run/netns through a process in it', async () => {
    const { ConntrackMonitor } = await import('../../dist/index.js');
    const ns = await namespace('procname');
    const lonely = new ConntrackMonitor({ netns: ns.name, backend: 'proc' });
    await expect(lonely.start()).rejects.toMatchObject({
      code: 'ESRCH',
      message: expect.stringMatching(/pass \/proc\/PID\/ns\/net/),
    });
    resident(ns);
    await new Promise((r) => setTimeout(r, 200));
    await ns.traffic('tcp', 4);
    const monitor = new ConntrackMonitor({ netns: ns.name, backend: 'proc', intervalMs: 100 });
    const sample = new Promise<ConntrackSample>((r) => monitor.once('sample', r));
    await monitor.start();
    const s = await sample;
    await monitor.stop();
    expect(s).toMatchObject({ source: 'proc', entries: await ns.count(), socketTimeWait: 4 });
  });

  it('--backend netlink as nobody fails with the reason instead of falling back', async () => {
    const cli = spawn(process.execPath, [unprivilegedCopy().cli, '--backend', 'netlink', '--duration', '1'], {
      uid: NOBODY,
      gid: NOBODY,
    });
    let stderr = '';
    cli.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((r) => cli.on('close', r));
    expect(code).toBe(1);
    expect(stderr).toMatch(/cannot start: .*Operation not permitted.*CAP_NET_ADMIN/);
  });
});
