/**
 * `conntrack-monitor record` and `report` on the real kernel: a command that opens a known
 * number of connections and then drives a table-full incident in a private namespace, with the
 * summary checked against the namespace's nft counter and the kernel's drop counter; the exit
 * status is the command's (0, non-zero, a signal, not found); SIGINT and SIGTERM reach the
 * command once, from `kill` or from a real terminal's Ctrl-C (tmux).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConntrackError,
  parseRecording,
  record,
  renderReport,
  type ConntrackMonitor,
  type ConntrackSample,
  type RunSummary,
} from '../../dist/index.js';
import { CLI, runCli } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import { withConntrackMax } from '../helpers/kernel-lock.mjs';
import { type TestNamespace } from '../helpers/netns';
import { defer, namespace } from '../helpers/scope';

const TRAFFIC = join(__dirname, '..', 'helpers', 'traffic.mjs');
const dir = mkdtempSync(join(tmpdir(), 'ctmon-record-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Packets the namespace's `ct state new` rule counted: one per entry created. */
async function nftNew(ns: TestNamespace): Promise<number> {
  return Number(/counter packets (\d+)/.exec(await ns.exec('nft', ['list', 'chain', 'inet', 'ctmon_test', 'out']))![1]);
}

function recording(file: string) {
  return parseRecording(readFileSync(file, 'utf8'), file);
}

async function reportJson(file: string): Promise<RunSummary & { command: string[] | null }> {
  const run = await runCli(['report', file, '--json']);
  expect(run.code).toBe(0);
  expect(run.stdout.trim().split('\n')).toHaveLength(1);
  return JSON.parse(run.stdout);
}

/** Starts `record` in a new session (no controlling terminal), as a script or a service would. */
function recordDetached(args: string[]) {
  const child = spawn(process.execPath, [CLI, 'record', ...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  defer(() => void child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const line = (pattern: RegExp, from: () => string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (pattern.test(from())) {
          clearInterval(timer);
          resolve();
        } else if (child.exitCode !== null) {
          clearInterval(timer);
          reject(new Error(`record exited first: ${stderr}`));
        }
      }, 20);
    });
  return {
    child,
    exit,
    out: () => stdout,
    err: () => stderr,
    stdoutLine: (p: RegExp) => line(p, () => stdout),
    stderrLine: (p: RegExp) => line(p, () => stderr),
  };
}

