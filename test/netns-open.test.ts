/**
 * A `netns` path whose open() could block or that is no network namespace: a FIFO
 * used to freeze start() for ever (the reader thread sat in open(), the JS thread waited for
 * it). Both backends now refuse every such path at once with one line, and start() never waits
 * on the reader thread without a bound. Needs no privileges and opens no netlink socket: each
 * path is refused before anything subscribes to events.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConntrackError, ConntrackMonitor } from '../dist/index.js';
import { binding } from './helpers/binding';
import { CLI } from './helpers/cli';

let dir: string;
let socketServer: Server;
const paths: Record<string, string> = {};
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ctmon-netns-'));
  paths.FIFO = join(dir, 'fifo');
  execFileSync('mkfifo', [paths.FIFO]);
  paths.socket = join(dir, 'socket');
  socketServer = createServer();
  await new Promise<void>((resolve) => socketServer.listen(paths.socket!, resolve));
  paths.directory = dir;
  paths['character device'] = '/dev/zero';
  paths['regular file'] = join(dir, 'file');
  writeFileSync(paths['regular file'], 'not a namespace\n');
});
afterAll(() => {
  socketServer.close();
  rmSync(dir, { recursive: true, force: true });
});

const KINDS = ['FIFO', 'socket', 'directory', 'character device', 'regular file'] as const;
const article = (kind: string) => (kind === 'FIFO' ? 'a' : /^[aeiou]/.test(kind) ? 'an' : 'a');

describe('a netns path that is not a network namespace', () => {
  it.each(KINDS.flatMap((kind) => (['netlink', 'proc'] as const).map((backend) => [kind, backend] as const)))(
    '%s, %s backend: start() rejects at once with EINVAL and says what the file is',
    async (kind, backend) => {
      const monitor = new ConntrackMonitor({ netns: paths[kind]!, backend });
      const started = performance.now();
      const error = await monitor.start().then(
        () => null,
        (e: unknown) => e,
      );
      const ms = performance.now() - started;
      expect(error).toBeInstanceOf(ConntrackError);
      expect(error).toMatchObject({ code: 'EINVAL', hint: 'pass /var/run/netns/NAME or /proc/PID/ns/net' });
      expect((error as Error).message).toBe(
        `${paths[kind]} is ${article(kind)} ${kind}, not a network namespace (pass /var/run/netns/NAME or /proc/PID/ns/net)`,
      );
      expect(ms).toBeLessThan(1000);
      await monitor.stop();
    },
  );

  it('another kind of namespace is named as such (netlink backend)', async () => {
    await expect(
      new ConntrackMonitor({ netns: '/proc/self/ns/mnt', backend: 'netlink' }).start(),
    ).rejects.toMatchObject({
      code: 'EINVAL',
      syscall: 'ioctl',
      message: expect.stringMatching(/^\/proc\/self\/ns\/mnt is a mount namespace/),
    });
  });

  it.each(KINDS)('the CLI given a %s prints one line and exits 1 at once', async (kind) => {
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, '--netns', paths[kind]!, '--duration', '1']);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000); // the old behaviour: never exits
    const code = await new Promise((resolve) => child.on('exit', resolve));
    clearTimeout(killer);
    const ms = performance.now() - started;
    console.info(
      `--netns ${kind}: exit ${code} after ${ms.toFixed(0)} ms (Node's start-up included): ${stderr.trim()}`,
    );
    expect(code).toBe(1);
    expect(stderr).toBe(
      `conntrack-monitor: cannot start: ${paths[kind]} is ${article(kind)} ${kind}, not a network namespace (pass /var/run/netns/NAME or /proc/PID/ns/net)\n`,
    );
    expect(ms).toBeLessThan(3000);
  });
});

describe('start() waits on the reader thread only so long', () => {
  const threads = () => readdirSync('/proc/self/task').length;

  it('gives up on a namespace open that does not return, and the abandoned thread exits cleanly later', async () => {
    const before = threads();
    // The reader thread sleeps 3 s before its open(), as on a filesystem that does not answer.
    const previous = binding._injectFaults({ openNamespaceDelayMs: 3000 });
    try {
      const monitor = new ConntrackMonitor({ netns: '/proc/self/ns/net', backend: 'netlink' });
      const started = performance.now();
      const error = await monitor.start().then(
        () => null,
        (e: unknown) => e,
      );
      const ms = performance.now() - started;
      expect(error).toBeInstanceOf(ConntrackError);
      expect(error).toMatchObject({
        code: 'ETIMEDOUT',
        syscall: 'open',
        message:
          'open network namespace /proc/self/ns/net: no answer within 2 s (is /proc/self/ns/net on a filesystem that does not answer?)',
      });
      expect(ms).toBeGreaterThan(1900);
      expect(ms).toBeLessThan(2500);
      expect(threads()).toBe(before + 1); // the abandoned reader, still asleep
      await monitor.stop();
    } finally {
      binding._injectFaults(previous);
    }
    // The native monitor is gone (collected); the thread wakes, opens the namespace, sees that
    // start() gave up, and exits without touching it.
    (globalThis as { gc?: () => void }).gc?.();
    const deadline = Date.now() + 3000;
    while (threads() > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(threads()).toBe(before);
  });
});
