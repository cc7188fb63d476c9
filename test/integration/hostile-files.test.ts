/**
 * The node-wide monitor on what a hostile or broken node can hold: a container runtime tree
 * whose files are FIFOs and devices (containerd's init.pid and CRI-O's pidfile as FIFOs with no
 * writer, a config.json that is a FIFO, a pid file that is /dev/zero), where the real
 * AllNamespacesMonitor starts at once (it used to wait in open() for ever) and the CLI reports,
 * then stops on SIGTERM with its final report; a pid file on a FUSE mount that never answers
 * a read (a hung file), which holds start() up only to the scan's deadline; and a namespace
 * whose name under /var/run/netns holds ESC sequences and a newline, which the line view shows
 * escaped, on its own row.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SCAN_TIMEOUT_MS } from '../../dist/host/pods.js';
import { AllNamespacesMonitor, type AllNamespacesReport } from '../../dist/index.js';
import { CLI, runCli } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import { uniqueName } from '../helpers/netns';
import { hangReadsOf } from '../helpers/hung-file';
import { runtimeTree, SANDBOXES, type RuntimeTree } from '../helpers/runtime';
import { defer } from '../helpers/scope';

/** The fixture runtime tree with FIFOs and /dev/zero where the runtimes keep pids and specs. */
function hostileTree(): RuntimeTree {
  const tree = runtimeTree();
  defer(() => tree.remove());
  const replace = (name: keyof typeof SANDBOXES, file: string, how: 'fifo' | 'zero') => {
    const path = join(tree.root, SANDBOXES[name].dir, file);
    unlinkSync(path);
    if (how === 'fifo') spawnSync('mkfifo', [path]);
    else symlinkSync('/dev/zero', path);
  };
  replace('web', 'init.pid', 'fifo'); // containerd
  replace('coredns', 'pidfile', 'fifo'); // CRI-O
  replace('batch', 'config.json', 'fifo');
  replace('kubeProxy', 'init.pid', 'zero');
  return tree;
}

