/**
 * Files the host controls, read as src/host/host-file.ts reads them: real FIFOs (with and
 * without a writer), /dev/zero, a socket, a directory, symlinks to them, files over the bound
 * and /proc files (whose size says 0). Each is refused or read at once: nothing waits for a
 * writer, nothing reads without end. Then the container runtimes' files (SandboxFinder) with
 * FIFOs and devices where containerd's init.pid, CRI-O's pidfile and config.json belong.
 * Needs no privileges; the node-wide monitor and the CLI on such a tree are in
 * test/integration/hostile-files.test.ts.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Deadline, openRegularFile, readFileBounded, readFileBoundedSync } from '../dist/host/host-file.js';
import { SandboxFinder, type Sandbox } from '../dist/host/pods.js';
import { runtimeTree, SANDBOXES, type RuntimeTree } from './helpers/runtime';

const dir = mkdtempSync(join(tmpdir(), 'ctmon-hostfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const mkfifo = (path: string) => spawnSync('mkfifo', [path], { stdio: 'inherit' });

const fifo = join(dir, 'fifo');
mkfifo(fifo);
const socketPath = join(dir, 'socket');
const server = createServer().listen(socketPath);
afterAll(() => new Promise<void>((r) => server.close(() => r())));
mkdirSync(join(dir, 'directory'));
symlinkSync('/dev/zero', join(dir, 'zero-link'));
symlinkSync(fifo, join(dir, 'fifo-link'));
writeFileSync(join(dir, 'small'), '4242\n');
writeFileSync(join(dir, 'large'), 'x'.repeat(10_000));

const SOON_MS = 500;
const timed = async <T>(
  work: () => Promise<T> | T,
): Promise<{ ms: number; value?: T; error?: NodeJS.ErrnoException }> => {
  const started = performance.now();
  try {
    const value = await work();
    return { ms: performance.now() - started, value };
  } catch (error) {
    return { ms: performance.now() - started, error: error as NodeJS.ErrnoException };
  }
};

describe('reading a host-controlled path', () => {
  it.each([
    ['a FIFO without a writer', fifo, 'a FIFO'],
    ['a symlink to a FIFO', join(dir, 'fifo-link'), 'a FIFO'],
    ['/dev/zero', '/dev/zero', 'a character device'],
    ['a symlink to /dev/zero', join(dir, 'zero-link'), 'a character device'],
    ['a directory', join(dir, 'directory'), 'a directory'],
  ])('%s is refused at once, saying what it is (both readers)', async (_name, path, kind) => {
    for (const read of [() => readFileBoundedSync(path, 64), () => readFileBounded(path, 64, new Deadline(5000))]) {
      const r = await timed(read);
      expect(r.error?.code).toBe('EINVAL');
      expect(r.error?.message).toBe(`${path} is ${kind}, not a regular file`);
      expect(r.ms).toBeLessThan(SOON_MS);
    }
  });

  it('a socket cannot be opened (ENXIO), a missing file is ENOENT: both at once', async () => {
    expect((await timed(() => readFileBoundedSync(socketPath, 64))).error?.code).toBe('ENXIO');
    expect((await timed(() => readFileBounded(socketPath, 64, new Deadline(5000)))).error?.code).toBe('ENXIO');
    expect((await timed(() => readFileBoundedSync(join(dir, 'missing'), 64))).error?.code).toBe('ENOENT');
  });

  it('a FIFO a writer keeps feeding is refused too, not read', async () => {
    const writer = spawn('sh', ['-c', `exec yes > ${fifo}`]);
    try {
      await new Promise((r) => setTimeout(r, 100));
      const r = await timed(() => readFileBounded(fifo, 64, new Deadline(5000)));
      expect(r.error?.code).toBe('EINVAL');
      expect(r.ms).toBeLessThan(SOON_MS);
    } finally {
      writer.kill();
    }
  });

  it('reads a regular file up to the bound, and refuses one larger (EFBIG)', async () => {
    expect(readFileBoundedSync(join(dir, 'small'), 64)).toBe('4242\n');
    expect(await readFileBounded(join(dir, 'small'), 5, new Deadline(5000))).toBe('4242\n');
    expect((await timed(() => readFileBoundedSync(join(dir, 'small'), 4))).error?.code).toBe('EFBIG');
    expect((await timed(() => readFileBounded(join(dir, 'large'), 9999, new Deadline(5000)))).error?.code).toBe(
      'EFBIG',
    );
    expect(readFileBoundedSync(join(dir, 'large'), 10_000)).toHaveLength(10_000);
  });

  it('reads /proc files, whose size says 0, whole', async () => {
    const status = readFileBoundedSync('/proc/self/status', 1 << 20);
    expect(status).toMatch(/^Name:/);
    expect(status).toMatch(/\nVmRSS:/);
    expect(await readFileBounded('/proc/self/mountinfo', 64 << 20, new Deadline(5000))).toMatch(/ - /);
    expect((await timed(() => readFileBoundedSync('/proc/self/status', 100))).error?.code).toBe('EFBIG');
  });

  it('openRegularFile hands back the descriptor of a regular file only', () => {
    const { fd, stats } = openRegularFile(join(dir, 'small'));
    expect(stats.size).toBe(5);
    closeSync(fd);
    expect(() => openRegularFile(fifo)).toThrow(/is a FIFO, not a regular file/);
  });

  it('control: a plain open() of the FIFO waits for a writer for as long as there is none', () => {
    const r = spawnSync(process.execPath, ['-e', `require('fs').openSync(${JSON.stringify(fifo)}, 'r')`], {
      timeout: 1000,
    });
    expect(r.signal).toBe('SIGTERM'); // still in open() when killed
  });
});

describe("the container runtimes' files as FIFOs and devices", () => {
  let tree: RuntimeTree | null = null;
  afterEach(() => {
    tree?.remove();
    tree = null;
  });
  const byName = (s: Sandbox) => `${s.pod.name} pid ${s.pid}`;

  it("a FIFO as containerd's init.pid or CRI-O's pidfile: the pod is found at once, its pid unknown", async () => {
    tree = runtimeTree();
    tree.setPid('batch', 5150);
    for (const name of ['web', 'coredns'] as const) {
      const path = join(tree.root, SANDBOXES[name].dir, SANDBOXES[name].pidFile);
      unlinkSync(path);
      mkfifo(path);
    }
    const kubeProxyPid = join(tree.root, SANDBOXES.kubeProxy.dir, SANDBOXES.kubeProxy.pidFile);
    unlinkSync(kubeProxyPid);
    symlinkSync('/dev/zero', kubeProxyPid);
    const finder = new SandboxFinder({ containerd: tree.containerd, crio: tree.crio });
    const r = await timed(() => finder.find());
    console.info(`FIFO pid files: find() took ${r.ms.toFixed(1)} ms: ${r.value?.map(byName).sort().join(', ')}`);
    expect(r.ms).toBeLessThan(SOON_MS);
    expect(r.value!.map(byName).sort()).toEqual([
      'batch-job-q8w7e pid 5150',
      'coredns-5d78c9869d-4xk2p pid null',
      'kube-proxy-h7k2m pid null',
      'web-7d9f8b6c5-x2x9q pid null',
    ]);
    expect(finder.unreadable).toBeNull();
  });

  it('a FIFO, /dev/zero or a directory as config.json names no pod, and holds nothing up', async () => {
    tree = runtimeTree();
    const spec = (name: keyof typeof SANDBOXES) => join(tree!.root, SANDBOXES[name].dir, 'config.json');
    unlinkSync(spec('web'));
    mkfifo(spec('web'));
    unlinkSync(spec('coredns'));
    symlinkSync('/dev/zero', spec('coredns'));
    unlinkSync(spec('batch'));
    mkdirSync(spec('batch'));
    const finder = new SandboxFinder({ containerd: tree.containerd, crio: tree.crio });
    const r = await timed(() => finder.find());
    expect(r.ms).toBeLessThan(SOON_MS);
    expect(r.value!.map((s) => s.pod.name)).toEqual(['kube-proxy-h7k2m']);
  });
});
