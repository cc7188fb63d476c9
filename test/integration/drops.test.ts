/**
 * eBPF attribution of table-full drops on the real kernel: per-namespace counts against each
 * namespace's own kernel drop counter, the dropped flows against the sends that failed,
 * nftables rule drops left out, and a clear reason (no crash) without the capabilities.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { DropMonitor, registerDropMetrics, type DropMonitorOptions, type DropSample } from '../../dist/index.js';
import { CLI, runCli, servingUrl } from '../helpers/cli';
import { unprivilegedCopy } from '../helpers/unprivileged';
import { canRunIntegration } from '../helpers/gate';
import { withConntrackMax } from '../helpers/kernel-lock.mjs';
import { namespaceWithInode, TestNamespace } from '../helpers/netns';
import { defer, namespace } from '../helpers/scope';

const reason = canRunIntegration ? DropMonitor.available() : 'not root';
if (reason && canRunIntegration && process.env.CI === 'true') {
  throw new Error(`the eBPF drop probe must run under CI=true, but: ${reason}`);
}

async function startDrops(options: DropMonitorOptions = {}): Promise<{ monitor: DropMonitor; samples: DropSample[] }> {
  const monitor = new DropMonitor({ intervalMs: 200, topFlows: 1000, ...options });
  const samples: DropSample[] = [];
  monitor.on('sample', (s) => samples.push(s));
  monitor.on('error', (e) => {
    throw e;
  });
  await monitor.start();
  defer(() => monitor.stop());
  return { monitor, samples };
}

const nextSample = (monitor: DropMonitor) => new Promise((r) => monitor.once('sample', r));

/**
 * Bursts of new flows into a table of 5 entries: the kernel's own drop counts (what the tests then
 * compare the monitor's with) are at most what could not fit, and fewer when the garbage collector,
 * which evicts unreplied entries above 95% of the max whenever it runs, made room mid-burst.
 */
function expectFullTableDrops(kernel: number[], sent: number[]): void {
  kernel.forEach((k, i) => {
    expect(k).toBeGreaterThan(0);
    expect(k).toBeLessThanOrEqual(sent[i]! - 5);
  });
}

/** Whether process `pid` is in the namespace at `inode` yet (ip netns exec has entered it). */
function inNamespace(pid: number, inode: number): boolean {
  try {
    return statSync(`/proc/${pid}/ns/net`).ino === inode;
  } catch {
    return false;
  }
}

