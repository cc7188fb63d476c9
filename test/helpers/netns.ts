/**
 * Test namespaces: created with `ip netns`, given an nft `ct state` rule so that conntrack
 * runs in them, and always removed. Ground truth comes from the kernel's own interfaces
 * inside the namespace: nf_conntrack_count, /proc/net/stat/nf_conntrack, and conntrack-tools.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { uniqueName } from './unique-name.mjs';

const run = promisify(execFile);
const TRAFFIC = join(__dirname, 'traffic.mjs');

const NFT_RULES = `table inet ctmon_test {
  chain out { type filter hook output priority 0; ct state new counter; }
  chain in { type filter hook input priority 0; ct state established,related counter; }
}`;

/** Whose sockets: a pid, or a function that returns the pids (found by command line, say). */
type Owner = number | (() => number[]);

/** Inodes of the sockets the processes hold (socket:[INODE] links in /proc/PID/fd). */
function socketInodes(pids: number[]): Set<number> {
  const inodes = new Set<number>();
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // it ended
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(Number(m[1]));
      } catch {
        // closed meanwhile
      }
    }
  }
  return inodes;
}

/** Pids of the processes whose command line contains `text` (a unique namespace name, say). */
export function pidsWith(text: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);
}

// Namespace names only: no interface name derives from them, so the 15-character limit of
// interface names (IFNAMSIZ) does not apply.
export { uniqueName };

export class TestNamespace {
  private constructor(
    readonly name: string,
    readonly path = `/var/run/netns/${name}`,
    /** For a namespace that only a process holds (unnamed): that process. */
    private readonly holder: ChildProcess | null = null,
  ) {}

  /**
   * A namespace with no name, held by a process alone (as a container's is): `unshare -n`
   * running sleep. `path` is /proc/PID/ns/net; remove() ends the process, which frees it.
   */
  static async unnamed(label: string): Promise<TestNamespace & { pid: number }> {
    const holder = spawn('unshare', ['-n', 'sleep', 'infinity'], { stdio: 'ignore' });
    const host = statSync('/proc/self/ns/net').ino;
    const path = `/proc/${holder.pid}/ns/net`;
    for (let i = 0; statSync(path).ino === host; i++) {
      if (i > 200) throw new Error('unshare -n did not enter a new namespace');
      await new Promise((r) => setTimeout(r, 10));
    }
    const ns = Object.assign(new TestNamespace(uniqueName(label), path, holder), { pid: holder.pid! });
    try {
      await ns.exec('ip', ['link', 'set', 'lo', 'up']);
      await ns.exec('nft', ['-f', '-'], NFT_RULES);
    } catch (err) {
      await ns.remove();
      throw err;
    }
    return ns;
  }

  /** The command that runs a program inside the namespace. */
  private enter(): string[] {
    return this.holder ? ['nsenter', '-t', String(this.holder.pid), '-n'] : ['ip', 'netns', 'exec', this.name];
  }

  static async create(label: string): Promise<TestNamespace> {
    return TestNamespace.named(uniqueName(label));
  }

  /** A new namespace under the name of this one, which is removed first (ip netns del, add). */
  async recreate(): Promise<TestNamespace> {
    await this.remove();
    return TestNamespace.named(this.name);
  }

  private static async named(name: string): Promise<TestNamespace> {
    const ns = new TestNamespace(name);
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
    const [command, ...prefix] = this.enter();
    const child = run(command!, [...prefix, file, ...args], { maxBuffer: 64 << 20 });
    if (input !== undefined) {
      child.child.stdin!.end(input);
    }
    return (await child).stdout;
  }

  /** Traffic from test/helpers/traffic.mjs; returns its result line. */
  async traffic(
    mode: 'tcp' | 'udp' | 'udp-echo' | 'udp-stream' | 'flood' | 'paced',
    count: number,
    spreadMs?: number,
  ): Promise<{
    ok: number;
    failed: number;
    perSecond?: number;
    errors?: Record<string, number>;
    port?: number;
    failedSourcePorts?: number[];
  }> {
    const args = [TRAFFIC, mode, String(count), ...(spreadMs === undefined ? [] : [String(spreadMs)])];
    return JSON.parse(await this.exec(process.execPath, args));
  }

  /**
   * N ICMP echo flows to 127.0.0.1 (request and reply: NEW, then an UPDATE), from ping sockets
   * (python3: Node has none), each with its own id. The namespace's ping_group_range is opened
   * for it.
   */
  async icmpEcho(count: number): Promise<number> {
    await this.exec('sysctl', ['-q', '-w', 'net.ipv4.ping_group_range=0 0']);
    const script = [
      'import socket, sys',
      'socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) for _ in range(int(sys.argv[1]))]',
      'for s in socks:',
      '    s.settimeout(2); s.sendto(bytes([8, 0, 0, 0, 0, 0, 0, 1]) + b"ctmon", ("127.0.0.1", 0)); s.recv(64)',
      'print(len(socks))',
    ].join('\n');
    return Number(await this.exec('python3', ['-c', script, String(count)]));
  }

