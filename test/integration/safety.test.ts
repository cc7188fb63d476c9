/**
 * The library only reads: after every subcommand has run against a namespace, the kernel's
 * conntrack table (conntrack -L: same entries, same states) and the netfilter sysctls of the
 * namespace and of the host are exactly as before. serve binds to loopback by default, and no
 * source file of the library or the addon can start a process.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { CLI, runCli, servingUrl } from '../helpers/cli';
import { canRunIntegration } from '../helpers/gate';
import type { TestNamespace } from '../helpers/netns';
import { namespace } from '../helpers/scope';

/** Entries by identity and state; timeouts tick down, so they are left out. */
async function table(ns: TestNamespace): Promise<string[]> {
  const out = await ns.exec('conntrack', ['-L']);
  return out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.replace(/^(\S+\s+\d+)\s+\d+/, '$1'))
    .sort();
}

async function sysctls(ns: TestNamespace): Promise<Record<string, string>> {
  const names = readdirSync('/proc/sys/net/netfilter');
  const inside = await ns.exec('sh', ['-c', 'cd /proc/sys/net/netfilter && grep -r . . 2>/dev/null || true']);
  const host = Object.fromEntries(
    names.map((n) => {
      try {
        return [`host:${n}`, readFileSync(`/proc/sys/net/netfilter/${n}`, 'utf8').trim()];
      } catch {
        return [`host:${n}`, 'unreadable'];
      }
    }),
  );
  return { ...host, netns: inside.split('\n').sort().join('\n') };
}

describe.skipIf(!canRunIntegration)('read-only', () => {
  it('leaves the conntrack table and every netfilter sysctl unchanged after all subcommands', async () => {
    const ns = await namespace('safety');
    await ns.traffic('tcp', 8); // TIME_WAIT entries that outlive the test
    const before = { table: await table(ns), sysctls: await sysctls(ns) };
    expect(before.table).toHaveLength(8);
    const common = ['--netns', ns.name, '--interval', '200'];
    const runs = [
      await runCli([...common, '--duration', '0.5']),
      await runCli([...common, '--json', '--duration', '0.5']),
      await runCli(['check', ...common, '--observe', '0.5']),
      await runCli(['advise', ...common, '--observe', '1', '--json']),
      await runCli(['top', '--netns', ns.name, '--json']),
      await runCli(['--backend', 'proc', '--interval', '200', '--duration', '0.5']), // /proc of this host
      await runCli([
        'record',
        ...common,
        '--out',
        '/dev/null',
        '--',
        process.execPath,
        '-e',
        'setTimeout(() => {}, 500)',
      ]),
    ];
    const serve = spawn(process.execPath, [CLI, 'serve', ...common, '--listen', '127.0.0.1:0']);
    const url = await servingUrl(serve);
    expect((await fetch(url)).status).toBe(200);
    serve.kill('SIGTERM');
    const serveCode = await new Promise((r) => serve.on('exit', r));
    const after = { table: await table(ns), sysctls: await sysctls(ns) };
    for (const run of runs) expect(run.code).toBe(0);
    expect(serveCode).toBe(0);
    expect(after.table).toEqual(before.table);
    expect(after.sysctls).toEqual(before.sysctls);
  });

  it('serve listens on 127.0.0.1:9465 unless told otherwise', async () => {
    // In a namespace of its own, whose loopback no one else uses: on the host, someone else
    // may be listening on 9465 already (another serve, another run of these tests).
    const ns = await namespace('loopback');
    const serve = spawn('ip', ['netns', 'exec', ns.name, process.execPath, CLI, 'serve']);
    try {
      const line = await new Promise<string>((resolve) => {
        let err = '';
        serve.stderr.on('data', (d) => {
          err += d;
          if (err.includes('\n')) resolve(err.trim());
        });
      });
      expect(line).toBe('conntrack-monitor: serving http://127.0.0.1:9465/metrics');
      // The kernel's own view of the socket: bound to 127.0.0.1, not to any address.
      const listening = (await ns.exec('cat', ['/proc/net/tcp', '/proc/net/tcp6']))
        .split('\n')
        .filter((l) => / 0A /.test(l) && /:24F9 /.test(l));
      expect(listening.map((l) => l.trim().split(/\s+/)[1])).toEqual(['0100007F:24F9']);
    } finally {
      serve.kill('SIGTERM');
      await new Promise((r) => serve.on('exit', r));
    }
  });
});

describe('no process spawning', () => {
  const root = join(__dirname, '..', '..');
  /** The one file that starts a process: `record` runs the user's own command. */
  const RECORD = join(root, 'src', 'cli', 'commands', 'record.ts');

  it('the library and the addon never start a process or a shell; only `record` runs a command', () => {
    const files = (dir: string) =>
      readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name));
    const spawning = files('src').filter((file) =>
      /child_process|\bexecSync\b|\bspawn\(/.test(readFileSync(file, 'utf8')),
    );
    expect(spawning).toEqual([RECORD]);
    for (const file of files('native')) {
      expect(readFileSync(file, 'utf8'), file).not.toMatch(
        /\b(system|popen|fork|vfork|posix_spawnp?|exec[lv]p?e?)\s*\(/,
      );
    }
  });

  it('`record` runs the command from its argv with spawn, never through a shell', () => {
    const text = readFileSync(RECORD, 'utf8');
    expect(text).toMatch(/^import \{ spawn, type ChildProcess \} from 'node:child_process';$/m); // nothing else from it
    expect(text.match(/\bspawn\(/g)).toHaveLength(1);
    expect(text).toMatch(/spawn\(command\[0\]!, command\.slice\(1\), \{ stdio: 'inherit', shell: false \}\)/);
    expect(text).not.toMatch(/shell:\s*true/);
    expect(text).not.toMatch(/\/bin\/(ba|da)?sh\b|['"]sh['"]/);
    expect(text).not.toMatch(/\b(exec|execSync|execFile|execFileSync|spawnSync|fork)\b/);
  });
});
