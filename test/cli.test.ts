/** CLI usage handling; needs no privileges. */
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
    [['check', '--warn', 'x'], 3, /^conntrack-monitor check: --warn expects a decimal number, got "x" \(see --help\)$/],
    [['check', '--bogus'], 3, /^conntrack-monitor check: Unknown option '--bogus'/],
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
      /^conntrack-monitor: cannot start: enter network namespace \/etc\/hostname: Invalid argument \(\/etc\/hostname is not a network namespace\)$/,
    ],
    [
      ['--netns', '/tmp'],
      1,
      /^conntrack-monitor: cannot start: enter network namespace \/tmp: .*\(\/tmp is not a network namespace\)$/,
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
        'CONNTRACK UNKNOWN - cannot monitor: enter network namespace /etc/hostname: Invalid argument (/etc/hostname is not a network namespace)',
      );
  });
});