  /** Connections the namespace's `ct state new counter` rule has counted: entries created. */
  async newFlows(): Promise<number> {
    const text = await this.exec('nft', ['list', 'chain', 'inet', 'ctmon_test', 'out']);
    return Number(/counter packets (\d+)/.exec(text)![1]);
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

  /**
   * Drops the kernel counted (/proc/net/netlink) on each NETLINK_NETFILTER socket with groups
   * (an event listener) in the namespace that `owner` holds: this process unless told, or
   * the processes a function returns. Others may listen too: another monitor, a node-wide
   * one watching every namespace on the host, conntrack -E.
   */
  async eventSocketDrops(owner: Owner = process.pid): Promise<number[]> {
    const text = await this.exec('cat', ['/proc/net/netlink']);
    const held = socketInodes(typeof owner === 'number' ? [owner] : owner());
    const [header, ...rows] = text.trim().split('\n');
    const cols = header!.trim().split(/\s+/);
    return rows
      .map((r) => r.trim().split(/\s+/))
      .filter((r) => r[cols.indexOf('Eth')] === '12' && Number.parseInt(r[cols.indexOf('Groups')]!, 16) !== 0)
      .filter((r) => held.has(Number(r[cols.indexOf('Inode')])))
      .map((r) => Number(r[cols.indexOf('Drops')]));
  }

  /**
   * Resolves once `owner` (a process, or the processes a function returns) listens to the
   * namespace's ctnetlink events (a monitor it started has subscribed), plus a little time for
   * its first stats reading.
   */
  async waitForListener(owner: Owner, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.eventSocketDrops(owner)).length === 0) {
      if (Date.now() > deadline)
        throw new Error(`no conntrack event listener of ${String(owner)} appeared in ${this.name}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 150));
  }

  /** Starts a long-running program in the namespace; resolves with it once it printed a line. */
  async start(file: string, args: string[]): Promise<{ child: ChildProcess; firstLine: string }> {
    const [command, ...prefix] = this.enter();
    const child = spawn(command!, [...prefix, file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
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

  /**
   * Gives the namespace a unique id in the host namespace (`ip netns set`; the test's own
   * setting: the library never makes one). The kernel lists it (`ip netns list-id`) for as long
   * as the namespace lives, whatever holds it, and drops it when the namespace is freed: see
   * nsidListed().
   */
  async setNsid(): Promise<number> {
    const id = 100_000 + Math.floor(Math.random() * 1_000_000_000);
    await run('ip', ['netns', 'set', this.name, String(id)]);
    return id;
  }

  async remove(): Promise<void> {
    if (this.holder) {
      const holder = this.holder;
      if (holder.exitCode === null && holder.signalCode === null) {
        await new Promise((resolve) => {
          holder.once('exit', resolve);
          holder.kill('SIGKILL');
        });
      }
      return;
    }
    await run('ip', ['netns', 'del', this.name]).catch(() => {});
  }
}

/**
 * Creates test namespaces until the kernel gives one the inode `inode`, at most `attempts`.
 * Namespace inodes come from an IDA, lowest free first, so a freed one comes back at once or
 * after the lower free ones are taken: the others are kept until the end, then removed.
 * Resolves with that namespace, or null. Getting it proves that the namespace which had the
 * inode was freed: the kernel never gives a live namespace's inode to another.
 */
export async function namespaceWithInode(label: string, inode: number, attempts = 40): Promise<TestNamespace | null> {
  const others: TestNamespace[] = [];
  try {
    for (let i = 0; i < attempts; i++) {
      const ns = await TestNamespace.create(label);
      if (statSync(ns.path).ino === inode) return ns;
      others.push(ns);
      await new Promise((r) => setTimeout(r, 20)); // the kernel frees namespaces from a workqueue
    }
    return null;
  } finally {
    for (const ns of others) await ns.remove();
  }
}

/** Whether the kernel still lists namespace id `nsid` in the host namespace: the namespace lives. */
export async function nsidListed(nsid: number): Promise<boolean> {
  const { stdout } = await run('ip', ['netns', 'list-id']);
  return stdout.split('\n').some((line) => line.startsWith(`nsid ${nsid} `) || line === `nsid ${nsid}`);
}

/** Resolves true once the kernel no longer lists `nsid` (the namespace was freed), false after `timeoutMs`. */
export async function nsidFreed(nsid: number, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await nsidListed(nsid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50)); // namespaces are freed from a workqueue
  }
  return true;
}
