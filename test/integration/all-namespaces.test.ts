/**
 * The node-wide view on the real kernel: one reader thread for every namespace, each
 * namespace's numbers equal to its own kernel ground truth (the nft `ct state new` counter,
 * nf_conntrack_count, /proc/net/stat/nf_conntrack, the socket drop counter in
 * /proc/net/netlink), namespaces found and dropped as they come and go with their sockets
 * closed, and pods named from runtime files bound to namespaces made here.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  AllNamespacesMonitor,
  listNamespaces,
  registerAllNamespacesMetrics,
  type AllNamespacesOptions,
  type AllNamespacesReport,
  type NamespaceReport,
} from '../../dist/index.js';
import { CLI, runCli, servingUrl } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import { CONNTRACK_MAX, withConntrackMax } from '../helpers/kernel-lock.mjs';
import { uniqueName, type TestNamespace } from '../helpers/netns';
import { runtimeTree } from '../helpers/runtime';
import { unprivilegedCopy } from '../helpers/unprivileged';
import { defer, namespace } from '../helpers/scope';

/** uid and gid of nobody. */
const NOBODY = 65534;
const waitFor = async (what: string, test: () => boolean, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
const threads = () => readdirSync('/proc/self/task').length;
/** The host's nf_conntrack_max, the limit of every namespace (as the kernel reads it now). */
const hostMax = () => Number(readFileSync(CONNTRACK_MAX, 'utf8'));
/** All descriptors of this process. */
const fds = () => readdirSync('/proc/self/fd').length;

function start(options: AllNamespacesOptions = {}) {
  const host = new AllNamespacesMonitor({ intervalMs: 200, containerdRoot: null, crioRoot: null, ...options });
  const reports: AllNamespacesReport[] = [];
  host.on('report', (r) => reports.push(r));
  defer(() => host.stop());
  const rows = (ns: TestNamespace) => reports.flatMap((r) => r.namespaces.filter((n) => n.name === ns.name));
  const latest = (ns: TestNamespace) => rows(ns).at(-1);
  const sum = (ns: TestNamespace, key: 'insert' | 'drop' | 'earlyDrop' | 'insertFailed' | 'clashResolve') =>
    rows(ns).reduce((t, n) => t + (n.counts[key] ?? 0), 0);
  const more = async (n = 2) => {
    const at = reports.length;
    await waitFor(`${n} more reports`, () => reports.length >= at + n);
  };
  return { host, reports, rows, latest, sum, more };
}

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

  it('per namespace: inserts equal its nft counter, entries its nf_conntrack_count, with one reader thread', async () => {
    const ns = [await namespace('node-a'), await namespace('node-b'), await namespace('node-c')];
    const { host, latest, sum, more } = start();
    await host.start();
    await more();
    await ns[0]!.traffic('tcp', 7);
    await ns[1]!.traffic('udp', 23);
    await ns[2]!.traffic('udp-echo', 11);
    await ns[2]!.traffic('tcp', 5);
    await more(3);
    for (const n of ns) {
      const kernel = {
        created: await n.nftNewCount(),
        entries: await n.count(),
        socketDrops: await n.eventSocketDrops(),
      };
      const row = latest(n)!;
      console.info(
        `${n.name}: inserts ${sum(n, 'insert')} (nft counter ${kernel.created}), entries ${row.entries} ` +
          `(nf_conntrack_count ${kernel.entries}), lost ${row.events!.lostTotal} (socket drops ${kernel.socketDrops}), ` +
          `counting ${row.events!.counting}`,
      );
      expect(sum(n, 'insert')).toBe(kernel.created);
      expect(row.entries).toBe(kernel.entries);
      expect(row.events!.lostTotal).toBe(0);
      expect(kernel.socketDrops).toEqual([0]); // exactly one event socket in the namespace: ours
      expect(row).toMatchObject({ source: 'netlink', error: null, pod: null, max: hostMax() });
    }
    expect(sum(ns[0]!, 'insert')).toBe(7);
    expect(sum(ns[2]!, 'insert')).toBe(16);
  });

  it("table full: each namespace's drops, early drops and insert failures equal its kernel counters' deltas", async () => {
    const a = await namespace('full-a');
    const b = await namespace('full-b');
    const { host, latest, sum, more } = start();
    await host.start();
    await more();
    await a.traffic('tcp', 7);
    await b.traffic('tcp', 13);
    const before = { a: await a.kernelStats(), b: await b.kernelStats() };
    // Table full in both, at different rates: max 20, then 30 and 45 new UDP flows.
    const sent = await withConntrackMax(20, async () => {
      const r = { a: await a.traffic('udp', 30), b: await b.traffic('udp', 45) };
      await more();
      return r;
    });
    await more();
    const after = { a: await a.kernelStats(), b: await b.kernelStats() };
    const delta = (ns: 'a' | 'b', column: string) => after[ns][column]! - before[ns][column]!;
    console.info(
      `table full: drops a ${sum(a, 'drop')} (kernel ${delta('a', 'drop')}, failed sends ${sent.a.failed}) ` +
        `b ${sum(b, 'drop')} (kernel ${delta('b', 'drop')}, failed sends ${sent.b.failed}); early_drop a ${sum(a, 'earlyDrop')} ` +
        `(kernel ${delta('a', 'early_drop')}) b ${sum(b, 'earlyDrop')} (kernel ${delta('b', 'early_drop')}); ` +
        `entries a ${latest(a)!.entries} (kernel ${await a.count()}) b ${latest(b)!.entries} (kernel ${await b.count()})`,
    );
    expect(delta('a', 'drop')).toBeGreaterThan(0);
    expect(delta('b', 'drop')).toBeGreaterThan(delta('a', 'drop'));
    for (const [ns, n] of [
      ['a', a],
      ['b', b],
    ] as const) {
      expect(sum(n, 'drop')).toBe(delta(ns, 'drop'));
      expect(sum(n, 'earlyDrop')).toBe(delta(ns, 'early_drop'));
      expect(sum(n, 'insertFailed')).toBe(delta(ns, 'insert_failed'));
      expect(sum(n, 'clashResolve')).toBe(delta(ns, 'clashres'));
      expect(latest(n)!.entries).toBe(await n.count());
    }
    expect(latest(b)!.totalDrops).toBe(delta('b', 'drop'));
    expect(sum(a, 'insert')).toBe(7 + sent.a.ok);
    expect(sum(b, 'insert')).toBe(13 + sent.b.ok);
  });

  it('events the kernel could not queue are counted exactly, per namespace', async () => {
    const a = await namespace('lossy');
    const quiet = await namespace('quiet');
    // The smallest buffer (the kernel doubles it): a few events of room on the filter path.
    const { host, latest, rows, more } = start({ receiveBufferBytes: 4096, counting: 'filter' });
    await host.start();
    await more();
    await a.traffic('udp', 3000);
    await more(3);
    const kernel = { created: await a.nftNewCount(), drops: await a.eventSocketDrops() };
    const row = latest(a)!;
    const received = row.events!.newTotal;
    console.info(
      `lossy: NEW received ${received} + lost ${row.events!.lostTotal} = ${received + row.events!.lostTotal} ` +
        `(nft counter ${kernel.created}); socket drops in /proc/net/netlink ${kernel.drops}`,
    );
    expect(row.events!.counting).toBe('filter');
    expect(kernel.drops).toHaveLength(1);
    expect(row.events!.lostTotal).toBe(kernel.drops[0]);
    expect(row.events!.lostTotal).toBeGreaterThan(0);
    // The flows live 30 s: every event lost was a NEW.
    expect(received + row.events!.lostTotal).toBe(kernel.created);
    // Never a short count: insert is null in every interval that lost events, with the number
    // lost, and its total from the first loss on.
    const lossyRows = rows(a).filter((n) => n.events!.lost > 0);
    expect(lossyRows.length).toBeGreaterThan(0);
    for (const n of lossyRows) {
      expect(n.counts.insert).toBeNull();
      expect(n.unavailable['counts.insert']).toMatch(new RegExp(`^${n.events!.lost} events lost in this interval`));
    }
    expect(row.totals.insert).toBeNull();
    expect(row.events!.lostSince).not.toBeNull();
    expect(latest(quiet)!.events!.lostTotal).toBe(0);
  });

  it('a namespace made while running is reported within 5 s; a deleted one goes, with its sockets closed', async () => {
    // Default rediscovery: a name is seen at once through the /var/run/netns watch.
    const { host, reports, more } = start({ intervalMs: 1000 });
    await host.start();
    await more(1);
    const has = (name: string) => reports.at(-1)?.namespaces.some((n) => n.name === name) ?? false;
    // Descriptors with the count of namespaces monitored, at one moment: others on the host
    // may make and delete namespaces meanwhile, which the monitor opens and closes too.
    const settled = async () => {
      for (;;) {
        const seen = { fds: fds(), namespaces: reports.at(-1)!.namespaces.length };
        await more(1);
        if (fds() === seen.fds && reports.at(-1)!.namespaces.length === seen.namespaces) return seen;
      }
    };
    const before = await settled();
    const threadsBefore = threads();
    const made = Date.now();
    const c = await namespace('late');
    await waitFor('the new namespace', () => has(c.name), 5000);
    const namedAfterMs = Date.now() - made;
    // A namespace that only a process holds (no name): found by the periodic scan.
    const made2 = Date.now();
    const holder = spawn('unshare', ['-n', 'sleep', '60'], { stdio: 'ignore' });
    defer(() => holder.kill());
    await waitFor('the process', () => {
      try {
        return statSync(`/proc/${holder.pid}/ns/net`).ino !== statSync('/proc/self/ns/net').ino;
      } catch {
        return false;
      }
    });
    const inode = statSync(`/proc/${holder.pid}/ns/net`).ino;
    await waitFor(
      'the unnamed namespace',
      () => reports.at(-1)?.namespaces.some((n) => n.inode === inode) ?? false,
      5000,
    );
    const unnamedAfterMs = Date.now() - made2;
    // Each: two sockets and a sysctl file, and on the eBPF path the program and its counter map.
    const counting = reports.at(-1)!.namespaces.find((n) => n.name === c.name)!.events!.counting;
    const perNamespace = counting === 'ebpf' ? 5 : 3;
    const during = await settled();
    expect(during.namespaces - before.namespaces).toBeGreaterThanOrEqual(2); // these two, and others' new ones
    expect(during.fds - before.fds).toBe(perNamespace * (during.namespaces - before.namespaces));
    expect(threads()).toBe(threadsBefore);

    await c.remove();
    holder.kill();
    await waitFor(
      'the deleted namespaces to go',
      () => !has(c.name) && !reports.at(-1)!.namespaces.some((n) => n.inode === inode),
      6000,
    );
    const after = await settled();
    console.info(
      `discovery: named namespace reported ${namedAfterMs} ms after creation, unnamed ${unnamedAfterMs} ms; ` +
        `descriptors ${before.fds} for ${before.namespaces} namespaces before, ${during.fds} for ${during.namespaces} with both ` +
        `(counting: ${counting}), ${after.fds} for ${after.namespaces} after both were deleted`,
    );
    expect(after.fds - before.fds).toBe(perNamespace * (after.namespaces - before.namespaces));
  });

  it('one reader thread whatever the namespace count', async () => {
    const { host, more } = start();
    await (await import('node:fs/promises')).stat('/'); // the thread pool exists before counting
    const before = threads();
    await host.start();
    await more(1);
    const withFew = threads();
    const many = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((i) => namespace(`threads-${i}`)));
    await waitFor(
      '8 more namespaces',
      () => (host.latest?.namespaces.filter((n) => many.some((m) => m.name === n.name)).length ?? 0) === 8,
    );
    console.info(`threads: ${before} before start, ${withFew} running, ${threads()} with 8 more namespaces`);
    expect(withFew).toBe(before + 1);
    expect(threads()).toBe(withFew);
  });

  it('pods: sandbox specs of both runtimes, bound to namespaces made here, name their namespaces', async () => {
    const web = await namespace('pod-web');
    const dns = await namespace('pod-dns');
    const tree = runtimeTree();
    defer(() => tree.remove());
    // containerd's sandbox: its netns path is a bind mount of a real namespace, as CNI makes it.
    const bound = join(tree.root, 'netns', 'cni-3c6f9a1e-8d2b-4e7f-a5c1-9b0d2e4f6a81');
    mkdirSync(join(tree.root, 'netns'));
    writeFileSync(bound, '');
    execFileSync('mount', ['--bind', web.path, bound]);
    defer(() => execFileSync('umount', [bound]));
    tree.setNetns('web', bound);
    // CRI-O's sandbox: its netns path is gone; its process (conmon's pidfile) tells the namespace.
    const { child } = await dns.start(process.execPath, ['-e', 'console.log("in"); setInterval(() => {}, 1e6)']);
    defer(() => child.kill());
    tree.setPid('coredns', child.pid!); // ip netns exec execs the program: same pid, inside dns

    const { host, latest, more } = start({ containerdRoot: tree.containerd, crioRoot: tree.crio });
    await host.start();
    await more();
    const row = (ns: TestNamespace) => latest(ns) as NamespaceReport;
    console.info(
      `pods: ${web.name} -> ${JSON.stringify(row(web).pod)}, ${dns.name} -> ${JSON.stringify(row(dns).pod)}`,
    );
    expect(row(web).pod).toEqual({
      namespace: 'shop',
      name: 'web-7d9f8b6c5-x2x9q',
      uid: '0c9e4d7a-1b2c-4d5e-8f90-a1b2c3d4e5f6',
    });
    expect(row(dns).pod).toEqual({
      namespace: 'kube-system',
      name: 'coredns-5d78c9869d-4xk2p',
      uid: 'a1b2c3d4-e5f6-4789-8abc-def012345678',
    });
    expect(host.latest!.namespaces.find((n) => n.host)!.pod).toBeNull(); // kube-proxy is hostNetwork
    expect(host.latest!.namespaces.filter((n) => n.pod).length).toBe(2);

    // The same pods through the metrics, scraped from a private registry.
    const registry = new Registry();
    registerAllNamespacesMetrics(host, { registry });
    await more(1);
    const text = await registry.metrics();
    expect(text).toMatch(
      new RegExp(
        `^nf_conntrack_entries\\{netns="${web.name}",pod_namespace="shop",pod="web-7d9f8b6c5-x2x9q"\\} 0$`,
        'm',
      ),
    );
    expect(text).toMatch(
      new RegExp(`^nf_conntrack_entries_limit\\{netns="",pod_namespace="",pod=""\\} ${hostMax()}$`, 'm'),
    );
  });

  it('trackStates: the named namespaces also get TCP states equal to conntrack -L', async () => {
    const a = await namespace('tracked');
    const b = await namespace('untracked');
    const { host, latest, more } = start({ trackStates: [a.name] });
    await host.start();
    const held = await a.hold(4, 3);
    await b.traffic('tcp', 2);
    await more(4);
    const listing = await a.kernelListing();
    console.info(
      `tracked states: ${JSON.stringify(latest(a)!.tcpStates)} (conntrack -L ${JSON.stringify(listing.tcpStates)})`,
    );
    expect(latest(a)!.tcpStates).toMatchObject({
      ESTABLISHED: listing.tcpStates.ESTABLISHED,
      CLOSE_WAIT: listing.tcpStates.CLOSE_WAIT,
    });
    expect(latest(b)!.tcpStates).toBeNull();
    expect(latest(b)!.unavailable.tcpStates).toMatch(/trackStates/);
    await held.release();
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

  it('conntrack-monitor --all-namespaces: JSON lines, and the live view names pods', async () => {
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
    expect(row).toMatchObject({ entries: 4, pid: null, host: false, error: null, source: 'netlink', pod: null });

    const tree = runtimeTree();
    defer(() => tree.remove());
    tree.setNetns('web', a.path);
    const text = await runCli([
      '--all-namespaces',
      '--interval',
      '200',
      '--duration',
      '0.5',
      '--containerd-root',
      tree.containerd,
    ]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^  shop/web-7d9f8b6c5-x2x9q +\\d+ +- +4 +${hostMax()} `, 'm'));
    expect(text.stdout).toMatch(/^ {2}\(host\) /m);
  });

  it('the node view in a real terminal (tmux): pods by name, laid out for 60 to 150 columns at each redraw', async () => {
    const a = await namespace('tty-all');
    await a.traffic('udp', 4);
    const tree = runtimeTree();
    defer(() => tree.remove());
    tree.setNetns('web', a.path);
    const session = uniqueName('tty-all');
    execFileSync('tmux', [
      'new-session',
      '-d',
      '-s',
      session,
      '-x',
      '150',
      '-y',
      '60',
      `${process.execPath} ${CLI} --all-namespaces --interval 300 --containerd-root ${tree.containerd} --crio-root ''`,
    ]);
    defer(() => void execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' }));
    const capture = (...flags: string[]) =>
      execFileSync('tmux', ['capture-pane', '-p', ...flags, '-t', session], { encoding: 'utf8' });
    await waitFor('a frame with the pod', () => capture().includes('shop/web-7d9f8b6c5-x2x9q'));
    const report: string[] = [];
    for (const columns of [150, 60, 80, 100]) {
      execFileSync('tmux', ['resize-window', '-t', session, '-x', String(columns), '-y', '60']);
      await new Promise((r) => setTimeout(r, 800)); // the next reports redraw for the new width
      const text = capture();
      // -J joins lines the terminal wrapped: equal to the plain capture when none was.
      expect(capture('-J'), `${columns} columns`).toBe(text);
      const longest = Math.max(...text.split('\n').map((l) => [...l].length));
      expect(longest, `${columns} columns:\n${text}`).toBeLessThanOrEqual(columns);
      // The pod's row: whole where it fits, else cut with … at 16 columns or more; its 4 entries.
      expect(text).toMatch(
        new RegExp(`^ {2}shop/web-7d9f8b(?:6c5-x2x9q|[^ ]*…) .* 4 +(?:${hostMax()} +)?0\\.0% `, 'm'),
      );
      expect(text).toMatch(/^ {2}\(host\) /m);
      report.push(`${columns} columns: longest line ${longest}`);
    }
    console.info(`node view in tmux:\n  ${report.join('\n  ')}\n${capture()}`);
  });

  it.each([
    ['the line view', []],
    ['--json', ['--json']],
    ['serve', ['serve', '--listen', '127.0.0.1:0']],
  ])('as nobody, %s: "cannot start" in one line, exit 1, and no report of errors before it', async (_name, args) => {
    const [command, ...rest] = args[0] === 'serve' ? args : ['watch', ...args];
    const r = spawnSync(
      process.execPath,
      [unprivilegedCopy().cli, command!, '--all-namespaces', '--interval', '200', ...rest],
      { uid: NOBODY, gid: NOBODY, encoding: 'utf8', timeout: 20_000 },
    );
    console.info(`--all-namespaces ${args.join(' ')} as nobody: exit ${r.status}: ${r.stderr.trim()}`);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^conntrack-monitor: cannot start: no network namespace could be monitored: .*Operation not permitted .*\n$/,
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('serve --all-namespaces: a real scrape passes promtool, and a deleted namespace leaves it', async () => {
    const a = await namespace('serve-all');
    await a.traffic('udp', 3);
    const child = spawn(
      process.execPath,
      [
        join(__dirname, '..', '..', 'dist', 'cli.js'),
        'serve',
        '--all-namespaces',
        '--listen',
        '127.0.0.1:0',
        '--interval',
        '200',
        '--crio-root',
        '',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    defer(() => child.kill());
    const url = await servingUrl(child);
    const scrape = async () => (await fetch(url)).text();
    let text = '';
    const deadline = Date.now() + 5000;
    while (!text.includes(`netns="${a.name}"`) && Date.now() < deadline) {
      text = await scrape();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(text).toMatch(new RegExp(`^nf_conntrack_entries\\{netns="${a.name}",pod_namespace="",pod=""\\} 3$`, 'm'));
    expect(text).toMatch(
      new RegExp(`^nf_conntrack_events_total\\{netns="${a.name}",pod_namespace="",pod="",type="new"\\} \\d+$`, 'm'),
    );
    expect(execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })).toBe('');
    await a.remove();
    const gone = Date.now() + 6000;
    while (text.includes(`netns="${a.name}"`) && Date.now() < gone) {
      await new Promise((r) => setTimeout(r, 100));
      text = await scrape();
    }
    expect(text).not.toMatch(new RegExp(`netns="${a.name}"`));
  });
});
