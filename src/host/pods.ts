/**
 * Which Kubernetes pod a network namespace belongs to, read from the container runtime's own
 * state on the node: no API server, no CRI socket. Every pod has a sandbox (the "pause"
 * container) that holds its network namespace, and both CRI runtimes keep the sandbox's OCI
 * spec (config.json) on disk with the pod's identity in its annotations and the namespace's
 * path in linux.namespaces:
 *
 * - containerd (`/run/containerd` by default, defaults/defaults_linux.go DefaultStateDir):
 *   `io.containerd.runtime.v2.task/<containerd namespace>/<id>/config.json`, the task bundle
 *   (core/runtime/v2/bundle.go NewBundle writes oci.ConfigFilename there; the CRI plugin's
 *   namespace is "k8s.io", internal/cri/constants), and `init.pid` beside it
 *   (cmd/containerd-shim-runc-v2/process/utils.go InitPidFile). The CRI plugin annotates the
 *   sandbox (internal/cri/annotations/annotations.go DefaultCRIAnnotations):
 *   io.kubernetes.cri.container-type = "sandbox", io.kubernetes.cri.sandbox-name,
 *   io.kubernetes.cri.sandbox-namespace, io.kubernetes.cri.sandbox-uid; its network namespace
 *   is a bind mount under /var/run/netns/cni-... (internal/cri/server/sandbox_run.go,
 *   pkg/netns/netns_linux.go), given as linux.namespaces[type=network].path
 *   (internal/cri/server/podsandbox/sandbox_run_linux.go); a hostNetwork pod has no network
 *   entry at all.
 * - CRI-O (`/run/containers/storage` by default, the containers/storage RunRoot,
 *   vendor/go.podman.io/storage/types/options_linux.go): `<driver>-containers/<id>/userdata/
 *   config.json` (server/sandbox_run_linux.go saves the spec to the container's RunDir) and
 *   `pidfile` beside it (internal/oci/runtime_oci.go, conmon's -p). The sandbox carries
 *   io.kubernetes.cri-o.ContainerType = "sandbox" (internal/annotations/annotations.go) and the
 *   kubelet's labels copied as annotations: io.kubernetes.pod.name, io.kubernetes.pod.namespace,
 *   io.kubernetes.pod.uid (k8s.io/kubelet/pkg/types/labels.go; CRI-O fills them in when a client
 *   left them out, populateSandboxLabels); its namespace is pinned under /var/run/netns
 *   (internal/config/nsmgr, namespaces_dir = /var/run).
 *
 * A sandbox is matched to a namespace by inode: the inode of its netns path (on the nsfs
 * device), else that of /proc/<pid>/ns/net of its process. Parsing is pure and defensive:
 * files are size-bounded, JSON that is malformed or of the wrong shape yields no pod, and the
 * identity strings are checked before they become metric labels. The files are the host's:
 * each is read as ./host-file.ts reads them (a regular file only, opened without blocking,
 * bounded in size, and the whole scan in time), so a FIFO or /dev/zero in the runtime's place
 * names no pod and holds nothing up. A scan every few seconds costs two stats per container
 * and a read only of what changed.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Deadline, readFileBounded, statBefore, subdirectoriesBefore } from './host-file.js';

export interface PodIdentity {
  /** The pod's Kubernetes namespace. */
  namespace: string;
  name: string;
  uid: string;
}

export type RuntimeName = 'containerd' | 'cri-o';

/** What a sandbox's OCI spec says. */
export interface SandboxSpec {
  pod: PodIdentity;
  /**
   * linux.namespaces[type=network]: `{ path }` (a path, or null when the runtime let runc make
   * a new one), or null when the spec has no network entry (a hostNetwork pod: it shares the
   * node's namespace and owns none).
   */
  network: { path: string | null } | null;
}

export interface Sandbox extends SandboxSpec {
  runtime: RuntimeName;
  /** The sandbox's directory (bundle or userdata). */
  dir: string;
  /** Its process, from the runtime's pid file; null when unknown. */
  pid: number | null;
}

export interface RuntimeRoots {
  /** containerd's state directory; null: do not look. */
  containerd: string | null;
  /** CRI-O's containers/storage run root; null: do not look. */
  crio: string | null;
}

export const DEFAULT_RUNTIME_ROOTS: RuntimeRoots = { containerd: '/run/containerd', crio: '/run/containers/storage' };

/** Larger specs are not read: a pause container's is ~10 KB, pod annotations are capped at 256 KiB. */
export const MAX_SPEC_BYTES = 1 << 20;
/** At most this many sandbox directories are looked at per root and scan. */
export const MAX_SANDBOXES = 4096;
/** How long a scan of the runtimes' files may take: they are in memory (tmpfs) on a node. */
export const SCAN_TIMEOUT_MS = 2000;

