/**
 * The live view in a real terminal (tmux), on the eBPF path: it says what the kernel counted
 * (new and destroyed entries) apart from what it read; the forecast in plain words while it
 * has too little history; `q` quits as in top and htop (after the final sample, exit 0), and
 * Ctrl-C still does, with the terminal given back as it was (echo, line editing).
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import { pidsWith, uniqueName } from '../helpers/netns';
import { defer, namespace } from '../helpers/scope';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A tmux session running `command` (a shell line that ends in a long sleep, so its pane stays),
 * on a tmux server of its own (-L): nobody else's sessions or server come and go with it.
 */
function session(label: string, command: string) {
  const name = uniqueName(label);
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', name, ...args], { encoding: 'utf8' });
  tmux('new-session', '-d', '-s', name, '-x', '200', '-y', '45', command);
  defer(() => void tmux('kill-server'));
  const screen = () => tmux('capture-pane', '-p', '-t', name);
  const until = async (what: (text: string) => boolean, ms = 10_000) => {
    const deadline = Date.now() + ms;
    let text = screen();
    while (!what(text)) {
      if (Date.now() > deadline) throw new Error(`not on screen in ${ms} ms:\n${text}`);
      await sleep(50);
      text = screen();
    }
    return text;
  };
  return {
    screen,
    until,
    keys: (...keys: string[]) => tmux('send-keys', '-t', name, ...keys),
  };
}

describe.skipIf(!canRunIntegration)('the live view in a real terminal (tmux)', () => {
  it('eBPF path: the kernel counted new and destroyed entries apart from what was read; the forecast in plain words; q quits', async () => {
    const ns = await namespace('keys');
    // After the view ends, the shell prints its exit status and the terminal's modes.
    const tty = session(
      'keys',
      `sh -c '${process.execPath} ${CLI} --netns ${ns.name} --interval 1000; echo "exit=$?"; stty -a; sleep 600'`,
    );
    const early = await tty.until((t) => t.includes('to quit.'));
    expect(early).toMatch(/^q or Ctrl-C to quit\.$/m);
    expect(early).toMatch(/^Forecast {3}none: a trend needs 5 s of samples; \d\.\d s so far$/m);
    await ns.waitForListener(() => pidsWith(ns.name)); // the CLI in the tmux pane
    // 40 UDP flows in one interval: 40 NEW events, counted by the socket filter in the kernel.
    const before = await ns.nftNewCount();
    await ns.traffic('udp', 40);
    const created = (await ns.nftNewCount()) - before;
    const counted = await tty.until((t) => /counted in the kernel \(eBPF\): [1-9]/.test(t));
    console.info(`live view after ${created} new entries (nft counter):\n${counted}`);
    const row =
      /^Events {5}counted in the kernel \(eBPF\): (\d+) new, (\d+) destroyed {2}(\d+) TCP state changes read {2}lost 0 /m.exec(
        counted,
      );
    expect(row, counted).not.toBeNull();
    expect(Number(row![1])).toBe(created);
    expect(Number(row![3])).toBe(0); // UDP: nothing queued to the reader
    expect(counted).toMatch(/^Rates {6}insert [\d.]+\/s/m); // per second of an interval of about 1 s

    tty.keys('q');
    const after = await tty.until((t) => /exit=\d+/.test(t));
    console.info(`after q:\n${after}`);
    expect(after).toMatch(/^exit=0$/m);
    expect(after).toMatch(/^\d\d:\d\d:\d\d {2}entries \d+\/\d+ .*\(final, \d+ ms\)$/m); // the final sample
    // The terminal is back in its usual modes: echo and line editing on.
    expect(after).toMatch(/(^|\s)icanon(\s|$)/m);
    expect(after).toMatch(/(^|\s)echo(\s|$)/m);
    expect(after).not.toMatch(/-icanon/);
  });

  it('Ctrl-C still quits, after the final sample (a pseudo-terminal of its own)', async () => {
    const ns = await namespace('ctrlc');
    // Python's pty: the view on a terminal it controls; Ctrl-C typed once the first frame is up.
    const script = [
      'import os, pty, sys, time',
      'pid, fd = pty.fork()',
      'if pid == 0: os.execv(sys.argv[1], sys.argv[1:])',
      'out, typed = b"", False',
      'while True:',
      '    try: data = os.read(fd, 65536)',
      '    except OSError: break',
      '    if not data: break',
      '    out += data',
      '    if not typed and b"q or Ctrl-C to quit." in out:',
      '        os.write(fd, b"\\x03"); typed = True',
      'status = os.waitpid(pid, 0)[1]',
      'sys.stdout.write(out.decode(errors="replace").split("\\x1b[?1049l")[-1])',
      'sys.stdout.write("exit=%d typed=%s\\n" % (os.waitstatus_to_exitcode(status), typed))',
    ].join('\n');
    const out = execFileSync(
      'python3',
      ['-c', script, process.execPath, CLI, '--netns', ns.name, '--interval', '200'],
      { encoding: 'utf8', timeout: 20_000 },
    );
    console.info(`after Ctrl-C: ${out.trim()}`);
    expect(out).toMatch(/^exit=0 typed=True$/m);
    expect(out).toMatch(/^\d\d:\d\d:\d\d {2}entries \d+\/\d+ .*\(final, \d+ ms\)\r?$/m);
  });
});
