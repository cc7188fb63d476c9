/**
 * The network namespace a path names (`/var/run/netns/NAME`, `/proc/PID/ns/net`), by its nsfs
 * inode, and whether anything on the host still holds a namespace once no path names it: the
 * monitor's own sockets keep a deleted namespace alive, so it has to notice by itself that the
 * namespace it watches is gone (ConntrackMonitor, once per interval).
 *
 * Read-only and bounded: a stat per check, and a walk of /proc/PID/ns/net and of
 * /proc/self/mountinfo only once the path no longer names the namespace.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConntrackError } from '../errors.js';
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
export async function namespaceAt(path: string, roots: NamespaceRoots = ROOTS): Promise<NamespaceId | null> {
  const [target, own] = await Promise.all([
    stat(path).catch(() => null),
    stat(join(roots.proc, 'self', 'ns', 'net')).catch(() => null),
  ]);
  if (!target || !own) return null;
  if (target.dev !== own.dev || !target.isFile()) {
    throw new ConntrackError(`${path} is not a network namespace`, {
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

/**
 * What else holds the namespace `id`: a process in it (its /proc/PID/ns/net), or a bind mount
 * of it in this mount namespace (`ip netns add`, container runtimes' /run/.../netns files), as
 * a phrase for messages; null when nothing does. A process whose namespace cannot be read
 * (another user's, without privileges) counts as holding it: not knowing is not "gone".
 * Threads that entered it alone (another monitor's reader thread) and descriptors open in
 * other processes are not seen.
 */
export async function holderOf(id: NamespaceId, roots: NamespaceRoots = ROOTS): Promise<string | null> {
  const mounts = await readFile(join(roots.proc, 'self', 'mountinfo'), 'utf8').catch(() => '');
  for (const line of mounts.split('\n')) {
    // "36 35 0:4 net:[4026532176] /run/netns/blue rw,... shared:5 - nsfs nsfs rw"
    const [fields, fs] = line.split(' - ');
    const f = fields?.split(' ') ?? [];
    if (fs?.startsWith('nsfs ') && f[3] === `net:[${id.ino}]`) return `mounted at ${f[4]}`;
  }
  const pids = (await readdir(roots.proc).catch(() => [] as string[])).filter((e) => /^\d+$/.test(e));
  for (const pid of pids) {
    const st = await stat(join(roots.proc, pid, 'ns', 'net')).catch((err: NodeJS.ErrnoException) =>
      err.code === 'ENOENT' || err.code === 'ESRCH' ? null : err,
    );
    if (st instanceof Error) return `pid ${pid} (its namespace cannot be read: ${st.code})`;
    if (st && st.dev === id.dev && st.ino === id.ino) return `pid ${pid}`;
  }
  return null;
}