const CONTAINERD_TASKS = 'io.containerd.runtime.v2.task';
const ANNOTATIONS: Record<RuntimeName, { type: string; namespace: string; name: string; uid: string }> = {
  containerd: {
    type: 'io.kubernetes.cri.container-type',
    namespace: 'io.kubernetes.cri.sandbox-namespace',
    name: 'io.kubernetes.cri.sandbox-name',
    uid: 'io.kubernetes.cri.sandbox-uid',
  },
  'cri-o': {
    type: 'io.kubernetes.cri-o.ContainerType',
    namespace: 'io.kubernetes.pod.namespace',
    name: 'io.kubernetes.pod.name',
    uid: 'io.kubernetes.pod.uid',
  },
};
// Kubernetes names are DNS subdomains (<= 253) and uids UUIDs; other CRI clients are laxer, so
// this admits what is safe as a label value rather than exactly what Kubernetes does.
const IDENTITY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The pod a sandbox's OCI spec (config.json text) describes, or null when it is not a pod
 * sandbox of `runtime`, or not a well-formed one. Never throws.
 */
export function parseSandboxSpec(text: string, runtime: RuntimeName): SandboxSpec | null {
  if (text.length > MAX_SPEC_BYTES) return null;
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(spec) || !isObject(spec.annotations)) return null;
  const keys = ANNOTATIONS[runtime];
  const a = spec.annotations;
  if (a[keys.type] !== 'sandbox') return null;
  const [namespace, name, uid] = [a[keys.namespace], a[keys.name], a[keys.uid]];
  if (![namespace, name, uid].every((v) => typeof v === 'string' && IDENTITY.test(v))) return null;
  const linux = isObject(spec.linux) ? spec.linux : {};
  const entries = Array.isArray(linux.namespaces) ? linux.namespaces : [];
  const net = entries.find((e): e is Record<string, unknown> => isObject(e) && e.type === 'network');
  let network: SandboxSpec['network'] = null;
  if (net) {
    const path = net.path;
    const usable = typeof path === 'string' && path.startsWith('/') && path.length <= 4096 && !path.includes('\0');
    network = { path: usable ? path : null };
  }
  return { pod: { namespace: namespace as string, name: name as string, uid: uid as string }, network };
}

/** A pid file's pid (decimal, optional trailing newline), or null. */
export function parsePidFile(text: string): number | null {
  const m = /^\s*(\d{1,10})\s*$/.exec(text);
  const pid = m ? Number(m[1]) : NaN;
  return Number.isSafeInteger(pid) && pid > 0 && pid <= 0x3fffffff ? pid : null;
}

/** What identifies a file's version: inode, size and mtime; null when it is no regular file. */
async function version(path: string, deadline: Deadline): Promise<string | null> {
  const st = await statBefore(path, deadline);
  return st?.isFile() ? `${st.ino}:${st.size}:${st.mtimeMs}` : null;
}

/** The text of a regular file of at most `max` bytes, or null (missing, larger, a FIFO, ...). */
async function readSmall(path: string, max: number, deadline: Deadline): Promise<string | null> {
  try {
    return await readFileBounded(path, max, deadline);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ETIMEDOUT') throw err;
    return null;
  }
}

type SandboxDir = { runtime: RuntimeName; dir: string; pidFile: string };

/** Where each runtime keeps its sandboxes' directories (spec and pid file inside). */
async function sandboxDirs(roots: RuntimeRoots, deadline: Deadline): Promise<SandboxDir[]> {
  const found: SandboxDir[] = [];
  if (roots.containerd !== null) {
    const tasks = join(roots.containerd, CONTAINERD_TASKS);
    let n = 0;
    for (const ns of await subdirectoriesBefore(tasks, deadline)) {
      for (const id of await subdirectoriesBefore(join(tasks, ns), deadline)) {
        if (n++ >= MAX_SANDBOXES) break;
        found.push({ runtime: 'containerd', dir: join(tasks, ns, id), pidFile: 'init.pid' });
      }
    }
  }
  if (roots.crio !== null) {
    let n = 0;
    for (const driver of (await subdirectoriesBefore(roots.crio, deadline)).filter((d) => d.endsWith('-containers'))) {
      for (const id of await subdirectoriesBefore(join(roots.crio, driver), deadline)) {
        if (n++ >= MAX_SANDBOXES) break;
        found.push({ runtime: 'cri-o', dir: join(roots.crio, driver, id, 'userdata'), pidFile: 'pidfile' });
      }
    }
  }
  return found;
}

/**
 * Finds pod sandboxes under the runtimes' roots. Specs and pid files are read again only when
 * they change (keyed by inode, size and mtime in `cache`, which forgets what it no longer
 * sees), so a scan every few seconds costs two stats per container. A scan ends at
 * SCAN_TIMEOUT_MS: a runtime directory on a filesystem that does not answer leaves the pods
 * found so far, and `unreadable` says why; while a read of it is still stuck, later scans read
 * nothing more there (each stuck read holds a thread) and keep those pods.
 */
