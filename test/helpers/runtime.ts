/**
 * A copy of the container runtime fixture tree (test/fixtures/runtime) in a temporary
 * directory, with the sandboxes' netns paths and pids rewritten to namespaces and processes
 * a test made, as a node's runtime would have written them.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const RUNTIME_FIXTURES = join(__dirname, '..', 'fixtures', 'runtime');

/** The fixture sandboxes, by the pod they hold. */
export const SANDBOXES = {
  web: {
    runtime: 'containerd',
    dir: 'containerd/io.containerd.runtime.v2.task/k8s.io/5f0c1e9ad7b44c1f8c2e3f1a6b7d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f801',
    pidFile: 'init.pid',
    pod: { namespace: 'shop', name: 'web-7d9f8b6c5-x2x9q', uid: '0c9e4d7a-1b2c-4d5e-8f90-a1b2c3d4e5f6' },
  },
  batch: {
    runtime: 'containerd',
    dir: 'containerd/io.containerd.runtime.v2.task/k8s.io/0b1c2d3e4f5061728394a5b6c7d8e9f00f1e2d3c4b5a69788796a5b4c3d2e1f0',
    pidFile: 'init.pid',
    pod: { namespace: 'jobs', name: 'batch-job-q8w7e', uid: '2b3c4d5e-6f70-4811-9a2b-3c4d5e6f7081' },
  },
  kubeProxy: {
    runtime: 'containerd',
    dir: 'containerd/io.containerd.runtime.v2.task/k8s.io/e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff00',
    pidFile: 'init.pid',
    pod: { namespace: 'kube-system', name: 'kube-proxy-h7k2m', uid: '7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2918' },
  },
  coredns: {
    runtime: 'cri-o',
    dir: 'crio/overlay-containers/8c7b6a5948372615f4e3d2c1b0a99887766554433221100aabbccddeeff0011/userdata',
    pidFile: 'pidfile',
    pod: { namespace: 'kube-system', name: 'coredns-5d78c9869d-4xk2p', uid: 'a1b2c3d4-e5f6-4789-8abc-def012345678' },
  },
} as const;
export type SandboxName = keyof typeof SANDBOXES;

/** No process has this pid: it is above any pid_max (2^22 at most). */
export const NO_SUCH_PID = 0x3fffffff;

export interface RuntimeTree {
  root: string;
  containerd: string;
  crio: string;
  /** Points a sandbox's network namespace entry at `path` (null: an entry without a path). */
  setNetns(sandbox: SandboxName, path: string | null): void;
  setPid(sandbox: SandboxName, pid: number): void;
  remove(): void;
}

/** The fixture tree copied; every sandbox's pid is NO_SUCH_PID until set. */
export function runtimeTree(): RuntimeTree {
  const root = mkdtempSync(join(tmpdir(), 'ctmon-runtime-'));
  cpSync(RUNTIME_FIXTURES, root, { recursive: true });
  const tree: RuntimeTree = {
    root,
    containerd: join(root, 'containerd'),
    crio: join(root, 'crio'),
    setNetns(sandbox, path) {
      const file = join(root, SANDBOXES[sandbox].dir, 'config.json');
      const spec = JSON.parse(readFileSync(file, 'utf8'));
      const net = spec.linux.namespaces.find((n: { type: string }) => n.type === 'network');
      if (path === null) delete net.path;
      else net.path = path;
      writeFileSync(file, JSON.stringify(spec));
    },
    setPid(sandbox, pid) {
      writeFileSync(join(root, SANDBOXES[sandbox].dir, SANDBOXES[sandbox].pidFile), `${pid}\n`);
    },
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
  for (const name of Object.keys(SANDBOXES) as SandboxName[]) tree.setPid(name, NO_SUCH_PID);
  return tree;
}
