/**
 * What fills the table, against the kernel's own listing: `top --json` equals what conntrack -L
 * lists in the namespace at the same quiet moment (per source, destination, port and state;
 * entries without [ASSURED], closing TCP, either once); the monitor's snapshot under pressure
 * and serve --top; the
 * time-to-full forecast during steady growth against the growth of nf_conntrack_count; check
 * --full-within exit codes; the live view during an incident in a real terminal (tmux).
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import {
  ConntrackMonitor,
  evictableVerdict,
  topEntries,
  type ConntrackSample,
  type TopReport,
} from '../../dist/index.js';
import { CLI, runCli, servingUrl } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import { addressOrder, asCounts, groupListing, type ListingGroups } from '../helpers/listing';
import { CONNTRACK_MAX, withConntrackMax } from '../helpers/kernel-lock.mjs';
import { pidsWith, type TestNamespace } from '../helpers/netns';
import { defer, namespace } from '../helpers/scope';
import { unprivilegedCopy } from '../helpers/unprivileged';

const FLOWS = join(__dirname, '..', 'helpers', 'flows.mjs');
const NOBODY = 65534;
const GROUPS = ['bySource', 'byDestination', 'byDestinationPort', 'byState'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Flow = { kind: string; src: string; dst: string; port: number; count: number };

/** Gives lo the addresses (the test's sources and servers). */
async function addAddresses(ns: TestNamespace, addresses: string[]): Promise<void> {
  for (const a of addresses)
    await ns.exec('ip', [
      'addr',
      'add',
      a.includes(':') ? `${a}/128` : `${a}/32`,
      'dev',
      'lo',
      ...(a.includes(':') ? ['nodad'] : []),
    ]);
}

/** Sets the flows up (test/helpers/flows.mjs) and holds them until the test ends. */
async function holdFlows(ns: TestNamespace, flows: Flow[]): Promise<void> {
  const { child } = await ns.start(process.execPath, [FLOWS, JSON.stringify(flows)]);
  defer(
    () =>
      new Promise<void>((resolve) => {
        child.on('exit', () => resolve());
        child.stdin!.end();
      }),
  );
}

/** conntrack -L of both families in the namespace, grouped. */
async function kernelGroups(ns: TestNamespace): Promise<ListingGroups> {
  const text = (await ns.exec('conntrack', ['-L', '-f', 'ipv4'])) + (await ns.exec('conntrack', ['-L', '-f', 'ipv6']));
  return groupListing(text);
}

/** The report's groups in the listing's shape (`other` left out). */
function reported(r: TopReport): ListingGroups {
  const without = (items: { key: string; entries: number }[]) => asCounts(items.filter((i) => i.key !== 'other'));
  return {
    entries: r.entries,
    evictable: r.evictable,
    unassured: r.unassured,
    tcpClosing: r.tcpClosing,
    bySource: without(r.bySource),
    byDestination: without(r.byDestination),
    byDestinationPort: without(r.byDestinationPort),
    byState: without(r.byState),
  };
}

/**
 * The `limit` heaviest keys of a listing's group and the sum of the rest. Ties: addresses in
 * their natural order (the documented one); other keys as the report orders them.
 */
function topOf(group: Record<string, number>, limit: number, order: string[]) {
  const rank = (k: string) => (order.includes(k) ? order.indexOf(k) : Infinity);
  const isAddress = (k: string) => /^[\d.]+$|:/.test(k);
  const keys = Object.keys(group).sort(
    (a, b) => group[b]! - group[a]! || (isAddress(a) && isAddress(b) ? addressOrder(a, b) : rank(a) - rank(b)),
  );
  const top = keys.slice(0, limit);
  return {
    top: Object.fromEntries(top.map((k) => [k, group[k]!])),
    other: keys.slice(limit).reduce((a, k) => a + group[k]!, 0),
  };
}

