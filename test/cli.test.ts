/** CLI usage handling; needs no privileges. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli';

describe('conntrack-monitor CLI usage', () => {
  it('--help prints usage and exits 0', async () => {
    const run = await runCli(['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: conntrack-monitor/);
    expect(run.stdout).toMatch(/--json/);
    expect(run.stdout).toMatch(/--netns/);
  });

  it.each(['serve', 'check', 'advise', 'watch'])('%s --help prints its usage and exits 0', async (command) => {
    const run = await runCli([command, '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      new RegExp(`^Usage: conntrack-monitor ${command === 'watch' ? '\\[watch\\]' : command}`),
    );
    expect(run.stdout).toMatch(/--netns/);
    expect(run.stdout).toMatch(/--backend/);
  });

  it.each([
    [['check', '--warn', 'x'], 'CONNTRACK UNKNOWN - --warn expects a decimal number, got "x" (see --help)'],
    [['check', '--bogus'], "CONNTRACK UNKNOWN - Unknown option '--bogus' (see --help)"],
    [
      ['check', '--warn', '95', '--crit', '90'],
      'CONNTRACK UNKNOWN - --warn and --crit must satisfy 0 < warn < crit <= 100, got 95 and 90 (see --help)',
    ],
    [
      ['check', '-w', '-5'],
      'CONNTRACK UNKNOWN - --warn and --crit must satisfy 0 < warn < crit <= 100, got -5 and 90 (see --help)',
    ],
    [
      ['check', '-c', '101'],
      'CONNTRACK UNKNOWN - --warn and --crit must satisfy 0 < warn < crit <= 100, got 75 and 101 (see --help)',
    ],
    [
      ['check', '-t', '2', '--observe', '2'],
      'CONNTRACK UNKNOWN - --timeout (2 s) must be longer than --observe (2 s) (see --help)',
    ],
    [['check', '-t', '0'], 'CONNTRACK UNKNOWN - --timeout must be from 1 to 2147483 seconds, got "0" (see --help)'],
  ])('check %j: the UNKNOWN status line on stdout, nothing on stderr, exit 3', async (args, line) => {
    const run = await runCli(args as string[]);
    expect(run).toMatchObject({ code: 3, stdout: `${line}\n`, stderr: '' });
  });

  it.each([
    [
      ['serve', '--listen', 'nowhere'],
      2,
      /^conntrack-monitor serve: --listen expects HOST:PORT such as 127\.0\.0\.1:9465, got 'nowhere'/,
    ],
    [
      ['advise', '--observe', '0'],
      2,
      /^conntrack-monitor advise: --observe must be from 1 to 2147483 seconds, got "0"/,
    ],
    [
      ['serve', '--backend', 'ebpf'],
      2,
      /^conntrack-monitor serve: --backend must be one of auto, netlink, proc, got "ebpf"/,
    ],
  ])('%j: one line, exit %i', async (args, code, message) => {
    const run = await runCli(args as string[]);
    expect(run.code).toBe(code);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr.trim()).toMatch(message);
  });

  it.each([
    [['--bogus'], /Unknown option '--bogus'/],
    [['--interval', 'fast'], /--interval expects a decimal number, got "fast"/],
    [['--interval', '5'], /--interval must be an integer from 50 to 3600000, got 5/],
    [['--interval', '-5'], /--interval must be an integer from 50 to 3600000, got -5/],
    [['--interval', '0x64'], /--interval expects a decimal number, got "0x64"/],
    [['--interval', '0b11'], /--interval expects a decimal number, got "0b11"/],
    [['--interval', '+100'], /--interval expects a decimal number, got "\+100"/],
    [['--interval', '1e3'], /--interval expects a decimal number, got "1e3"/],
    [['--duration=-1'], /--duration must be from 0.001 to 2147483 seconds, got "-1"/],
    [['--duration', '-1'], /--duration must be from 0.001 to 2147483 seconds, got "-1"/],
    [['--duration', '0'], /--duration must be from 0.001 to 2147483 seconds, got "0"/],
    [['--duration', '2592000'], /--duration must be from 0.001 to 2147483 seconds/],
    [['--netns', '../etc'], /--netns "..\/etc" is neither an absolute path nor a namespace name/],
    [['--netns', 'a\nb'], /--netns must not contain control characters, got "a\\nb"/],
    [['--backend', 'x\ny'], /--backend must be one of auto, netlink, proc, got "x\\ny"/],
    [['extra'], /Unexpected argument 'extra'/],
    [['--track-states', 'a'], /--track-states needs --all-namespaces/],
    [['--all-namespaces', '--netns', 'a'], /--all-namespaces and --netns exclude each other/],
    [['--all-namespaces', '--backend', 'proc'], /--all-namespaces reads ctnetlink: --backend proc does not apply/],
    [['--all-namespaces', '--counting', 'bogus'], /--counting must be one of auto, ebpf, filter, got "bogus"/],
    [
      ['--all-namespaces', '--track-states', 'a/b/c'],
      /--track-states entries are names under \/var\/run\/netns or pods/,
    ],
    [['--all-namespaces', '--crio-root', 'relative'], /--crio-root must be an absolute path or null/],
  ])('%j gives a one-line error and exits 2', async (args, message) => {
    const run = await runCli(args as string[]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(message);
  });

  it.each([
    [
      ['--netns', '/etc/hostname'],
      1,
      /^conntrack-monitor: cannot start: \/etc\/hostname is a regular file, not a network namespace \(pass \/var\/run\/netns\/NAME or \/proc\/PID\/ns\/net\)$/,
    ],
    [
      ['--netns', '/tmp'],
      1,
      /^conntrack-monitor: cannot start: \/tmp is a directory, not a network namespace \(pass \/var\/run\/netns\/NAME or \/proc\/PID\/ns\/net\)$/,
    ],
    [
      ['--netns', '/nonexistent'],
      1,
      /^conntrack-monitor: cannot start: open network namespace \/nonexistent: No such file or directory \(no network namespace at \/nonexistent\)$/,
    ],
    [['check', '--netns', '/etc/hostname'], 3, /^$/], // monitoring-plugins UNKNOWN, explained on stdout
  ])('%j: a namespace path that is not one gives one clear line and exit %i', async (args, code, stderr) => {
    const run = await runCli(args as string[]);
    expect(run.code).toBe(code);
    expect(run.stderr.trim()).toMatch(stderr);
    if (args[0] === 'check')
      expect(run.stdout.trim()).toBe(
        'CONNTRACK UNKNOWN - cannot monitor: /etc/hostname is a regular file, not a network namespace (pass /var/run/netns/NAME or /proc/PID/ns/net)',
      );
  });

  it('refuses a FIFO as --netns at once instead of blocking in open() (check keeps its timeout)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctmon-fifo-'));
    const fifo = join(dir, 'netns');
    execFileSync('mkfifo', [fifo]);
    try {
      const started = performance.now();
      const [check, watch] = await Promise.all([
        runCli(['check', '--netns', fifo, '--observe', '0.5', '-t', '3']),
        runCli(['--netns', fifo, '--duration', '1']),
      ]);
      const ms = performance.now() - started;
      console.info(
        `--netns FIFO: check exit ${check.code} (${check.stdout.trim()}), watch exit ${watch.code}, ${ms.toFixed(0)} ms`,
      );
      expect(check).toMatchObject({
        code: 3,
        stdout: `CONNTRACK UNKNOWN - cannot monitor: ${fifo} is a FIFO, not a network namespace (pass /var/run/netns/NAME or /proc/PID/ns/net)\n`,
      });
      expect(watch.code).toBe(1);
      expect(watch.stderr).toBe(
        `conntrack-monitor: cannot start: ${fifo} is a FIFO, not a network namespace (pass /var/run/netns/NAME or /proc/PID/ns/net)\n`,
      );
      expect(ms).toBeLessThan(3000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