describe.skipIf(!canRunIntegration)('record and report on the real kernel', () => {
  it("records a table-full incident: inserts equal the nft counter, drops the kernel's, exit status the command's", async () => {
    const LIMIT = 60;
    const ns = await namespace('record');
    const file = join(dir, 'incident.ndjson');
    const statsBefore = await ns.kernelStats();
    const newBefore = await nftNew(ns);
    // The user's own command; record itself never uses a shell.
    const script = `node ${TRAFFIC} tcp 40 && sleep 0.5 && node ${TRAFFIC} udp 80 && sleep 0.4; exit 3`;
    const command = ['ip', 'netns', 'exec', ns.name, 'sh', '-c', script];
    const run = await withConntrackMax(LIMIT, () =>
      runCli(['record', '--netns', ns.name, '--interval', '200', '--out', file, '--', ...command]),
    );
    const statsAfter = await ns.kernelStats();
    const inserted = (await nftNew(ns)) - newBefore;
    const kernelDrops = statsAfter.drop! - statsBefore.drop!;
    const kernelEarlyDrops = statsAfter.early_drop! - statsBefore.early_drop!;
    const [tcp, udp] = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)); // the command's own stdout
    const s = await reportJson(file);
    console.info(
      `record: exit ${run.code} (command: 3); inserts ${s.totals.insert} (nft ct state new ${inserted}); drops ${s.totals.drop} (kernel ${kernelDrops}, failed sends ${udp.failed}); ` +
        `early_drop ${s.totals.earlyDrop} (kernel ${kernelEarlyDrops}); peak ${s.peak.entries}/${LIMIT}, TIME_WAIT ${s.peak.timeWait} (connections ${tcp.ok}); first drop ${s.firstDropAt}`,
    );
    expect(run.code).toBe(3);
    expect(tcp).toEqual({ ok: 40, failed: 0 });
    expect(kernelDrops).toBeGreaterThan(0);
    expect(s.command).toEqual(command);
    expect(s.totals.insert).toBe(inserted);
    expect(s.totals.insert).toBe(tcp.ok + udp.ok);
    expect(s.totals.drop).toBe(kernelDrops);
    expect(s.totals.drop).toBe(udp.failed);
    expect(s.totals.earlyDrop).toBe(kernelEarlyDrops);
    expect(s.peak.entries).toBe(LIMIT);
    expect(s.peak.fill).toBe(1);
    expect(s.peak.timeWait).toBe(tcp.ok);
    expect(s.eventsLost).toBe(0);
    expect(Date.parse(s.firstDropAt!)).toBeGreaterThan(Date.parse(s.start!));
    expect(Date.parse(s.firstDropAt!)).toBeLessThanOrEqual(Date.parse(s.end!));
    const r = recording(file);
    expect(r.header!.netns).toBe(ns.path);
    expect(r.header!.conntrack.max).toBe(LIMIT);
    expect(r.end).toMatchObject({ exit: { code: 3, signal: null }, reason: 'command exited' });
    expect(r.samples.at(-1)!.final).toBe(true);
    // The summary on stderr is the report's.
    expect(run.stderr).toMatch(new RegExp(`totals +insert ${inserted} +delete \\d+ +drop ${kernelDrops} `));
    const html = await runCli(['report', file, '--html', join(dir, 'incident.html')]);
    expect(html.code).toBe(0);
    expect(readFileSync(join(dir, 'incident.html'), 'utf8')).toContain(
      `The table was full: ${kernelDrops} packets dropped`,
    );
  });

  it("flows kept alive past their timeouts: the recording's states and its 'Entries by state' chart equal conntrack -L", async () => {
    const ns = await namespace('record-alive');
    for (const [name, seconds] of [
      ['udp_timeout', 2],
      ['udp_timeout_stream', 4],
      ['tcp_timeout_close_wait', 3],
    ] as const)
      await ns.sysctl(`net.netfilter.nf_conntrack_${name}`, seconds);
    // The user's command: flows refreshed every 700 ms, and conntrack -L every 1.5 s, printed.
    const script = join(dir, 'alive.mjs');
    writeFileSync(
      script,
      `import { spawn, execFileSync } from 'node:child_process';
      const flows = spawn(process.execPath, [${JSON.stringify(TRAFFIC)}, 'keepalive', '10', '10', '10', '0', '700'], { stdio: ['pipe', 'pipe', 'inherit'] });
      await new Promise((r) => flows.stdout.once('data', r));
      for (let i = 0; i < 6; i++) {
        await new Promise((r) => setTimeout(r, 1500));
        const protocols = { tcp: 0, udp: 0, icmp: 0, other: 0 };
        const tcpStates = {};
        for (const line of execFileSync('conntrack', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\\n')) {
          const [proto, , , state] = line.trim().split(/\\s+/);
          if (!proto) continue;
          protocols[proto in protocols ? proto : 'other']++;
          if (proto === 'tcp') tcpStates[state] = (tcpStates[state] ?? 0) + 1;
        }
        console.log(JSON.stringify({ at: Date.now(), protocols, tcpStates }));
      }
      await new Promise((r) => setTimeout(r, 3500)); // samples after the last listing
      flows.stdin.end();
      await new Promise((r) => flows.on('exit', r));`,
    );
    const file = join(dir, 'alive.ndjson');
    const run = await runCli([
      'record',
      '--netns',
      ns.name,
      '--out',
      file,
      '--',
      'ip',
      'netns',
      'exec',
      ns.name,
      process.execPath,
      script,
    ]);
    expect(run.code).toBe(0);
    const listings = run.stdout
      .trim()
      .split('\n')
      .map(
        (l) => JSON.parse(l) as { at: number; protocols: Record<string, number>; tcpStates: Record<string, number> },
      );
    const { samples } = recording(file);
    expect(listings).toHaveLength(6);
    for (const listing of listings) {
      // The first sample after it whose counts are known: one in which flows past their deadline
      // waited for a walk says so (null, with the reason), and the flows do not change meanwhile.
      const next = samples.find((s) => Date.parse(s.time) > listing.at && s.protocols !== null)!;
      expect(next, `a known sample after the listing at ${listing.at}`).toBeDefined();
      const states = Object.fromEntries(Object.entries(next.tcpStates ?? {}).filter(([, n]) => n > 0));
      console.info(
        `recorded at ${next.time}: ${JSON.stringify(next.protocols)} ${JSON.stringify(states)}; conntrack -L before it ${JSON.stringify(listing.protocols)} ${JSON.stringify(listing.tcpStates)}`,
      );
      expect(next.protocols).toEqual(listing.protocols);
      expect(states).toEqual(listing.tcpStates);
    }
    expect(listings.at(-1)).toMatchObject({ protocols: { tcp: 10, udp: 20 }, tcpStates: { CLOSE_WAIT: 10 } });
    const html = await runCli(['report', file, '--html', join(dir, 'alive.html')]);
    expect(html.code).toBe(0);
    // The chart's layers are the recorded counts: the flows never left them (the final sample,
    // as the command closed them, adds the states they closed through).
    expect(readFileSync(join(dir, 'alive.html'), 'utf8')).toMatch(
      /Peak per layer: TCP CLOSE_WAIT 10, (TCP [A-Z_]+ \d+, )*UDP 20\./,
    );
  });

  it("exits with the command's status: non-zero, killed by a signal, not found", async () => {
    const ns = await namespace('status');
    const common = ['record', '--netns', ns.name, '--interval', '200'];
    const seven = await runCli([
      ...common,
      '--out',
      join(dir, 's7.ndjson'),
      '--',
      process.execPath,
      '-e',
      'process.exit(7)',
    ]);
    expect(seven.code).toBe(7);
    expect(recording(join(dir, 's7.ndjson')).end!.exit).toEqual({ code: 7, signal: null });
    const killed = await runCli([
      ...common,
      '--out',
      join(dir, 'kill.ndjson'),
      '--',
      process.execPath,
      '-e',
      'process.kill(process.pid, "SIGKILL")',
    ]);
    expect(killed.code).toBe(128 + 9);
    expect(recording(join(dir, 'kill.ndjson')).end!.exit).toEqual({ code: null, signal: 'SIGKILL' });
    const missing = await runCli([...common, '--out', join(dir, 'missing.ndjson'), '--', '/nonexistent/load-test']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toBe(
      'conntrack-monitor record: cannot run /nonexistent/load-test: spawn /nonexistent/load-test ENOENT (no summary: nothing ran while recording)\n',
    );
    expect(recording(join(dir, 'missing.ndjson')).end!.reason).toMatch(/^cannot run the command: /);
    // Monitoring that cannot start: the command does not run.
    const marker = join(dir, 'ran');
    const nostart = await runCli([
      'record',
      '--netns',
      'ctmon-no-such-namespace',
      '--out',
      join(dir, 'nostart.ndjson'),
      '--',
      process.execPath,
      '-e',
      `require('fs').writeFileSync(${JSON.stringify(marker)}, '')`,
    ]);
    expect(nostart.code).toBe(1);
    expect(nostart.stderr).toMatch(/^conntrack-monitor record: cannot start monitoring: .*; not running /m);
    expect(existsSync(marker)).toBe(false);
  });

  it('passes SIGINT and SIGTERM on to the command once, waits for it, and exits with its status', async () => {
    const ns = await namespace('signals');
    // A command that finishes its work on SIGINT (300 ms) and exits 42, counting the SIGINTs.
    const graceful = `let n = 0;
      process.on('SIGINT', () => { if (n++ === 0) setTimeout(() => { console.log(JSON.stringify({ sigints: n })); process.exit(42); }, 300); });
      console.log('ready'); setInterval(() => {}, 1000);`;
    const file = join(dir, 'sigint.ndjson');
    const rec = recordDetached([
      '--netns',
      ns.name,
      '--interval',
      '200',
      '--out',
      file,
      '--',
      process.execPath,
      '-e',
      graceful,
    ]);
    await rec.stdoutLine(/ready/);
    await sleep(500);
    const sent = Date.now();
    rec.child.kill('SIGINT'); // to record only: the command hears of it from record
    const code = await rec.exit;
    console.info(
      `SIGINT: record exited ${code} after ${Date.now() - sent} ms; the command said ${rec.out().trim().split('\n').at(-1)}`,
    );
    expect(code).toBe(42);
    expect(JSON.parse(rec.out().trim().split('\n').at(-1)!)).toEqual({ sigints: 1 });
    expect(Date.now() - sent).toBeGreaterThanOrEqual(300); // it waited for the command
    const r = recording(file);
    expect(r.end).toMatchObject({ exit: { code: 42, signal: null } });
    expect(r.samples.length).toBeGreaterThan(1);
    expect(r.samples.at(-1)!.final).toBe(true);

    // Without a handler the command dies of the signal: 128 + 15.
    const term = recordDetached([
      '--netns',
      ns.name,
      '--out',
      join(dir, 'sigterm.ndjson'),
      '--',
      process.execPath,
      '-e',
      "console.log('ready'); setInterval(() => {}, 1000)",
    ]);
    await term.stdoutLine(/ready/);
    term.child.kill('SIGTERM');
    expect(await term.exit).toBe(128 + 15);
    expect(recording(join(dir, 'sigterm.ndjson')).end!.exit).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it('without a command, records until SIGTERM and exits 0', async () => {
    const ns = await namespace('until');
    const file = join(dir, 'until.ndjson');
    const newBefore = await nftNew(ns);
    const rec = recordDetached(['--netns', ns.name, '--interval', '200', '--out', file]);
    await rec.stderrLine(/recording to .* until SIGINT or SIGTERM/);
    await ns.traffic('tcp', 9);
    await sleep(400);
    rec.child.kill('SIGTERM');
    expect(await rec.exit).toBe(0);
    const r = recording(file);
    expect(r.header!.command).toBeNull();
    expect(r.end).toMatchObject({ exit: null, reason: 'SIGTERM' });
    expect((await reportJson(file)).totals.insert).toBe((await nftNew(ns)) - newBefore);
  });

  it('killed outright (SIGKILL), it leaves a readable file: every sample so far, no end line', async () => {
    const ns = await namespace('crash');
    const file = join(dir, 'crash.ndjson');
    const rec = recordDetached(['--netns', ns.name, '--interval', '100', '--out', file]);
    await rec.stderrLine(/recording to/);
    await ns.traffic('tcp', 6);
    await sleep(500);
    rec.child.kill('SIGKILL');
    await rec.exit;
    const r = recording(file);
    expect(r.header).not.toBeNull();
    expect(r.end).toBeNull();
    expect(r.truncated).toBe(false);
    expect(r.samples.length).toBeGreaterThanOrEqual(3);
    expect(r.samples.reduce((sum, x) => sum + x.counts.insert!, 0)).toBe(6);
    const text = await runCli(['report', file]);
    expect(text.stdout).toContain('the recording was cut short: it has no end line');
  });

  it('Ctrl-C in a real terminal (tmux) reaches the command once: record does not send a second SIGINT', async () => {
    const ns = await namespace('tty');
    const file = join(dir, 'tty.ndjson');
    const counted = join(dir, 'sigints');
    const script = join(dir, 'count-sigints.mjs');
    writeFileSync(
      script,
      `import { writeFileSync } from 'node:fs';
let n = 0;
process.on('SIGINT', () => { if (n++ === 0) setTimeout(() => { writeFileSync(${JSON.stringify(counted)}, String(n)); process.exit(0); }, 800); });
writeFileSync(${JSON.stringify(counted)}, 'ready');
setInterval(() => {}, 1000);
`,
    );
    const session = `ctmon-record-${process.pid}`;
    execFileSync('tmux', [
      'new-session',
      '-d',
      '-s',
      session,
      `${process.execPath} ${CLI} record --netns ${ns.name} --interval 200 --out ${file} -- ${process.execPath} ${script}`,
    ]);
    defer(() => {
      try {
        execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' });
      } catch {
        // the session ends by itself once record has exited
      }
    });
    for (let i = 0; i < 200 && !(existsSync(counted) && readFileSync(counted, 'utf8') === 'ready'); i++)
      await sleep(50);
    expect(readFileSync(counted, 'utf8')).toBe('ready');
    await sleep(300);
    execFileSync('tmux', ['send-keys', '-t', session, 'C-c']);
    for (let i = 0; i < 200 && !recordingEnded(file); i++) await sleep(50);
    console.info(`Ctrl-C in tmux: the command counted ${readFileSync(counted, 'utf8')} SIGINT(s)`);
    expect(readFileSync(counted, 'utf8')).toBe('1');
    expect(recording(file).end).toMatchObject({ exit: { code: 0, signal: null }, reason: 'command exited' });
  });

  it("--all-namespaces: the namespace's drops equal its kernel counter", async () => {
    const ns = await namespace('allns');
    const file = join(dir, 'all.ndjson');
    const before = await ns.kernelStats();
    const run = await withConntrackMax(20, () =>
      runCli([
        'record',
        '--all-namespaces',
        '--interval',
        '200',
        '--out',
        file,
        '--',
        'ip',
        'netns',
        'exec',
        ns.name,
        'sh',
        '-c',
        `sleep 0.6 && node ${TRAFFIC} udp 40 && sleep 0.5`,
      ]),
    );
    const kernelDrops = (await ns.kernelStats()).drop! - before.drop!;
    expect(run.code).toBe(0);
    const report = await runCli(['report', file, '--json']);
    const runs = report.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const mine = runs.find((r) => r.namespace?.name === ns.name);
    console.info(
      `--all-namespaces: ${runs.length} namespaces; ${ns.name}: drops ${mine?.totals.drop} (kernel ${kernelDrops}), peak ${mine?.peak.entries}`,
    );
    expect(kernelDrops).toBeGreaterThan(0);
    expect(mine.totals.drop).toBe(kernelDrops);
    expect(mine.peak.entries).toBe(20);
    expect(runs[0].namespace.name).toBe(ns.name); // the busiest first
    expect(recording(file).header!.allNamespaces).toBe(true);
  });
});

describe.skipIf(!canRunIntegration)('record(fn) in the library', () => {
  it('resolves with what fn returned, every sample and their summary', async () => {
    const ns = await namespace('lib');
    const newBefore = await nftNew(ns);
    const seen: ConntrackSample[] = [];
    let running: boolean | undefined;
    const { result, samples, summary } = await record(
      async (monitor) => {
        running = monitor.running;
        const traffic = await ns.traffic('tcp', 25);
        await sleep(300);
        return traffic;
      },
      { netns: ns.name, intervalMs: 100, onSample: (s) => seen.push(s) },
    );
    const inserted = (await nftNew(ns)) - newBefore;
    console.info(
      `record(fn): ${samples.length} samples, inserts ${summary.totals.insert} (nft ${inserted}), TIME_WAIT ${summary.peak.timeWait}`,
    );
    expect(running).toBe(true);
    expect(result).toEqual({ ok: 25, failed: 0 });
    expect(summary.totals.insert).toBe(inserted);
    expect(summary.peak.timeWait).toBe(25);
    expect(samples.at(-1)!.final).toBe(true);
    expect(seen).toEqual(samples);
    expect(renderReport([{ label: 'library run', samples }])).toContain('<h1>library run</h1>');
  });

  it("fn's error propagates unchanged once the monitor has stopped; the samples stay with onSample", async () => {
    const ns = await namespace('libfail');
    const failure = new Error('load test failed');
    const seen: ConntrackSample[] = [];
    let monitor: ConntrackMonitor | undefined;
    await expect(
      record(
        async (m) => {
          monitor = m;
          await ns.traffic('tcp', 5);
          await sleep(250);
          throw failure;
        },
        { netns: ns.name, intervalMs: 100, onSample: (s) => seen.push(s) },
      ),
    ).rejects.toBe(failure);
    expect(monitor!.running).toBe(false);
    expect(seen.at(-1)!.final).toBe(true);
    expect(seen.reduce((sum, s) => sum + s.counts.insert!, 0)).toBe(5);
  });

  it('rejects with the ConntrackError, without calling fn, when monitoring cannot start', async () => {
    let called = false;
    await expect(record(() => (called = true), { netns: 'ctmon-no-such-namespace' })).rejects.toBeInstanceOf(
      ConntrackError,
    );
    expect(called).toBe(false);
  });
});

function recordingEnded(file: string): boolean {
  try {
    return recording(file).end !== null;
  } catch {
    return false;
  }
}