const SOURCES = ['10.17.0.1', '10.17.0.2', '10.17.0.3', '10.17.0.4', 'fd17::1', 'fd17::2'];
const SERVERS = ['10.17.0.100', '10.17.0.101', 'fd17::100'];
const MIX: Flow[] = [
  { kind: 'tcp-open', src: '10.17.0.1', dst: '10.17.0.100', port: 443, count: 6 },
  { kind: 'tcp-open', src: '10.17.0.2', dst: '10.17.0.100', port: 443, count: 3 },
  { kind: 'tcp-closed', src: '10.17.0.3', dst: '10.17.0.101', port: 80, count: 8 },
  { kind: 'tcp-half', src: '10.17.0.1', dst: '10.17.0.101', port: 80, count: 2 },
  // Unassured and in CLOSE_WAIT: in both classes the kernel can reclaim, once in evictable.
  { kind: 'tcp-picked-up', src: '10.17.0.2', dst: '10.17.0.101', port: 80, count: 2 },
  { kind: 'udp-reply', src: '10.17.0.1', dst: '10.17.0.100', port: 53, count: 12 },
  { kind: 'udp-reply', src: '10.17.0.2', dst: '10.17.0.100', port: 53, count: 5 },
  { kind: 'udp-noreply', src: '10.17.0.4', dst: '10.17.0.101', port: 53, count: 9 },
  { kind: 'udp-noreply', src: '10.17.0.4', dst: '10.17.0.101', port: 123, count: 4 },
  { kind: 'tcp-open', src: 'fd17::2', dst: 'fd17::100', port: 443, count: 3 },
  { kind: 'udp-noreply', src: 'fd17::1', dst: 'fd17::100', port: 5353, count: 2 },
];

async function mixedNamespace(label: string): Promise<TestNamespace> {
  const ns = await namespace(label);
  await addAddresses(ns, [...SOURCES, ...SERVERS]);
  // Nothing expires while a test compares (defaults: 30 s for UDP and ICMP).
  await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 600);
  await ns.sysctl('net.netfilter.nf_conntrack_icmp_timeout', 600);
  await ns.sysctl('net.netfilter.nf_conntrack_tcp_timeout_close_wait', 600);
  await holdFlows(ns, MIX);
  // One ICMP echo from 10.17.0.2 (a ping socket; this namespace only allows them).
  await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.ping_group_range=0 2147483647']);
  await ns.exec('python3', [
    '-c',
    'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM,socket.IPPROTO_ICMP);s.bind(("10.17.0.2",0));' +
      's.sendto(bytes([8,0,0,0,0,0,0,1])+b"top",("10.17.0.100",0));s.settimeout(2);s.recv(64)',
  ]);
  return ns;
}