describe.skipIf(!canRunIntegration)('FIFOs and devices in the container runtimes’ state', () => {
  it('AllNamespacesMonitor.start() resolves at once and reports', async () => {
    const tree = hostileTree();
    const host = new AllNamespacesMonitor({ intervalMs: 200, containerdRoot: tree.containerd, crioRoot: tree.crio });
    defer(() => host.stop());
    const reports: AllNamespacesReport[] = [];
    host.on('report', (r) => reports.push(r));
    const started = performance.now();
    await host.start();
    const ms = performance.now() - started;
    await new Promise((r) => setTimeout(r, 500));
    console.info(`start() with FIFO pid files took ${ms.toFixed(0)} ms; ${reports.length} reports in 0.5 s`);
    expect(ms).toBeLessThan(2000);
    expect(reports.length).toBeGreaterThanOrEqual(1);
    expect(reports.at(-1)!.namespaces.find((n) => n.host)).toBeDefined();
    await host.stop();
  });

  it('conntrack-monitor --all-namespaces reports, and stops on SIGTERM with its final report', async () => {
    const tree = hostileTree();
    const child = spawn(
      process.execPath,
      [
        CLI,
        '--all-namespaces',
        '--json',
        '--interval',
        '200',
        '--containerd-root',
        tree.containerd,
        '--crio-root',
        tree.crio,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    defer(() => child.kill('SIGKILL'));
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const spawned = performance.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no report within 5 s: ${stderr}`)), 5000);
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout.includes('\n')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const firstMs = performance.now() - spawned;
    const signalled = performance.now();
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    const stopMs = performance.now() - signalled;
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AllNamespacesReport);
    console.info(
      `CLI on the hostile tree: first report after ${firstMs.toFixed(0)} ms (Node's start-up included), exit ${code} ${stopMs.toFixed(0)} ms after SIGTERM, ${lines.length} reports`,
    );
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stopMs).toBeLessThan(2000);
    expect(lines.at(-1)!.final).toBe(true);
  });

  it('a pid file that hangs every read: start() resolves at the scan deadline, and says why pods are unknown', async () => {
    const tree = runtimeTree();
    defer(() => tree.remove());
    const hung = await hangReadsOf(join(tree.root, SANDBOXES.web.dir, 'init.pid'));
    defer(() => hung.release());
    const host = new AllNamespacesMonitor({
      intervalMs: 200,
      rediscoverMs: 300,
      containerdRoot: tree.containerd,
      crioRoot: tree.crio,
    });
    defer(() => host.stop());
    const reports: AllNamespacesReport[] = [];
    host.on('report', (r) => reports.push(r));
    const started = performance.now();
    await host.start();
    const ms = performance.now() - started;
    await new Promise((r) => setTimeout(r, 1000)); // rediscoveries meanwhile read nothing more there
    const why = reports.at(-1)!.namespaces.find((n) => n.host)!.unavailable.pod;
    console.info(`start() with a hung init.pid took ${ms.toFixed(0)} ms; pod: ${why}`);
    expect(ms).toBeGreaterThanOrEqual(SCAN_TIMEOUT_MS - 50);
    expect(ms).toBeLessThan(SCAN_TIMEOUT_MS + 1500);
    expect(why).toMatch(
      /^the container runtime's files could not be read within 2 s: .*init\.pid did not answer in time \(on a filesystem that does not answer\?\); not read again until it answers$/,
    );
    await host.stop();
  });

  it('the CLI on that tree reports, and on SIGTERM writes its final report; it exits once the read returns', async () => {
    const tree = runtimeTree();
    defer(() => tree.remove());
    const hung = await hangReadsOf(join(tree.root, SANDBOXES.coredns.dir, 'pidfile'));
    defer(() => hung.release());
    const child = spawn(
      process.execPath,
      [
        CLI,
        '--all-namespaces',
        '--json',
        '--interval',
        '200',
        '--containerd-root',
        tree.containerd,
        '--crio-root',
        tree.crio,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    defer(() => child.kill('SIGKILL'));
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const waitFor = async (what: string, test: () => boolean, ms: number) => {
      const deadline = performance.now() + ms;
      while (!test()) {
        if (performance.now() > deadline) throw new Error(`no ${what} within ${ms} ms: ${stdout}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const lines = () =>
      stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AllNamespacesReport);
    // Once started (the scan waited for the read until its deadline), reports name namespaces.
    await waitFor('report', () => lines().some((r) => r.namespaces.length > 0), SCAN_TIMEOUT_MS + 3000);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const signalled = performance.now();
    child.kill('SIGTERM');
    await waitFor('final report', () => lines().some((r) => r.final), 2000);
    const finalMs = performance.now() - signalled;
    // The read is still in the kernel: the process's exit waits for its thread until it returns
    // (only SIGKILL ends it sooner).
    await new Promise((r) => setTimeout(r, 300));
    expect(child.exitCode).toBeNull();
    await hung.release();
    const code = await exited;
    console.info(
      `SIGTERM with a hung pidfile: final report after ${finalMs.toFixed(0)} ms, exit ${code} once the read failed`,
    );
    expect(code).toBe(0);
  });

  it('a namespace named with ESC sequences and a newline: the line view escapes it, on its own row', async () => {
    const name = `${uniqueName('esc')}\u001b]0;pwned\u0007\u001b[31m\nFAKE ROW`;
    execFileSync('ip', ['netns', 'add', name]);
    defer(() => execFileSync('ip', ['netns', 'delete', name]));
    const run = await runCli([
      '--all-namespaces',
      '--interval',
      '200',
      '--duration',
      '0.5',
      '--crio-root',
      '',
      '--containerd-root',
      '',
    ]);
    const escaped = name.replace(
      '\u001b]0;pwned\u0007\u001b[31m\nFAKE ROW',
      '\\u001b]0;pwned\\u0007\\u001b[31m\\nFAKE ROW',
    );
    const rows = run.stdout.split('\n').filter((l) => l.includes(escaped));
    console.info(`its row: ${rows[0]}`);
    expect(run.code).toBe(0);
    // eslint-disable-next-line no-control-regex -- what must not be there
    expect(run.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(run.stdout).not.toMatch(/^FAKE ROW/m);
    expect(rows.length).toBeGreaterThanOrEqual(1); // one per report
    // --json keeps the name as it is, escaped the JSON way.
    const json = await runCli([
      '--all-namespaces',
      '--json',
      '--interval',
      '200',
      '--duration',
      '0.3',
      '--crio-root',
      '',
      '--containerd-root',
      '',
    ]);
    const names = json.stdout
      .trim()
      .split('\n')
      .flatMap((l) => (JSON.parse(l) as AllNamespacesReport).namespaces.map((n) => n.name));
    expect(names).toContain(name);
  });
});
