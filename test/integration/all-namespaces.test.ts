/**
 * The host-wide view: one monitor per namespace, namespaces found and dropped as they come and
 * go, and per-namespace numbers equal to each namespace's own kernel counters.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { AllNamespacesMonitor, listNamespaces, type AllNamespacesReport } from '../../dist/index.js';
import { runCli } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import { withConntrackMax } from '../helpers/netns';
import { defer, namespace } from '../helpers/scope';

const waitFor = async (what: string, test: () => boolean, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe.skipIf(!canRunIntegration)('all namespaces on the real kernel', () => {
  it('lists every namespace once, by inode, with its name, and the host as init_net', async () => {
    const a = await namespace('list-a');
    const { child } = await a.start(process.execPath, ['-e', 'console.log("in"); setInterval(() => {}, 1e6)']);
    defer(() => child.kill());
    const all = await listNamespaces();
    const mine = all.filter((n) => n.name === a.name);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.pid).not.toBeNull(); // the process started in it
    expect(mine[0]!.path).toBe(a.path);
    expect(all[0]!.host).toBe(true);
    expect(all.filter((n) => n.host)).toHaveLength(1);
    expect(new Set(all.map((n) => n.inode)).size).toBe(all.length);
  });

  it("reports each namespace's inserts, entries and table-full drops, equal to its kernel counters", async () => {
    const a = await namespace('host-a');
    const b = await namespace('host-b');
    const host = new AllNamespacesMonitor({ intervalMs: 200, rediscoverMs: 300 });
    const reports: AllNamespacesReport[] = [];
    host.on('report', (r) => reports.push(r));
    await host.start();
    defer(() => host.stop());
    const rows = (name: string) => reports.flatMap((r) => r.namespaces.filter((n) => n.name === name));
    const sum = (name: string, key: 'inserts' | 'drops') => rows(name).reduce((t, n) => t + (n[key] ?? 0), 0);
    await waitFor('both namespaces', () => rows(a.name).length > 0 && rows(b.name).length > 0);

    await a.traffic('tcp', 7);
    await b.traffic('tcp', 13);
    const before = { a: await a.kernelStats(), b: await b.kernelStats() };
    // Table full in both, at different rates: max 20, then 30 and 45 new UDP flows.
    const sent = await withConntrackMax(20, async () => {
      const r = { a: await a.traffic('udp', 30), b: await b.traffic('udp', 45) };
      const n = reports.length;
      await waitFor('two more reports', () => reports.length >= n + 2);
      return r;
    });
    const n = reports.length;
    await waitFor('two more reports', () => reports.length >= n + 2);
    const after = { a: await a.kernelStats(), b: await b.kernelStats() };
    const kernelDrops = { a: after.a.drop! - before.a.drop!, b: after.b.drop! - before.b.drop! };
    const latest = { a: rows(a.name).at(-1)!, b: rows(b.name).at(-1)! };
    console.info(
      `all namespaces: inserts a ${sum(a.name, 'inserts')} b ${sum(b.name, 'inserts')}; drops a ${sum(a.name, 'drops')} ` +
        `(kernel ${kernelDrops.a}, failed sends ${sent.a.failed}) b ${sum(b.name, 'drops')} (kernel ${kernelDrops.b}, failed sends ${sent.b.failed}); ` +
        `entries a ${latest.a.entries} (kernel ${await a.count()}) b ${latest.b.entries} (kernel ${await b.count()})`,
    );

    expect(kernelDrops.a).toBeGreaterThan(0);
    expect(kernelDrops.b).toBeGreaterThan(kernelDrops.a);
    expect(sum(a.name, 'drops')).toBe(kernelDrops.a);
    expect(sum(b.name, 'drops')).toBe(kernelDrops.b);
    expect(latest.b.totalDrops).toBe(kernelDrops.b);
    expect(sum(a.name, 'inserts')).toBe(7 + sent.a.ok);
    expect(sum(b.name, 'inserts')).toBe(13 + sent.b.ok);
    expect(latest.a.entries).toBe(await a.count());
    expect(latest.b.entries).toBe(await b.count());
    expect(latest.a.source).toBe('netlink');
  });

  it('stop() during start() leaves nothing running', () => {
    const script = `
      const { AllNamespacesMonitor } = require(${JSON.stringify(require.resolve('../../dist/index.js'))});
      (async () => {
        const host = new AllNamespacesMonitor({ intervalMs: 100, rediscoverMs: 200 });
        const starting = host.start();
        await host.stop();
        await starting.catch(() => {});
        console.log('clean');
      })();`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stdout.trim()).toBe('clean');
    expect(r.status).toBe(0);
  });

  it('picks up a namespace made while running and drops one that was deleted', async () => {
    const host = new AllNamespacesMonitor({ intervalMs: 100, rediscoverMs: 200 });
    const reports: AllNamespacesReport[] = [];
    host.on('report', (r) => reports.push(r));
    await host.start();
    defer(() => host.stop());
    const has = (name: string) => reports.at(-1)?.namespaces.some((n) => n.name === name) ?? false;
    const c = await namespace('late');
    await waitFor('the new namespace', () => has(c.name));
    await c.remove();
    await waitFor('the deleted namespace to go', () => !has(c.name));
  });

  it('conntrack-monitor --all-namespaces --json: one line per interval and a final line', async () => {
    const a = await namespace('cli-all');
    await a.traffic('udp', 4);
    const run = await runCli(['--all-namespaces', '--json', '--interval', '200', '--duration', '1']);
    expect(run.code).toBe(0);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AllNamespacesReport);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(lines.at(-1)!.final).toBe(true);
    expect(lines.slice(0, -1).every((l) => !l.final)).toBe(true);
    const row = lines.at(-1)!.namespaces.find((n) => n.name === a.name)!;
    expect(row).toMatchObject({ entries: 4, pid: null, host: false, error: null, source: 'netlink' });
    expect(Object.keys(row).sort()).toEqual(
      [
        'dropRate',
        'drops',
        'entries',
        'error',
        'fill',
        'host',
        'inode',
        'insertRate',
        'inserts',
        'max',
        'name',
        'pid',
        'source',
        'totalDrops',
      ].sort(),
    );
  });
});
