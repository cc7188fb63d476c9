/**
 * serve, check, advise and the live view against the real kernel, with real clients:
 * an HTTP scrape checked by promtool, monitoring-plugins exit codes, and tmux as the terminal.
 */
import { execFileSync, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLI, runCli, servingUrl } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import { withConntrackMax, withKernelLock } from '../helpers/kernel-lock.mjs';
import { pidsWith, uniqueName } from '../helpers/netns';
import { defer, namespace } from '../helpers/scope';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const metric = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe.skipIf(!canRunIntegration)('CLI commands on the real kernel', () => {
  it('serve: /metrics over HTTP for a namespace with traffic, valid for promtool, clean SIGTERM', async () => {
    const ns = await namespace('serve');
    const child = spawn(process.execPath, [
      CLI,
      'serve',
      '--netns',
      ns.name,
      '--listen',
      '127.0.0.1:0',
      '--interval',
      '200',
    ]);
    defer(() => void child.kill('SIGKILL'));
    const url = await servingUrl(child);
    await ns.traffic('tcp', 12);
    await sleep(600);
    const res = await fetch(url);
    const text = await res.text();
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const labels = `netns="${ns.name}"`;
    console.info(
      `serve: new ${metric(text, `nf_conntrack_events_total{${labels},type="new"}`)}, entries ${metric(text, `nf_conntrack_entries{${labels}}`)} (kernel ${await ns.count()})`,
    );
    expect(metric(text, `nf_conntrack_events_total{${labels},type="new"}`)).toBe(12);
    expect(metric(text, `nf_conntrack_entries{${labels}}`)).toBe(await ns.count());
    expect(metric(text, `nf_conntrack_entries_by_state{${labels},protocol="tcp",state="time_wait"}`)).toBe(12);
    expect(execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })).toBe('');
    expect((await fetch(url.replace('/metrics', '/nope'))).status).toBe(404);
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).toBe(0);
  });

  it('check: 0 on a quiet namespace, 2 while the table is full and dropping', async () => {
    const ns = await namespace('check');
    const quiet = await runCli(['check', '--netns', ns.name, '--observe', '0.5']);
    expect(quiet.code).toBe(0);
    expect(quiet.stdout).toMatch(/^CONNTRACK OK - 0\/\d+ entries \(0\.0%\) at peak \| entries=0;/);
    expect(quiet.stdout.trim().split('\n')).toHaveLength(1);

    const before = await ns.kernelStats();
    const { full, traffic } = await withConntrackMax(20, async () => {
      const run = runCli(['check', '--netns', ns.name, '--observe', '1.5', '--interval', '200']);
      await ns.waitForListener(run.child.pid!);
      const traffic = await ns.traffic('udp', 40);
      return { full: await run, traffic };
    });
    const kernelDrops = (await ns.kernelStats()).drop! - before.drop!;
    console.info(
      `check during table full: exit ${full.code}: ${full.stdout.trim()} (kernel drops ${kernelDrops}, failed sends ${traffic.failed})`,
    );
    expect(full.code).toBe(2);
    expect(kernelDrops).toBeGreaterThan(0);
    expect(full.stdout).toMatch(
      new RegExp(
        `^CONNTRACK CRITICAL - ${kernelDrops} packets dropped in \\d+ s \\(table full\\); 20/20 entries \\(100\\.0%\\)`,
      ),
    );
    expect(full.stdout).toContain(` drops=${kernelDrops};;;0 `);
  });

  it('advise: drops into a table mostly TIME_WAIT: the shorter TIME_WAIT timeout, no larger max while it frees enough', async () => {
    const ns = await namespace('advise');
    const before = await ns.kernelStats();
    await ns.traffic('tcp', 80); // 80 TIME_WAIT entries: of 100, once the max is lowered
    const advice = await withConntrackMax(100, async () => {
      const run = runCli(['advise', '--netns', ns.name, '--observe', '1.5', '--interval', '250', '--json']);
      await ns.waitForListener(run.child.pid!);
      await ns.traffic('udp', 40); // about 20 fit, the rest are dropped
      return run;
    });
    const kernelDrops = (await ns.kernelStats()).drop! - before.drop!;
    expect(advice.code).toBe(0);
    const a = JSON.parse(advice.stdout);
    console.info(
      `advise: ${a.recommendations.map((r: { sysctl: string; current: number; recommended: number }) => `${r.sysctl} ${r.current} -> ${r.recommended}`).join('; ')}; ${a.verdict?.summary}`,
    );
    expect(kernelDrops).toBeGreaterThan(0);
    expect(a.drops).toBe(kernelDrops);
    // The snapshot at the end: the 80 TIME_WAIT (closing TCP) less any the kernel's garbage
    // collector evicted meanwhile (it evicts closing TCP entries while the table is over 95% of
    // its max, whenever it runs), and the unreplied UDP that fit. The kernel's listing after
    // the run (the max restored: no more evictions) holds what the snapshot saw, or fewer if
    // the collector ran between the two.
    const closing = ['FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE'];
    const listed = (await ns.kernelListing()).tcpStates;
    const listedClosing = closing.reduce((n, state) => n + (listed[state] ?? 0), 0);
    console.info(`advise: snapshot ${a.snapshot.tcpClosing} closing TCP, conntrack -L after ${listedClosing}`);
    expect(a.snapshot.tcpClosing).toBeLessThanOrEqual(80);
    expect(a.snapshot.tcpClosing).toBeGreaterThanOrEqual(listedClosing);
    expect(listedClosing).toBeGreaterThan(50);
    expect(a.verdict).toMatchObject({ mostly: 'tcp-closing', state: 'tcp/TIME_WAIT' });
    const byName = Object.fromEntries(a.recommendations.map((r: { sysctl: string }) => [r.sysctl, r]));
    expect(byName['net.netfilter.nf_conntrack_tcp_timeout_time_wait']).toMatchObject({ current: 120, recommended: 30 });
    // 100 entries and the drops wanted, less the 60 TIME_WAIT entries 30 s frees: under 75.
    expect(100 + kernelDrops - 60).toBeLessThanOrEqual(75);
    expect(byName['net.netfilter.nf_conntrack_max']).toBeUndefined();
    expect(a.sysctlConf).toMatch(/^net\.netfilter\.nf_conntrack_tcp_timeout_time_wait = 30$/m);
    expect(a.memory.entryBytes).toBeGreaterThan(0);
  });

  it('advise after an incident: the kernel drop counter since the namespace started, and the last "table full" log', async () => {
    const ns = await namespace('after');
    const inode = statSync(ns.path).ino;
    // The kernel's "table full" message is rate limited host-wide (net_ratelimit: 10 per 5 s):
    // under the kernel lock no one else fills a table, and earlier messages age out, so that
    // this incident is logged.
    const incident = await withKernelLock(async () => {
      await sleep(5500);
      return withConntrackMax(20, () => ns.traffic('udp', 35));
    });
    const incidentAt = performance.now();
    await sleep(2000); // the incident is over before advise starts
    const kernel = (await ns.kernelStats()).drop!;
    const run = await runCli(['advise', '--netns', ns.name, '--observe', '1.5', '--interval', '250', '--json']);
    const elapsedS = (performance.now() - incidentAt) / 1000;
    expect(run.code).toBe(0);
    const a = JSON.parse(run.stdout);
    const max = a.recommendations.find((r: { sysctl: string }) => r.sysctl === 'net.netfilter.nf_conntrack_max');
    console.info(
      `advise ${elapsedS.toFixed(1)} s after an incident in netns ${inode}: window drops ${a.drops}, kernel since start ${a.kernelDrops.sinceStart} ` +
        `(namespace's stat: ${kernel}, failed sends ${incident.failed}), last logged ${a.kernelDrops.lastLoggedSecondsAgo?.toFixed(1)} s ago; ${a.notes[0]}`,
    );
    expect(kernel).toBe(incident.failed);
    expect(a.drops).toBe(0);
    expect(a.kernelDrops.sinceStart).toBe(kernel);
    expect(a.kernelDrops.lastLoggedSecondsAgo).toBeGreaterThan(1.5);
    expect(a.kernelDrops.lastLoggedSecondsAgo).toBeLessThanOrEqual(elapsedS + 0.5);
    // History: said as such, not the reason for a larger max on a table that is nearly empty now.
    expect(a.dropsBefore).toBe(kernel);
    expect(max).toBeUndefined();
    expect(a.notes[0]).toMatch(
      new RegExp(
        `^${kernel} drops since the namespace started, none while observed \\(the kernel last logged "table full" for it \\d+ s ago\\): the table was full before`,
      ),
    );
    expect(a.notes.join(' ')).not.toMatch(/Nothing to change/);
  });

  it('live view: a real terminal (tmux) shows the fill bar, and the drops in plain words', async () => {
    const ns = await namespace('tty');
    const session = uniqueName('tty');
    execFileSync('tmux', [
      'new-session',
      '-d',
      '-s',
      session,
      '-x',
      '130',
      '-y',
      '40',
      `${process.execPath} ${CLI} --netns ${ns.name} --interval 200`,
    ]);
    defer(() => void execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' }));
    const screen = () => execFileSync('tmux', ['capture-pane', '-p', '-t', session], { encoding: 'utf8' });
    await ns.waitForListener(() => pidsWith(ns.name)); // the CLI in the tmux pane
    await sleep(500);
    const calm = screen();
    expect(calm).toMatch(/Table +\[░+\] 0\.0% {2}0 \/ [\d,]+ entries/);
    expect(calm).toMatch(/Ctrl-C to quit/);
    // The namespace has the kernel's default nf_conntrack_events=2: said on screen, and kept there.
    expect(calm).toMatch(/! nf_conntrack_events is 2 \(the kernel default\)/);
    expect(calm).not.toMatch(/No warnings/);
    const before = await ns.kernelStats();
    // 60 new flows over 2 s: 10 fit, then drops in every interval while the screen is read.
    // The screen's count lies between the kernel's a little before and just after it is read.
    const { dropping, earlier, later } = await withConntrackMax(10, async () => {
      const traffic = ns.traffic('paced', 60, 2000);
      await sleep(800);
      const earlier = (await ns.kernelStats()).drop! - before.drop!;
      await sleep(400);
      const dropping = screen();
      const later = (await ns.kernelStats()).drop! - before.drop!;
      await traffic;
      return { dropping, earlier, later };
    });
    const shown = Number(/! TABLE FULL: (\d+) packets dropped in the last [\d.]+ s/.exec(dropping)?.[1]);
    console.info(`live view while dropping (kernel drops ${earlier} 400 ms before, ${later} when read):\n${dropping}`);
    expect(earlier).toBeGreaterThan(0);
    expect(shown).toBeGreaterThanOrEqual(earlier);
    expect(shown).toBeLessThanOrEqual(later);
    expect(dropping).toMatch(/Table +\[█+\] 100\.0% {2}10 \/ 10 entries/);
    const flat = dropping.replace(/\n {2}/g, ' '); // warnings wrap between words
    expect(flat).toMatch(/New connections are being dropped now\./);
    expect(flat).toMatch(/! The table is 100\.0% full: new connections are being dropped\./);
    expect(dropping).toMatch(/! nf_conntrack_events is 2/);
  });

  it('live view: laid out for the terminal width, 70 columns and narrower, redrawn at once on resize (tmux)', async () => {
    const ns = await namespace('narrow');
    await ns.traffic('tcp', 5); // TIME_WAIT entries, so every row has content
    const session = uniqueName('narrow');
    // Samples every 5 s: a redraw between them can only come from the resize.
    execFileSync('tmux', [
      'new-session',
      '-d',
      '-s',
      session,
      '-x',
      '70',
      '-y',
      '45',
      `${process.execPath} ${CLI} --netns ${ns.name} --interval 5000`,
    ]);
    defer(() => void execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' }));
    const capture = (...flags: string[]) =>
      execFileSync('tmux', ['capture-pane', '-p', ...flags, '-t', session], { encoding: 'utf8' });
    const resize = (columns: number) =>
      execFileSync('tmux', ['resize-window', '-t', session, '-x', String(columns), '-y', '45']);
    const deadline = Date.now() + 10_000;
    while (!capture().includes('Ctrl-C to quit')) {
      if (Date.now() > deadline) throw new Error(`no frame:\n${capture()}`);
      await sleep(100);
    }
    const report: string[] = [];
    for (const columns of [70, 150, 60, 100]) {
      if (columns !== 70) resize(columns);
      await sleep(400);
      const text = capture();
      // -J joins lines the terminal wrapped: equal to the plain capture when none was.
      expect(capture('-J'), `${columns} columns`).toBe(text);
      const lines = text.split('\n');
      const longest = Math.max(...lines.map((l) => [...l].length));
      const bar = /\[([█░]+)\]/.exec(text)![1]!.length;
      report.push(`${columns} columns: longest line ${longest}, bar ${bar}`);
      expect(longest).toBeLessThanOrEqual(columns);
      expect(bar).toBe(
        Math.max(
          10,
          Math.min(50, columns - 40, columns - 11 - 4 - 4 - 2 - /\d[\d,]* \/ [\d,]+ entries/.exec(text)![0].length),
        ),
      );
      expect(text).toMatch(/^Rates {6}insert /m);
      expect(text).toMatch(/TIME_WAIT {2}5 entries \(0\.0% of nf_conntrack_max\)/);
      expect(text).toMatch(/Ctrl-C to quit/);
      if (columns <= 70) expect(text).toMatch(/\n {11}\S/); // items moved whole to continuation lines
    }
    console.info(`live view in tmux, redrawn on resize between 5 s samples:\n  ${report.join('\n  ')}\n${capture()}`);
  });
});