export class SandboxFinder {
  private readonly cache = new Map<string, { key: string; spec: SandboxSpec | null; pid: [string, number | null] }>();
  private last: Sandbox[] = [];
  /** Whether the last scan found any runtime state directory at all. */
  sawRuntime = false;
  /** Why the last scan did not finish (a file that did not answer in time); null when it did. */
  unreadable: string | null = null;
  /** Reads of the runtimes' files still waiting on their filesystem past a scan's deadline. */
  readonly stuck = { count: 0 };

  constructor(private readonly roots: RuntimeRoots) {}

  async find(): Promise<Sandbox[]> {
    if (this.stuck.count > 0 && this.unreadable !== null) {
      this.unreadable = `${this.unreadable.replace(/; not read again until it answers$/, '')}; not read again until it answers`;
      return this.last;
    }
    const deadline = new Deadline(SCAN_TIMEOUT_MS, this.stuck);
    const sandboxes: Sandbox[] = [];
    const seen = new Set<string>();
    this.unreadable = null;
    try {
      const dirs = await sandboxDirs(this.roots, deadline);
      const { containerd, crio } = this.roots;
      const isDir = async (path: string) => (await statBefore(path, deadline))?.isDirectory() ?? false;
      this.sawRuntime =
        dirs.length > 0 ||
        (containerd !== null && (await isDir(join(containerd, CONTAINERD_TASKS)))) ||
        (crio !== null && (await isDir(crio)));
      for (const { runtime, dir, pidFile } of dirs) {
        const path = join(dir, 'config.json');
        seen.add(path);
        const key = await version(path, deadline);
        if (key === null) continue;
        let cached = this.cache.get(path);
        if (cached?.key !== key) {
          const text = await readSmall(path, MAX_SPEC_BYTES, deadline);
          cached = { key, spec: text === null ? null : parseSandboxSpec(text, runtime), pid: ['', null] };
          this.cache.set(path, cached);
        }
        if (!cached.spec) continue;
        const pidPath = join(dir, pidFile);
        const pidKey = (await version(pidPath, deadline)) ?? '';
        if (pidKey !== cached.pid[0]) {
          const text = pidKey === '' ? null : await readSmall(pidPath, 64, deadline);
          cached.pid = [pidKey, text === null ? null : parsePidFile(text)];
        }
        sandboxes.push({ ...cached.spec, runtime, dir, pid: cached.pid[1] });
      }
    } catch (err) {
      // ETIMEDOUT: the pods found so far stand, and nothing is forgotten for what was not seen.
      if ((err as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw err;
      this.unreadable = `the container runtime's files could not be read within ${SCAN_TIMEOUT_MS / 1000} s: ${(err as Error).message}`;
      return (this.last = sandboxes);
    }
    for (const path of this.cache.keys()) if (!seen.has(path)) this.cache.delete(path);
    return (this.last = sandboxes);
  }
}

/**
 * Each namespace's pod, by inode. A sandbox is matched by the inode of its netns path when
 * that is a namespace file (on the same nsfs device as `/proc/self/ns/net`), else by its
 * process's /proc/<pid>/ns/net. A hostNetwork sandbox (no network entry) owns no namespace,
 * and a pid never attributes the host's namespace (`hostInode`) to a pod. Where two sandboxes
 * claim one inode, a path match wins over a pid match (a stopped sandbox's pid may have been
 * reused).
 */
export async function podsByInode(
  sandboxes: Sandbox[],
  procRoot: string,
  hostInode: number | null,
  stuck: { count: number } = { count: 0 },
): Promise<Map<number, PodIdentity>> {
  // /proc is the kernel's; the netns paths come from the runtime's files, so their stats are
  // bounded in time like the scan, and not made while one is stuck (`stuck`, SandboxFinder's).
  const procStat = (path: string) => {
    try {
      return statSync(path, { throwIfNoEntry: false }) ?? null;
    } catch {
      return null;
    }
  };
  const deadline = new Deadline(SCAN_TIMEOUT_MS, stuck);
  const statPaths = stuck.count === 0;
  const nsfs = procStat(join(procRoot, 'self', 'ns', 'net'))?.dev;
  const byPath = new Map<number, PodIdentity>();
  const byPid = new Map<number, PodIdentity>();
  for (const s of sandboxes) {
    if (s.network === null) continue;
    if (s.network.path !== null && statPaths) {
      const st = await statBefore(s.network.path, deadline).catch(() => null);
      if (st && st.dev === nsfs) {
        byPath.set(st.ino, s.pod);
        continue;
      }
    }
    if (s.pid === null) continue;
    const ino = procStat(join(procRoot, String(s.pid), 'ns', 'net'))?.ino;
    if (ino !== undefined && ino !== hostInode) byPid.set(ino, s.pod);
  }
  for (const [ino, pod] of byPid) if (!byPath.has(ino)) byPath.set(ino, pod);
  return byPath;
}
