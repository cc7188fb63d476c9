/**
 * Test namespaces: created with `ip netns`, given an nft `ct state` rule so that conntrack
 * runs in them, and always removed. Ground truth comes from the kernel's own interfaces
 * inside the namespace: nf_conntrack_count, /proc/net/stat/nf_conntrack, and conntrack-tools.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const TRAFFIC = join(__dirname, 'traffic.mjs');

const NFT_RULES = `table inet ctmon_test {
  chain out { type filter hook output priority 0; ct state new counter; }
  chain in { type filter hook input priority 0; ct state established,related counter; }
}`;

export class TestNamespace {
  readonly path: string;
  private constructor(readonly name: string) {
    this.path = `/var/run/netns/${name}`;
  }

  static async create(label: string): Promise<TestNamespace> {
    const ns = new TestNamespace(`ctmon-${label}-${process.pid}`);
    await run('ip', ['netns', 'add', ns.name]);
    try {
      await run('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
      await ns.exec('nft', ['-f', '-'], NFT_RULES);
    } catch (err) {
      await ns.remove();
      throw err;
    }
    return ns;
  }

  /** Runs a program inside the namespace (no shell); optional stdin text. */
  async exec(file: string, args: string[], input?: string): Promise<string> {
    const child = run('ip', ['netns', 'exec', this.name, file, ...args], { maxBuffer: 64 << 20 });
    if (input !== undefined) {
      child.child.stdin!.end(input);
    }
    return (await child).stdout;
  }

  /** Traffic from test/helpers/traffic.mjs; returns its result line. */
  async traffic(
    mode: 'tcp' | 'udp' | 'udp-echo',
    count: number,
  ): Promise<{
    ok: number;
    failed: number;
    errors?: Record<string, number>;
    port?: number;
    failedSourcePorts?: number[];
  }> {
    return JSON.parse(await this.exec(process.execPath, [TRAFFIC, mode, String(count)]));
  }

  /** The kernel's entry count for this namespace. */
  async count(): Promise<number> {
    return Number((await this.exec('cat', ['/proc/sys/net/netfilter/nf_conntrack_count'])).trim());
  }

  /** Entries the kernel created in this namespace: packets the `ct state new counter` rule counted. */
  async nftNewCount(): Promise<number> {
    const out = await this.exec('nft', ['list', 'chain', 'inet', 'ctmon_test', 'out']);
    return Number(/counter packets (\d+)/.exec(out)![1]);
  }

  /** conntrack-tools' count (`conntrack -C`), the reference reader. */
  async conntrackToolsCount(): Promise<number> {
    return Number((await this.exec('conntrack', ['-C'])).trim());
  }

  /** /proc/net/stat/nf_conntrack of this namespace, summed over CPU rows, by column name. */
  async kernelStats(): Promise<Record<string, number>> {
    const text = await this.exec('cat', ['/proc/net/stat/nf_conntrack']);
    const [header, ...rows] = text.trim().split('\n');
    const names = header!.trim().split(/\s+/);
    const sums: Record<string, number> = {};
    for (const row of rows) {
      row
        .trim()
        .split(/\s+/)
        .forEach((hex, i) => {
          sums[names[i]!] = (sums[names[i]!] ?? 0) + parseInt(hex, 16);
        });
    }
    return sums;
  }

  /**
   * The kernel's listing of the namespace's table by conntrack-tools (`conntrack -L`, both
   * families): counts by protocol and TCP state, in the sample's naming. Listing also makes
   * the kernel reap expired entries it meets, as any dump does.
   */
  async kernelListing(): Promise<{
    protocols: Record<string, number>;
    tcpStates: Record<string, number>;
    entries: number;
  }> {
    const protocols: Record<string, number> = { tcp: 0, udp: 0, icmp: 0, other: 0 };
    const tcpStates: Record<string, number> = {};
    let entries = 0;
    for (const family of ['ipv4', 'ipv6']) {
      const out = await this.exec('conntrack', ['-L', '-f', family]);
      for (const line of out.split('\n').filter((l) => l.trim())) {
        const [proto, , , state] = line.trim().split(/\s+/);
        entries++;
        const cls =
          proto === 'tcp' || proto === 'udp' ? proto : proto === 'icmp' || proto === 'ipv6-icmp' ? 'icmp' : 'other';
        protocols[cls]!++;
        if (proto === 'tcp') tcpStates[state!] = (tcpStates[state!] ?? 0) + 1;
      }
    }
    return { protocols, tcpStates, entries };
  }

  /** Sets a sysctl of this namespace (test tooling; the library never writes one). */
  async sysctl(name: string, value: number): Promise<void> {
    await this.exec('sysctl', ['-q', '-w', `${name}=${value}`]);
  }

  /** Drops counted by the kernel for NETLINK_NETFILTER sockets with groups (/proc/net/netlink). */
  async eventSocketDrops(): Promise<number[]> {
    const text = await this.exec('cat', ['/proc/net/netlink']);
    const [header, ...rows] = text.trim().split('\n');
    const cols = header!.trim().split(/\s+/);
    return rows
      .map((r) => r.trim().split(/\s+/))
      .filter((r) => r[cols.indexOf('Eth')] === '12' && Number.parseInt(r[cols.indexOf('Groups')]!, 16) !== 0)
      .map((r) => Number(r[cols.indexOf('Drops')]));
  }

  /**
   * Resolves once a ctnetlink event listener exists in the namespace (a monitor started by a
   * child process has subscribed), plus a little time for its first stats reading.
   */
  async waitForListener(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.eventSocketDrops()).length === 0) {
      if (Date.now() > deadline) throw new Error(`no conntrack event listener appeared in ${this.name}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 150));
  }

  /** Starts a long-running program in the namespace; resolves with it once it printed a line. */
  async start(file: string, args: string[]): Promise<{ child: ChildProcess; firstLine: string }> {
    const child = spawn('ip', ['netns', 'exec', this.name, file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const firstLine = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.on('exit', (code) => reject(new Error(`${file} exited with ${code} before printing`)));
    });
    return { child, firstLine };
  }

  /** Holds E established and C half-closed (CLOSE_WAIT) TCP connections until release(). */
  async hold(established: number, halfClosed: number): Promise<{ release: () => Promise<void> }> {
    const { child } = await this.start(process.execPath, [TRAFFIC, 'hold', String(established), String(halfClosed)]);
    return {
      release: () =>
        new Promise((resolve) => {
          child.on('exit', () => resolve());
          child.stdin!.end();
        }),
    };
  }

  async remove(): Promise<void> {
    await run('ip', ['netns', 'del', this.name]).catch(() => {});
  }
}

const MAX_PATH = '/proc/sys/net/netfilter/nf_conntrack_max';

/**
 * Runs `body` with the global nf_conntrack_max lowered to `max`, restoring the old value in
 * finally. Only the test process changes it; the library never writes a sysctl.
 */
export async function withConntrackMax<T>(max: number, body: () => Promise<T>): Promise<T> {
  const saved = readFileSync(MAX_PATH, 'utf8').trim();
  writeFileSync(MAX_PATH, String(max));
  try {
    return await body();
  } finally {
    writeFileSync(MAX_PATH, saved);
  }
}
