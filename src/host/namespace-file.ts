/**
 * The network namespace a path names (`/var/run/netns/NAME`, `/proc/PID/ns/net`), by its nsfs
 * inode, and whether anything on the host still holds a namespace once no path names it: the
 * monitor's own sockets keep a deleted namespace alive, so it has to notice by itself that the
 * namespace it watches is gone (ConntrackMonitor, once per interval).
 *
 * Read-only and bounded: a stat per check, and a walk of /proc/self/mountinfo and of
 * /proc/PID/ns/net only once the path no longer names the namespace.
 */
import { statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConntrackError } from '../errors.js';
import { Deadline, fileKind, readFileBounded } from './host-file.js';
import { ROOTS, type NamespaceRoots } from './namespaces.js';

/** A namespace file's identity: the nsfs device and the namespace's inode. */
export interface NamespaceId {
  dev: number;
  ino: number;
}

/**
 * The namespace at `path`, or null when the path cannot be read (the caller's own open then
 * reports why: ENOENT, EACCES). A path that exists but is no namespace (a regular file, a
 * directory, a FIFO whose open() would block forever) is refused with EINVAL before anything
 * opens it: namespace files all live on the one nsfs device.
 */
export function namespaceAt(path: string, roots: NamespaceRoots = ROOTS): NamespaceId | null {
  // Synchronous: two stats at start, no reason to wait for the thread pool behind other work.
  const statOrNull = (p: string) => {
    try {
      return statSync(p);
    } catch {
      return null;
    }
  };
  const target = statOrNull(path);
  const own = statOrNull(join(roots.proc, 'self', 'ns', 'net'));
  if (!target || !own) return null;
  if (target.dev !== own.dev || !target.isFile()) {
    throw new ConntrackError(`${path} is ${fileKind(target)}, not a network namespace`, {
      code: 'EINVAL',
      hint: 'pass /var/run/netns/NAME or /proc/PID/ns/net',
    });
  }
  return { dev: target.dev, ino: target.ino };
}

/** Whether `path` still names the namespace `id` (it may be gone, or name another one now). */
export async function stillNames(path: string, id: NamespaceId): Promise<boolean> {
  const st = await stat(path).catch(() => null);
  return st !== null && st.dev === id.dev && st.ino === id.ino;
}

/** What holds a namespace, if anything, and which processes could not be looked at. */
export interface Holders {
  /** The first holder found, as a phrase for messages ("pid 412", "mounted at /run/netns/x"); null: none. */
  holder: string | null;
  /** Processes whose namespace could not be read (EACCES: another user's, or a sandbox's init). */
  unreadable: number[];
}

/**
 * What else holds the namespace `id`: a bind mount of it in this mount namespace (`ip netns
 * add`, container runtimes' netns files), or a process in it (its /proc/PID/ns/net). Processes
 * whose namespace cannot be read are listed apart, not counted: even root cannot read some
 * (a sandbox's pid 1), and a namespace no visible path or process holds is gone for whoever
 * watches it. Threads that entered it alone (another monitor's reader thread) and descriptors
 * open in other processes are not seen.
 */
export async function holdersOf(id: NamespaceId, roots: NamespaceRoots = ROOTS): Promise<Holders> {
  const unreadable: number[] = [];
  // ~150 bytes a mount: room for 400,000 of them.
  const mountinfo = join(roots.proc, 'self', 'mountinfo');
  const mounts = await readFileBounded(mountinfo, 64 << 20, new Deadline(5000)).catch(() => '');
  for (const line of mounts.split('\n')) {
    // "36 35 0:4 net:[4026532176] /run/netns/blue rw,... shared:5 - nsfs nsfs rw"
    const [fields, fs] = line.split(' - ');
    const f = fields?.split(' ') ?? [];
    if (fs?.startsWith('nsfs ') && f[3] === `net:[${id.ino}]`) return { holder: `mounted at ${f[4]}`, unreadable };
  }
  const pids = (await readdir(roots.proc).catch(() => [] as string[])).filter((e) => /^\d+$/.test(e));
  for (const pid of pids) {
    const st = await stat(join(roots.proc, pid, 'ns', 'net')).catch((err: NodeJS.ErrnoException) =>
      err.code === 'EACCES' || err.code === 'EPERM' ? err : null,
    );
    if (st instanceof Error) unreadable.push(Number(pid));
    else if (st && st.dev === id.dev && st.ino === id.ino) return { holder: `pid ${pid}`, unreadable };
  }
  return { holder: null, unreadable };
}