describe.skipIf(!canRunIntegration || reason !== '')('eBPF table-full drop attribution', () => {
  it("counts each namespace's table-full drops exactly, and samples the flows that were dropped", async () => {
    const a = await namespace('drops-a');
    const b = await namespace('drops-b');
    const inode = { a: statSync(a.path).ino, b: statSync(b.path).ino };
    const { monitor, samples } = await startDrops();
    const before = { a: await a.kernelStats(), b: await b.kernelStats() };
    // Table full in both namespaces at different rates: max 10, then 25 and 60 new UDP flows.
    const sent = await withConntrackMax(10, async () => {
      const r = { a: await a.traffic('udp', 25), b: await b.traffic('udp', 60) };
      await nextSample(monitor);
      return r;
    });
    await nextSample(monitor);
    await monitor.stop();
    const after = { a: await a.kernelStats(), b: await b.kernelStats() };
    const kernel = { a: after.a.drop! - before.a.drop!, b: after.b.drop! - before.b.drop! };
    const counted = (ino: number) =>
      samples
        .flatMap((s) => s.namespaces)
        .filter((n) => n.inode === ino)
        .reduce((t, n) => t + n.drops, 0);
    const flows = (ino: number) => samples.flatMap((s) => s.flows).filter((f) => f.netnsInode === ino);
    const row = samples.at(-1)!.namespaces.find((n) => n.inode === inode.b)!;
    console.info(
      `eBPF drops: a ${counted(inode.a)} (kernel ${kernel.a}, failed sends ${sent.a.failed}), ` +
        `b ${counted(inode.b)} (kernel ${kernel.b}, failed sends ${sent.b.failed}); flows a ${flows(inode.a).length}, b ${flows(inode.b).length}`,
    );

    expect(kernel.a).toBeGreaterThan(0);
    expect(kernel.b).toBeGreaterThan(kernel.a);
    expect(counted(inode.a)).toBe(kernel.a);
    expect(counted(inode.b)).toBe(kernel.b);
    expect(row).toMatchObject({ name: b.name, totalDrops: kernel.b });
    expect(samples.at(-1)!.final).toBe(true);
    // Each dropped flow is one of the sends that failed: 127.0.0.1:source port -> the receiver.
    for (const [ns, ino, traffic, drops] of [
      [a, inode.a, sent.a, kernel.a],
      [b, inode.b, sent.b, kernel.b],
    ] as const) {
      const seen = flows(ino);
      expect(seen.map((f) => f.sport).sort((x, y) => x! - y!)).toEqual(
        [...traffic.failedSourcePorts!].sort((x, y) => x - y),
      );
      for (const f of seen)
        expect(f).toMatchObject({ protocol: 'udp', src: '127.0.0.1', dst: '127.0.0.1', dport: traffic.port, count: 1 });
      // ...and each namespace's row is its own: its name (from /var/run/netns), its total.
      expect(samples.at(-1)!.namespaces.find((n) => n.inode === ino)).toMatchObject({
        name: ns.name,
        totalDrops: drops,
      });
    }
  });

  it('start/stop in any order: stop during start, two stops at once, a restart counting from zero', async () => {
    const a = await namespace('drops-life');
    const ino = statSync(a.path).ino;
    // In a child: a timer left behind by stop() during start() would keep it from exiting.
    const script = `
      const { DropMonitor } = require(${JSON.stringify(unprivilegedCopy().index)});
      (async () => {
        const m = new DropMonitor({ intervalMs: 100 });
        const starting = m.start();
        await m.stop();
        await starting.catch(() => {});
        await m.start();
        await Promise.all([m.stop(), m.stop()]);
        console.log('clean');
      })();`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('clean');
    expect(r.status).toBe(0);

    const { monitor, samples } = await startDrops();
    await withConntrackMax(5, () => a.traffic('udp', 10));
    await monitor.stop();
    await monitor.start(); // a new probe: its counts start again from zero
    samples.length = 0;
    const before = (await a.kernelStats()).drop!;
    await withConntrackMax(5, () => a.traffic('udp', 7)); // the first burst's 5 entries still fill the table
    await nextSample(monitor);
    await monitor.stop();
    const kernel = (await a.kernelStats()).drop! - before;
    const rows = samples.flatMap((s) => s.namespaces).filter((n) => n.inode === ino);
    expect(kernel).toBeGreaterThan(0);
    expect(rows.every((n) => n.drops >= 0)).toBe(true);
    expect(rows.reduce((t, n) => t + n.drops, 0)).toBe(kernel);
    expect(rows.at(-1)!.totalDrops).toBe(kernel);
  });

  it('does not count packets dropped by an nftables rule', async () => {
    const c = await namespace('drops-nft');
    await c.exec('nft', ['add chain inet ctmon_test block { type filter hook output priority 10; }']);
    await c.exec('nft', ['add rule inet ctmon_test block udp dport 9 counter drop']);
    const { monitor, samples } = await startDrops();
    const sends = await c.exec(process.execPath, [
      '-e',
      `
      const s = require('node:dgram').createSocket('udp4');
      let failed = 0, left = 20;
      for (let i = 0; i < 20; i++) s.send('x', 9, '127.0.0.1', (e) => { if (e) failed++; if (--left === 0) { console.log(failed); s.close(); } });`,
    ]);
    await nextSample(monitor);
    await monitor.stop();
    const ruleDrops = Number(
      /counter packets (\d+)/.exec(await c.exec('nft', ['list chain inet ctmon_test block']))![1],
    );
    const ino = statSync(c.path).ino;
    const counted = samples
      .flatMap((s) => s.namespaces)
      .filter((n) => n.inode === ino)
      .reduce((t, n) => t + n.drops, 0);
    console.info(`nft rule drops: ${ruleDrops} (failed sends ${sends.trim()}), counted as table-full: ${counted}`);
    expect(ruleDrops).toBe(20);
    expect(Number(sends.trim())).toBe(20);
    expect(counted).toBe(0);
    expect((await c.kernelStats()).drop).toBe(0);
  });

  it('serve --drops exposes nf_conntrack_table_full_drops_total{netns}, equal to the kernel, promtool-clean', async () => {
    const a = await namespace('drops-metrics');
    const serve = spawn(process.execPath, [
      CLI,
      'serve',
      '--drops',
      '--netns',
      a.name,
      '--listen',
      '127.0.0.1:0',
      '--interval',
      '200',
    ]);
    defer(() => serve.kill('SIGTERM'));
    const url = await servingUrl(serve);
    const before = await a.kernelStats();
    await withConntrackMax(5, () => a.traffic('udp', 15));
    const kernel = (await a.kernelStats()).drop! - before.drop!;
    await new Promise((r) => setTimeout(r, 500)); // a sample after the drops
    const text = await (await fetch(url)).text();
    const line = text.split('\n').find((l) => l.startsWith(`nf_conntrack_table_full_drops_total{netns="${a.name}"}`));
    console.info(`serve --drops: ${line} (kernel ${kernel})`);
    expectFullTableDrops([kernel], [15]);
    expect(line).toBe(`nf_conntrack_table_full_drops_total{netns="${a.name}"} ${kernel}`);
    expect(text).toContain('# TYPE nf_conntrack_table_full_drops_total counter');
    expect(execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })).toBe('');
  });

  it('a namespace deleted and another given its inode: the gone one leaves, the new one counts only its own drops', async () => {
    // No periodic discovery in the test's time: changes are found as they happen (a change of
    // /var/run/netns, a namespace whose count grew without what held it).
    const monitor = new DropMonitor({ intervalMs: 200, topFlows: 0, rediscoverMs: 60_000 });
    const registry = new Registry();
    registerDropMetrics(monitor, { registry });
    const samples: DropSample[] = [];
    monitor.on('sample', (s) => samples.push(s));
    monitor.on('error', (e) => {
      throw e;
    });
    await monitor.start();
    defer(() => monitor.stop());
    const series = async () =>
      (await registry.metrics()).split('\n').filter((l) => l.startsWith('nf_conntrack_table_full_drops_total{'));
    const until = async (what: string, done: () => boolean | Promise<boolean>) => {
      const deadline = Date.now() + 5000;
      while (!(await done())) {
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${what}; series: ${(await series()).join(', ')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const line = (name: string, value: number) => `nf_conntrack_table_full_drops_total{netns="${name}"} ${value}`;

    // 1. rd1 drops packets: its series equals its kernel drop counter.
    const rd1 = await namespace('rd1');
    const inode = statSync(rd1.path).ino;
    await withConntrackMax(5, () => rd1.traffic('udp', 12));
    const k1 = (await rd1.kernelStats()).drop!;
    await until('rd1', async () => (await series()).includes(line(rd1.name, k1)));

    // 2. rd1 is deleted; the kernel gives its inode to the next namespaces made (rd2).
    await rd1.remove();
    const rd2 = await namespaceWithInode('rd2', inode);
    if (rd2) defer(() => rd2.remove());
    expect(rd2).not.toBeNull();
    await until('rd1 to leave', async () => !(await series()).some((l) => l.includes(rd1.name)));
    const gone = await series();
    await withConntrackMax(5, () => rd2!.traffic('udp', 15));
    const k2 = (await rd2!.kernelStats()).drop!;
    await until('rd2', async () => (await series()).includes(line(rd2!.name, k2)));
    const afterReuse = await series();

    // 3. rd2 is deleted and made again under the same name (ip netns del; ip netns add): the
    //    same name, the same inode, and still another namespace.
    let rd3 = await rd2!.recreate();
    for (let i = 0; i < 10 && statSync(rd3.path).ino !== inode; i++) rd3 = await rd3.recreate();
    defer(() => rd3.remove());
    expect(statSync(rd3.path).ino).toBe(inode);
    await withConntrackMax(5, () => rd3.traffic('udp', 9));
    const k3 = (await rd3.kernelStats()).drop!;
    await until('rd3', async () => (await series()).includes(line(rd3.name, k3)));
    const sameName = await series();
    const rows = samples.at(-1)!.namespaces.filter((n) => n.inode === inode);
    console.info(
      `inode ${inode}: rd1 kernel ${k1}; after rd1 was deleted: [${gone.join(', ')}]; rd2 on its inode, kernel ${k2}: [${afterReuse.join(', ')}]; ` +
        `rd2 deleted and made again under its name, kernel ${k3}: [${sameName.join(', ')}]`,
    );
    expectFullTableDrops([k1, k2, k3], [12, 15, 9]);
    expect(gone.some((l) => l.includes(rd1.name))).toBe(false);
    expect(afterReuse).toContain(line(rd2!.name, k2));
    expect(afterReuse.some((l) => l.includes(rd1.name))).toBe(false);
    expect(sameName).toContain(line(rd3.name, k3));
    // (pid: a process in it when it was found, or null: the traffic's, if it was still there)
    expect(rows).toMatchObject([{ inode, name: rd3.name, totalDrops: k3 }]);
    expect(execFileSync('promtool', ['check', 'metrics'], { input: await registry.metrics(), encoding: 'utf8' })).toBe(
      '',
    );
  });

  it("a container's namespace (no name, held by a process) ended and another on its inode: counted apart", async () => {
    const { monitor, samples } = await startDrops({ rediscoverMs: 60_000 }); // no periodic discovery meanwhile
    const first = await TestNamespace.unnamed('pod1');
    defer(() => first.remove());
    const inode = statSync(first.path).ino;
    await withConntrackMax(5, () => first.traffic('udp', 13));
    const k1 = (await first.kernelStats()).drop!;
    await nextSample(monitor);
    const before = samples.at(-1)!.namespaces.find((n) => n.inode === inode);
    await first.remove(); // its only holder: the namespace is freed
    // Processes in new namespaces until one gets the inode (others kept to the end, then ended).
    const others: TestNamespace[] = [];
    let second: (TestNamespace & { pid: number }) | null = null;
    for (let i = 0; i < 40 && !second; i++) {
      const ns = await TestNamespace.unnamed('pod2');
      if (statSync(ns.path).ino === inode) second = ns;
      else others.push(ns);
    }
    for (const ns of others) await ns.remove();
    expect(second).not.toBeNull();
    defer(() => second!.remove());
    await withConntrackMax(5, () => second!.traffic('udp', 11));
    const k2 = (await second!.kernelStats()).drop!;
    await nextSample(monitor);
    await nextSample(monitor);
    const after = samples.at(-1)!.namespaces.filter((n) => n.inode === inode);
    console.info(
      `unnamed namespaces on inode ${inode}: pid ${first.pid} kernel ${k1}, row ${JSON.stringify(before)}; ` +
        `pid ${second!.pid} kernel ${k2}, rows ${JSON.stringify(after)}`,
    );
    expectFullTableDrops([k1, k2], [13, 11]);
    expect(before).toMatchObject({ name: null, pid: first.pid, totalDrops: k1 });
    expect(after).toEqual([{ inode, name: null, pid: second!.pid, drops: 0, totalDrops: k2 }]);
  });

  it('conntrack-monitor drops --json: a line per interval, a final line, the namespace by name', async () => {
    const a = await namespace('drops-cli');
    const ino = statSync(a.path).ino;
    // A process in it from before the command starts, so that whenever the command scans (at
    // start, at another namespace's coming or going, at the first drop) the pid it finds is this
    // one's: the lowest of the processes in it (the traffic's came later).
    const resident = spawn('ip', ['netns', 'exec', a.name, 'sleep', '600'], { stdio: 'ignore' });
    defer(() => void resident.kill());
    while (!inNamespace(resident.pid!, ino)) await new Promise((r) => setTimeout(r, 20));
    const run = runCli(['drops', '--json', '--interval', '200', '--duration', '2']);
    await new Promise((r) => setTimeout(r, 700)); // attached
    const sent = await withConntrackMax(5, () => a.traffic('udp', 12));
    const done = await run;
    expect(done.code).toBe(0);
    const lines = done.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as DropSample);
    expect(lines.at(-1)!.final).toBe(true);
    const row = lines.at(-1)!.namespaces.find((n) => n.inode === ino)!;
    expect(row).toEqual({
      inode: ino,
      name: a.name,
      pid: resident.pid,
      drops: expect.any(Number),
      totalDrops: sent.failed,
    });
    expect(Object.keys(lines[0]!).sort()).toEqual(['final', 'flows', 'intervalMs', 'namespaces', 'time']);
  });
});

describe.skipIf(!canRunIntegration)('eBPF drop attribution without the capabilities', () => {
  it('explains why it cannot run, as nobody, and nothing crashes', () => {
    const script = `
      const { DropMonitor } = require(${JSON.stringify(unprivilegedCopy().index)});
      const reason = DropMonitor.available();
      new DropMonitor().start().then(() => console.log(JSON.stringify({ reason, started: true })),
        (e) => console.log(JSON.stringify({ reason, started: false, error: e.message })));`;
    const r = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, '-e', script], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    console.info(`as nobody: ${out.reason}`);
    expect(out.started).toBe(false);
    expect(out.reason).toMatch(/CAP_BPF|CAP_SYS_ADMIN|CAP_PERFMON|permission/i);
    expect(out.error).toMatch(/cannot attach the drop probe/);
    const cli = spawnSync(
      'runuser',
      ['-u', 'nobody', '--', process.execPath, unprivilegedCopy().cli, 'drops', '--duration', '1'],
      {
        encoding: 'utf8',
      },
    );
    expect(cli.status).toBe(1);
    expect(cli.stderr.trim().split('\n')).toHaveLength(1);
    expect(cli.stderr).toMatch(/^conntrack-monitor drops: cannot run: /);
  });
});
