/**
 * What the kernel remembers of a namespace's table-full drops, beyond what a monitor watched:
 * its `drop` counter since the namespace started (since boot for the host's), from
 * /proc/<task>/net/stat/nf_conntrack of a task inside it, and when it last logged
 * "nf_conntrack: table full, dropping packet" (/dev/kmsg). `advise` puts both in its advice,
 * so an incident a minute before it ran is not "nothing to change".
 *
 * Read-only. The kernel log needs CAP_SYSLOG where dmesg_restrict is 1; each value that cannot
 * be known is null with the reason.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConntrackStat } from '../backends/procfs.js';
import { Deadline, readFileBounded } from './host-file.js';
import { ROOTS, type NamespaceRoots } from './namespaces.js';

export interface KernelDropHistory {
  /**
   * Packets the kernel dropped for a full table in this namespace since it started (the host
   * namespace's: since boot): its `drop` stat summed over CPUs. Per-CPU counters are 32 bits,
   * so beyond 2^32 drops on one CPU this is the count modulo 2^32.
   */
  sinceStart: number | null;
  /**
   * Seconds since the kernel last logged "table full" for this namespace. The message is rate
   * limited (net_ratelimit: 10 per 5 s by default), so during a long incident this is within a
   * few seconds of the last drop.
   */
  lastLoggedSecondsAgo: number | null;
  /** Why each null is null. */
  unavailable: Partial<Record<'sinceStart' | 'lastLoggedSecondsAgo', string>>;
}

/** How long a /proc file may take to read. */
const READ_TIMEOUT_MS = 2000;

/** "nf_conntrack: table full, dropping packet", and since Linux 6.x "... full in netns N, ...". */
const TABLE_FULL = /nf_conntrack: table full(?: in netns (\d+))?, dropping packet/;

/**
 * The kernel's memory of table-full drops in the namespace at `netnsPath` (null: this
 * process's). Call it while a netlink monitor on that namespace runs: its reader thread is a
 * task inside the namespace through which the stat file can be read, even when no process is.
 */
export async function kernelDropHistory(
  netnsPath: string | null,
  roots: NamespaceRoots = ROOTS,
  kmsg = '/dev/kmsg',
): Promise<KernelDropHistory> {
  const unavailable: KernelDropHistory['unavailable'] = {};
  const inode = (await stat(netnsPath ?? join(roots.proc, 'self', 'ns', 'net')).catch(() => null))?.ino ?? null;
  let sinceStart: number | null = null;
  const statFile = netnsPath === null ? join(roots.proc, 'self', 'net', 'stat', 'nf_conntrack') : null;
  const path = statFile ?? (inode === null ? null : await statFileOfTaskIn(inode, roots));
  if (path === null) {
    unavailable.sinceStart =
      inode === null
        ? `${netnsPath} cannot be read`
        : 'no process or thread is in the namespace to read its /proc/net/stat/nf_conntrack through';
  } else {
    try {
      // One row per CPU, ~200 bytes each.
      const table = parseConntrackStat(await readFileBounded(path, 4 << 20, new Deadline(READ_TIMEOUT_MS)));
      if (!table.columns.includes('drop')) unavailable.sinceStart = `${path} has no drop column`;
      else sinceStart = table.rows.reduce((sum, row) => sum + row.drop!, 0);
    } catch (err) {
      unavailable.sinceStart =
        (err as NodeJS.ErrnoException).code === 'ENOENT'
          ? '/proc/net/stat/nf_conntrack does not exist (kernel built without CONFIG_NF_CONNTRACK_PROCFS)'
          : `${path}: ${(err as Error).message}`;
    }
  }
  const logged = inode === null ? null : lastTableFullLog(kmsg, inode);
  let lastLoggedSecondsAgo: number | null = null;
  if (logged === null) unavailable.lastLoggedSecondsAgo = `${netnsPath} cannot be read`;
  else if (typeof logged === 'string') unavailable.lastLoggedSecondsAgo = logged;
  else lastLoggedSecondsAgo = logged.secondsAgo;
  return { sinceStart, lastLoggedSecondsAgo, unavailable };
}

/** The stat file as a task in namespace `inode` sees it: this process's threads first. */
async function statFileOfTaskIn(inode: number, roots: NamespaceRoots): Promise<string | null> {
  const self = join(roots.proc, 'self', 'task');
  for (const tid of await readdir(self).catch(() => [] as string[])) {
    const ns = await stat(join(self, tid, 'ns', 'net')).catch(() => null);
    if (ns?.ino === inode) return join(self, tid, 'net', 'stat', 'nf_conntrack');
  }
  for (const pid of (await readdir(roots.proc).catch(() => [] as string[])).filter((e) => /^\d+$/.test(e))) {
    const ns = await stat(join(roots.proc, pid, 'ns', 'net')).catch(() => null);
    if (ns?.ino === inode) return join(roots.proc, pid, 'net', 'stat', 'nf_conntrack');
  }
  return null;
}

/**
 * A /dev/kmsg record if it is a "table full" line: its time (microseconds since boot) and the
 * namespace inode it names, null when it names none (kernels before 6.x). Null otherwise.
 */
export function tableFullRecord(record: string): { usec: number; netns: number | null } | null {
  const match = TABLE_FULL.exec(record);
  if (!match) return null;
  const usec = Number(record.split(';', 1)[0]!.split(',')[2]);
  if (!Number.isFinite(usec)) return null;
  return { usec, netns: match[1] === undefined ? null : Number(match[1]) };
}

/**
 * The latest "table full" record of /dev/kmsg for namespace `inode`: its age in seconds, or why
 * it cannot be known. Records are `PRI,SEQ,USEC,FLAGS;MESSAGE` with USEC the kernel's clock
 * since boot, the one CLOCK_MONOTONIC reads. A line is this namespace's only when it names it
 * ("table full in netns N"): older kernels write the same line for every namespace, so theirs
 * are nobody's, the host's included. Reads the ring buffer once, without blocking.
 */
export function lastTableFullLog(kmsg: string, inode: number): { secondsAgo: number } | string {
  let fd: number;
  try {
    fd = openSync(kmsg, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EPERM' || code === 'EACCES'
      ? `the kernel log (${kmsg}) is not readable: it needs CAP_SYSLOG while kernel.dmesg_restrict is 1`
      : `the kernel log (${kmsg}) cannot be read: ${code}`;
  }
  let last: number | null = null;
  let unnamed = false;
  try {
    const buffer = Buffer.alloc(8192); // one record per read; the kernel caps them below this
    for (let records = 0; records < 1_000_000; records++) {
      let n: number;
      try {
        n = readSync(fd, buffer, 0, buffer.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') continue; // records overwritten while reading: go on from the next
        if (code === 'EAGAIN') break; // the end of the buffer
        throw err;
      }
      if (n === 0) break;
      const line = tableFullRecord(buffer.toString('utf8', 0, n));
      if (line === null) continue;
      if (line.netns === null) unnamed = true;
      else if (line.netns === inode) last = line.usec;
    }
  } finally {
    closeSync(fd);
  }
  if (last !== null) return { secondsAgo: Number(process.hrtime.bigint() / 1000n - BigInt(last)) / 1e6 };
  if (unnamed) return "this kernel's 'table full' log line does not name the namespace";
  return "no 'table full' line for this namespace in the kernel log (it keeps only the latest messages)";
}