describe.skipIf(!canRunIntegration)('what fills the table, against conntrack -L', () => {
  it('top --json: every count per source, destination, port and state, and what can be reclaimed, equals conntrack -L', async () => {
    const ns = await mixedNamespace('top');
    const run = await runCli(['top', '--netns', ns.name, '--json', '--limit', '1000']);
    const kernel = await kernelGroups(ns);
    expect(run.code).toBe(0);
    expect(run.stdout.trim().split('\n')).toHaveLength(1);
    const report = JSON.parse(run.stdout) as TopReport;
    const mine = reported(report);
    console.info(
      `top --json: ${report.entries} entries (conntrack -L ${kernel.entries}), evictable ${report.evictable} (${kernel.evictable}): ` +
        `unassured ${report.unassured} (without [ASSURED] ${kernel.unassured}), closing TCP ${report.tcpClosing} (${kernel.tcpClosing})\n` +
        GROUPS.map(
          (g) =>
            `  ${g}: top ${JSON.stringify(mine[g])}\n  ${' '.repeat(g.length)}  kernel ${JSON.stringify(kernel[g])}`,
        ).join('\n'),
    );
    expect(Object.keys(report)).toEqual([
      'time',
      'netns',
      'max',
      'entries',
      'evictable',
      'unassured',
      'tcpClosing',
      'bySource',
      'byDestination',
      'byDestinationPort',
      'byState',
      'unavailable',
    ]);
    expect(report.netns).toBe(ns.path);
    expect(report.max).toBe(Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8')));
    expect(mine).toEqual(kernel);
    // The picked-up connections are unassured CLOSE_WAIT: counted in both classes, once in all.
    expect(kernel.unassured + kernel.tcpClosing - kernel.evictable).toBe(2);
    // The namespace holds what the test asked for: 6 sources, TCP in three states, UDP both ways.
    expect(kernel.entries).toBe(MIX.reduce((a, f) => a + f.count, 0) + 1);
    // (7 with the server, which the picked-up connections have as their original source.)
    expect(Object.keys(kernel.bySource)).toHaveLength(7);
    expect(kernel.byState).toMatchObject({ 'tcp/ESTABLISHED': 12, 'tcp/TIME_WAIT': 8, 'tcp/CLOSE_WAIT': 4 });
    expect(kernel.byState['udp/UNREPLIED']).toBe(15);
    expect(kernel.byState['udp/REPLIED']).toBe(17);

    // --limit 3: the three heaviest of each group, the rest summed in `other`.
    const three = JSON.parse((await runCli(['top', '--netns', ns.name, '--json', '--limit', '3'])).stdout) as TopReport;
    const again = await kernelGroups(ns);
    expect(again).toEqual(kernel); // still quiet
    for (const g of GROUPS) {
      const expected = topOf(
        kernel[g],
        3,
        report[g].map((i) => i.key),
      );
      const other = three[g].find((i) => i.key === 'other')?.entries ?? 0;
      expect(reported(three)[g], g).toEqual(expected.top);
      expect(other, `${g} other`).toBe(expected.other);
    }

    // The human table says the same in text.
    const text = await runCli(['top', '--netns', ns.name, '--limit', '2']);
    expect(text.stdout).toMatch(new RegExp(`^  10\\.17\\.0\\.1 +${kernel.bySource['10.17.0.1']} +`, 'm'));
    expect(text.stdout).toMatch(
      new RegExp(
        `: ${kernel.entries} entries \\([\\d.]+% of nf_conntrack_max\\), ${kernel.evictable} reclaimable \\([\\d.]+% of nf_conntrack_max: ` +
          `${kernel.unassured} unassured, ${kernel.tcpClosing} closing TCP\\)`,
      ),
    );
  });

  it("topEntries() rejects with the monitor's hints: no namespace, not a namespace, no ctnetlink", async () => {
    // Each rejection caught here, not handed to expect(): vitest keeps what it is handed until
    // the test ends, and with it the snapshot objects counted below.
    const failure = (pending: Promise<unknown>) =>
      pending.then(
        () => null,
        (e: unknown) => e,
      );
    expect(await failure(topEntries({ netns: '/nonexistent' }))).toMatchObject({
      code: 'ENOENT',
      hint: 'no network namespace at /nonexistent',
    });
    expect(await failure(topEntries({ netns: '/etc/hostname' }))).toMatchObject({
      code: 'EINVAL',
      hint: '/etc/hostname is not a network namespace',
    });
    const { binding } = await import('../helpers/binding');
    const previous = binding._injectFaults({ ctnetlinkSubsystem: 0xfe }); // above NFNL_SUBSYS_COUNT
    try {
      expect(await failure(topEntries())).toMatchObject({ code: 'EINVAL', missing: 'ctnetlink' });
    } finally {
      binding._injectFaults(previous);
    }
    // Each NativeSnapshot those calls made, refused at its start, lets go of itself: none is left
    // once the garbage collector has run (one that kept its own reference would stay).
    expect(await liveSnapshotsAfterGc(binding)).toBe(0);
  });

  it('as nobody: EPERM, with the CAP_NET_ADMIN hint, in one line and exit 1', async () => {
    const cli = spawn(process.execPath, [unprivilegedCopy().cli, 'top'], { uid: NOBODY, gid: NOBODY });
    let stderr = '';
    cli.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((r) => cli.on('close', r));
    console.info(`top as nobody: exit ${code}: ${stderr.trim()}`);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(
      /^conntrack-monitor top: cannot read the table: .*Operation not permitted \(ctnetlink needs CAP_NET_ADMIN/,
    );
  });

  it('a snapshot can be cancelled; no snapshot thread is left behind', async () => {
    const snapshotThreads = () =>
      readdirSync('/proc/self/task').filter((t) => {
        try {
          return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'ctmon-snapshot';
        } catch {
          return false; // the thread ended meanwhile
        }
      }).length;
    const controller = new AbortController();
    const pending = topEntries({ signal: controller.signal });
    controller.abort();
    const outcome = await pending.then(
      () => 'finished before the abort',
      (e: { code: string }) => e.code,
    );
    expect(['ECANCELED', 'finished before the abort']).toContain(outcome);
    const many = Promise.all(Array.from({ length: 8 }, () => topEntries({ limit: 1 })));
    const during = snapshotThreads();
    await many;
    await sleep(100);
    console.info(`snapshot threads: ${during} while 8 ran, ${snapshotThreads()} after`);
    expect(snapshotThreads()).toBe(0);
  });

  it('the monitor takes a snapshot under pressure ("top" event), serve --top exports it, check says how much is evictable', async () => {
    const ns = await mixedNamespace('pressure');
    const kernel = await kernelGroups(ns);
    const max = Math.ceil(kernel.entries / 0.8); // 80%: warning
    await withConntrackMax(max, async () => {
      const monitor = new ConntrackMonitor({ netns: ns.name, intervalMs: 200, snapshotOnPressure: { limit: 3 } });
      const tops: TopReport[] = [];
      monitor.on('top', (r) => tops.push(r));
      monitor.on('error', (e) => {
        throw e;
      });
      await monitor.start();
      defer(() => monitor.stop());
      const deadline = Date.now() + 5000;
      while (tops.length === 0 && Date.now() < deadline) await sleep(50);
      await sleep(1000);
      await monitor.stop();
      expect(tops).toHaveLength(1); // at most one a minute
      const [top] = tops;
      console.info(`'top' event under pressure (${kernel.entries}/${max}): ${JSON.stringify(top)}`);
      expect(top!.entries).toBe(kernel.entries);
      expect(top!.evictable).toBe(kernel.evictable);
      expect(top!.unassured).toBe(kernel.unassured);
      expect(top!.tcpClosing).toBe(kernel.tcpClosing);
      expect(top!.max).toBe(max);
      for (const g of GROUPS) {
        const expected = topOf(
          kernel[g],
          3,
          top![g].map((i) => i.key),
        );
        expect(reported(top!)[g]).toEqual(expected.top);
        expect(top![g].find((i) => i.key === 'other')?.entries ?? 0).toBe(expected.other);
      }

      const child = spawn(process.execPath, [
        CLI,
        'serve',
        '--netns',
        ns.name,
        '--listen',
        '127.0.0.1:0',
        '--interval',
        '200',
        '--top',
        '3',
      ]);
      defer(() => void child.kill('SIGKILL'));
      const url = await servingUrl(child);
      let text = '';
      for (let i = 0; i < 50 && !text.includes('nf_conntrack_top_entries{'); i++) {
        await sleep(100);
        text = await (await fetch(url)).text();
      }
      const series = text
        .split('\n')
        .filter((l) => /^nf_conntrack_(top|evictable|unassured|tcp_closing)_entries/.test(l));
      console.info(`serve --top 3:\n${series.join('\n')}`);
      const label = `netns="${ns.name}"`;
      for (const [group, field] of [
        ['source', 'bySource'],
        ['destination_port', 'byDestinationPort'],
      ] as const) {
        const expected = topOf(
          kernel[field],
          3,
          top![field].map((i) => i.key),
        );
        for (const [key, n] of Object.entries(expected.top))
          expect(series).toContain(`nf_conntrack_top_entries{${label},group="${group}",key="${key}"} ${n}`);
        expect(series).toContain(`nf_conntrack_top_entries{${label},group="${group}",key="other"} ${expected.other}`);
      }
      expect(series).toContain(`nf_conntrack_evictable_entries{${label}} ${kernel.evictable}`);
      expect(series).toContain(`nf_conntrack_unassured_entries{${label}} ${kernel.unassured}`);
      expect(series).toContain(`nf_conntrack_tcp_closing_entries{${label}} ${kernel.tcpClosing}`);
      // Bounded: per group, the top 3 and `other` when there is a rest.
      const bound = GROUPS.reduce(
        (a, g) => a + Math.min(3, Object.keys(kernel[g]).length) + (Object.keys(kernel[g]).length > 3 ? 1 : 0),
        0,
      );
      expect(series.filter((l) => l.startsWith('nf_conntrack_top_entries{'))).toHaveLength(bound);
      expect(execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })).toBe('');
      child.kill('SIGTERM');

      const check = await runCli(['check', '--netns', ns.name, '--observe', '0.5', '--warn', '75', '--crit', '95']);
      console.info(`check at ${kernel.entries}/${max}: exit ${check.code}: ${check.stdout.trim()}`);
      expect(check.code).toBe(1);
      // More than half can be reclaimed, most of it unassured UDP: the same verdict as top's.
      expect(kernel.evictable / kernel.entries).toBeGreaterThanOrEqual(0.5);
      expect(check.stdout).toContain(
        `; ${kernel.evictable} reclaimable (${((kernel.evictable / max) * 100).toFixed(1)}% of nf_conntrack_max: ` +
          `${kernel.unassured} unassured, ${kernel.tcpClosing} closing TCP): ${evictableVerdict(top!).summary} |`,
      );
      expect(evictableVerdict(top!)).toMatchObject({ mostly: 'unassured', state: 'udp/REPLIED' });
      expect(check.stdout.trim()).toMatch(
        new RegExp(
          ` evictable=${kernel.evictable};;;0;${kernel.entries} unassured=${kernel.unassured};;;0;${kernel.entries} tcp_closing=${kernel.tcpClosing};;;0;${kernel.entries}$`,
        ),
      );
    });
  });

  it('forecast during steady growth: within 25% of (max - entries) / growth of nf_conntrack_count; check --full-within exit codes', async () => {
    const ns = await namespace('growth');
    await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 600); // nothing expires meanwhile
    const RATE = 300;
    // The host's own nf_conntrack_max, left as it is: at 300 new entries a second the table
    // would be full in max / 300 s, so a check that warns when it is full within twice that
    // warns, and one within 5 s does not. Nothing global changes.
    const max = Number(readFileSync(CONNTRACK_MAX, 'utf8'));
    const within = Math.ceil((2 * max) / RATE);
    {
      const monitor = new ConntrackMonitor({ netns: ns.name, intervalMs: 500 });
      const samples: ConntrackSample[] = [];
      monitor.on('sample', (s) => samples.push(s));
      await monitor.start();
      defer(() => monitor.stop());
      const kernelCounts: { at: number; count: number }[] = [];
      const generator = ns.exec(process.execPath, [FLOWS, 'steady', String(RATE), '14']);
      const checks = (async () => {
        await sleep(1000);
        return Promise.all([
          runCli(['check', '--netns', ns.name, '--full-within', String(within), '--observe', '8']),
          runCli(['check', '--netns', ns.name, '--full-within', '5', '--observe', '8']),
        ]);
      })();
      const t0 = Date.now();
      while (Date.now() - t0 < 12_000) {
        kernelCounts.push({ at: Date.now(), count: await ns.count() });
        await sleep(250);
      }
      const last = samples.at(-1)!;
      const lastKernel = kernelCounts.at(-1)!;
      await generator;
      const [soon, later] = await checks;
      await monitor.stop();
      // The kernel's growth: least squares of nf_conntrack_count over the last 60 s of readings.
      const window = kernelCounts.filter((k) => k.at >= lastKernel.at - 60_000 && k.at >= t0 + 1000);
      const growth = slope(window.map((k) => [k.at / 1000, k.count]));
      const expected = (last.max! - last.entries!) / growth;
      console.info(
        `forecast: ${last.timeToFullSeconds} s at ${last.entries}/${last.max}; kernel growth ${growth.toFixed(1)}/s -> ${expected.toFixed(1)} s (${((last.timeToFullSeconds! / expected - 1) * 100).toFixed(1)}%)`,
      );
      console.info(`check --full-within ${within}: exit ${soon.code}: ${soon.stdout.trim()}`);
      console.info(`check --full-within 5: exit ${later.code}: ${later.stdout.trim()}`);
      expect(growth).toBeGreaterThan(RATE * 0.8);
      expect(last.timeToFullSeconds).not.toBeNull();
      expect(Math.abs(last.timeToFullSeconds! / expected - 1)).toBeLessThan(0.25);
      expect(soon.code).toBe(1);
      expect(last.max).toBe(max);
      expect(soon.stdout).toMatch(
        new RegExp(
          `^CONNTRACK WARNING - \\d+/${max} entries \\([\\d.]+%\\) at peak; full in .* at the current growth \\(forecast within ${within} s\\) \\|`,
        ),
      );
      expect(soon.stdout).toMatch(new RegExp(` time_to_full=[\\d.]+s;${within};;0`));
      expect(later.code).toBe(0);
      expect(later.stdout).toMatch(/^CONNTRACK OK - /);
    }
    // A table that does not grow: no forecast, OK, and the reason on the status line.
    const flat = await runCli(['check', '--netns', ns.name, '--full-within', '600', '--observe', '8']);
    console.info(`check on a flat table: exit ${flat.code}: ${flat.stdout.trim()}`);
    expect(flat.code).toBe(0);
    expect(flat.stdout).toMatch(/; no time-to-full forecast: the table is not growing/);
  });

  it('live view during an incident (tmux): the forecast, the top sources and ports as conntrack -L counts them', async () => {
    const ns = await namespace('incident');
    const sources = ['10.17.0.1', '10.17.0.2', '10.17.0.3', '10.17.0.4', '10.17.0.5', '10.17.0.6'];
    await addAddresses(ns, [...sources, '10.17.0.100', '10.17.0.101']);
    await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 600);
    const max = 1000;
    await withConntrackMax(max, async () => {
      // 60% before the view starts: a steady base of assured connections and DNS.
      await holdFlows(ns, [
        { kind: 'tcp-open', src: '10.17.0.5', dst: '10.17.0.100', port: 443, count: 150 },
        { kind: 'udp-reply', src: '10.17.0.6', dst: '10.17.0.100', port: 53, count: 150 },
        { kind: 'udp-noreply', src: '10.17.0.4', dst: '10.17.0.101', port: 123, count: 300 },
      ]);
      const session = `ctmon-top-${process.pid}`;
      execFileSync('tmux', [
        'new-session',
        '-d',
        '-s',
        session,
        '-x',
        '120',
        '-y',
        '50',
        `${process.execPath} ${CLI} --netns ${ns.name} --interval 200`,
      ]);
      defer(() => void execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' }));
      const screen = () => execFileSync('tmux', ['capture-pane', '-p', '-t', session], { encoding: 'utf8' });
      await ns.waitForListener(() => pidsWith(ns.name)); // the CLI in the tmux pane
      // The incident: unreplied UDP floods from three sources, in steps, to 74%, then 78%: the
      // warning level (75%) is crossed by the last step, so the snapshot sees a quiet table.
      for (const [src, count] of [
        ['10.17.0.1', 60],
        ['10.17.0.2', 40],
        ['10.17.0.3', 40],
        ['10.17.0.1', 40],
      ] as const) {
        await holdFlows(ns, [{ kind: 'udp-noreply', src, dst: '10.17.0.101', port: 53, count }]);
        await sleep(1000);
      }
      let view = '';
      for (let i = 0; i < 40 && !view.includes('TOP SOURCES'); i++) {
        await sleep(100);
        view = screen();
      }
      const kernel = await kernelGroups(ns);
      console.info(
        `live view during the incident (${kernel.entries}/${max}; conntrack -L by source ${JSON.stringify(kernel.bySource)}):\n${view}`,
      );
      expect(view).toMatch(/^Forecast {3}full in .+ at the growth of the last minute$/m);
      expect(view).toMatch(
        new RegExp(
          `^Snapshot {3}\\d\\d:\\d\\d:\\d\\d: ${kernel.entries} entries {2}${kernel.evictable} reclaimable \\([\\d.]+% of nf_conntrack_max: ${kernel.unassured} unassured, ${kernel.tcpClosing} closing TCP\\)`,
          'm',
        ),
      );
      const rows = [
        ...view.matchAll(/^ {2}(\S+) +(\d+) +[\d.]+% {4}(\S+) +(\d+) +[\d.]+%$|^ {2}(\S+) +(\d+) +[\d.]+%$/gm),
      ];
      const shownSources = Object.fromEntries(rows.map((m) => [m[1] ?? m[5], Number(m[2] ?? m[6])]));
      const shownPorts = Object.fromEntries(rows.filter((m) => m[3]).map((m) => [m[3], Number(m[4])]));
      const order = Object.keys(shownSources);
      const expectedSources = topOf(kernel.bySource, 5, order);
      expect(shownSources).toEqual({ ...expectedSources.top, other: expectedSources.other });
      expect(shownPorts).toEqual(kernel.byDestinationPort); // three ports: all shown
      // Most of it unreplied UDP from the flood: the verdict says so, and who opens them.
      expect(view.replace(/\n {2}/g, ' ')).toMatch(
        /^! Mostly unassured: \d+ of \d+ entries \([\d.]+% of nf_conntrack_max\) are unassured \(most udp\/UNREPLIED\)/m,
      );
    });
  });
});

/** NativeSnapshot objects still alive after the garbage collector has had its chances. */
async function liveSnapshotsAfterGc(binding: { _liveSnapshots(): number }): Promise<number> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 40 && binding._liveSnapshots() > 0; i++) {
    gc();
    await sleep(50); // finalizers run on later turns of the loop
  }
  return binding._liveSnapshots();
}

function slope(points: [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return num / den;
}
