/**
 * Pod identity from the container runtimes' own files (src/host/pods.ts), on fixture trees of
 * containerd's and CRI-O's layouts: what is a pod sandbox and what is not, hostile and broken
 * files, and matching a sandbox to a namespace by inode. Needs no privileges: namespace files
 * of other types (/proc/self/ns/uts, ipc) stand in for distinct namespaces on the nsfs device.
 */
import { readFileSync, statSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  MAX_SPEC_BYTES,
  parsePidFile,
  parseSandboxSpec,
  podsByInode,
  SandboxFinder,
  type Sandbox,
} from '../dist/host/pods.js';
import { RUNTIME_FIXTURES, runtimeTree, SANDBOXES, type RuntimeTree } from './helpers/runtime';

const fixture = (name: keyof typeof SANDBOXES) =>
  readFileSync(join(RUNTIME_FIXTURES, SANDBOXES[name].dir, 'config.json'), 'utf8');
const CONTAINER = join(
  RUNTIME_FIXTURES,
  'containerd/io.containerd.runtime.v2.task/k8s.io/9a8b7c6d5e4f30211f0e1d2c3b4a59687766554433221100ffeeddccbbaa9988/config.json',
);
const sandboxSpec = (annotations: unknown, namespaces: unknown = [{ type: 'network', path: '/var/run/netns/x' }]) =>
  JSON.stringify({ annotations, linux: { namespaces } });
const CONTAINERD_POD = {
  'io.kubernetes.cri.container-type': 'sandbox',
  'io.kubernetes.cri.sandbox-namespace': 'shop',
  'io.kubernetes.cri.sandbox-name': 'web-1',
  'io.kubernetes.cri.sandbox-uid': '0c9e4d7a-1b2c-4d5e-8f90-a1b2c3d4e5f6',
};

let tree: RuntimeTree | null = null;
afterEach(() => {
  tree?.remove();
  tree = null;
});

describe('parseSandboxSpec', () => {
  it("reads containerd's and CRI-O's sandbox annotations and the network namespace entry", () => {
    expect(parseSandboxSpec(fixture('web'), 'containerd')).toEqual({
      pod: SANDBOXES.web.pod,
      network: { path: '/var/run/netns/cni-3c6f9a1e-8d2b-4e7f-a5c1-9b0d2e4f6a81' },
    });
    expect(parseSandboxSpec(fixture('coredns'), 'cri-o')).toEqual({
      pod: SANDBOXES.coredns.pod,
      network: { path: '/var/run/netns/6d2a8e4f-1c3b-4a5d-9e7f-0b1c2d3e4f50' },
    });
    // A network entry without a path: runc made the namespace; the process tells which.
    expect(parseSandboxSpec(fixture('batch'), 'containerd')).toEqual({
      pod: SANDBOXES.batch.pod,
      network: { path: null },
    });
    // hostNetwork: no network entry, no namespace of its own.
    expect(parseSandboxSpec(fixture('kubeProxy'), 'containerd')).toEqual({
      pod: SANDBOXES.kubeProxy.pod,
      network: null,
    });
  });

  it('is not fooled by application containers, the other runtime, or other containerd clients', () => {
    expect(parseSandboxSpec(readFileSync(CONTAINER, 'utf8'), 'containerd')).toBeNull();
    expect(parseSandboxSpec(fixture('web'), 'cri-o')).toBeNull();
    expect(parseSandboxSpec(fixture('coredns'), 'containerd')).toBeNull();
    expect(parseSandboxSpec(sandboxSpec({}), 'containerd')).toBeNull();
  });

  it('never throws, and rejects what is malformed, of the wrong shape or unsafe as a label', () => {
    const hostile = [
      '',
      'null',
      '{"annotations":',
      '["sandbox"]',
      '"sandbox"',
      '1e999',
      '['.repeat(200_000),
      '{"a":'.repeat(100_000),
      sandboxSpec(null),
      sandboxSpec(['sandbox']),
      sandboxSpec({ ...CONTAINERD_POD, 'io.kubernetes.cri.container-type': ['sandbox'] }),
      sandboxSpec({ ...CONTAINERD_POD, 'io.kubernetes.cri.sandbox-name': 42 }),
      sandboxSpec({ ...CONTAINERD_POD, 'io.kubernetes.cri.sandbox-name': '' }),
      sandboxSpec({ ...CONTAINERD_POD, 'io.kubernetes.cri.sandbox-name': 'web"} evil{x="' }),
      sandboxSpec({ ...CONTAINERD_POD, 'io.kubernetes.cri.sandbox-name': 'web\n' }),
      sandboxSpec({ ...CONTAINERD_POD, 'io.kubernetes.cri.sandbox-namespace': 'x'.repeat(254) }),
      sandboxSpec({ ...CONTAINERD_POD, 'io.kubernetes.cri.sandbox-uid': null }),
      ' '.repeat(MAX_SPEC_BYTES + 1),
    ];
    for (const text of hostile) expect(parseSandboxSpec(text, 'containerd')).toBeNull();
    // The identity is fine but the namespace entries are not: a pod whose namespace path is unusable.
    for (const namespaces of [
      [{ type: 'network', path: 'relative/path' }],
      [{ type: 'network', path: '/var/run/netns/a\0b' }],
      [{ type: 'network', path: 7 }],
      [{ type: 'network', path: `/${'x'.repeat(5000)}` }],
    ])
      expect(parseSandboxSpec(sandboxSpec(CONTAINERD_POD, namespaces), 'containerd')?.network).toEqual({ path: null });
    for (const namespaces of [null, 'network', [null, 7, 'network', { type: 7 }]])
      expect(parseSandboxSpec(sandboxSpec(CONTAINERD_POD, namespaces), 'containerd')?.network).toBeNull();
  });
});

describe('parsePidFile', () => {
  it('reads a pid with or without a newline and nothing else', () => {
    expect(parsePidFile('4242')).toBe(4242);
    expect(parsePidFile('4242\n')).toBe(4242);
    for (const bad of ['', '0', '-1', 'abc', '12 34', '99999999999', '4242x', `${2 ** 31}`])
      expect(parsePidFile(bad)).toBeNull();
  });
});

describe('SandboxFinder', () => {
  it('finds the pod sandboxes of both layouts, with their pids, and nothing else', async () => {
    const finder = new SandboxFinder({
      containerd: join(RUNTIME_FIXTURES, 'containerd'),
      crio: join(RUNTIME_FIXTURES, 'crio'),
    });
    const found = await finder.find();
    const byName = (s: Sandbox) => `${s.runtime} ${s.pod.namespace}/${s.pod.name} pid ${s.pid}`;
    expect(found.map(byName).sort()).toEqual([
      'containerd jobs/batch-job-q8w7e pid 5150',
      'containerd kube-system/kube-proxy-h7k2m pid 1017',
      'containerd shop/web-7d9f8b6c5-x2x9q pid 4242',
      'cri-o kube-system/coredns-5d78c9869d-4xk2p pid 6161',
    ]);
    expect(finder.sawRuntime).toBe(true);
    expect(await new SandboxFinder({ containerd: '/nonexistent', crio: null }).find()).toEqual([]);
  });

  it('parses a spec again only when it changes, skips oversized ones, and says when no runtime is there', async () => {
    tree = runtimeTree();
    const finder = new SandboxFinder({ containerd: tree.containerd, crio: tree.crio });
    expect((await finder.find()).map((s) => s.pod.name)).toContain('web-7d9f8b6c5-x2x9q');
    const file = join(tree.root, SANDBOXES.web.dir, 'config.json');
    const renamed = readFileSync(file, 'utf8').replace(/"web-7d9f8b6c5-x2x9q"/g, '"web-7d9f8b6c5-zzzzz"');
    writeFileSync(file, renamed);
    expect((await finder.find()).map((s) => s.pod.name)).toContain('web-7d9f8b6c5-zzzzz');
    writeFileSync(file, renamed + ' '.repeat(MAX_SPEC_BYTES));
    expect((await finder.find()).map((s) => s.pod.name)).not.toContain('web-7d9f8b6c5-zzzzz');

    const none = new SandboxFinder({ containerd: join(tree.root, 'nothing'), crio: join(tree.root, 'nothing') });
    expect(await none.find()).toEqual([]);
    expect(none.sawRuntime).toBe(false);
  });
});

describe('podsByInode', () => {
  it('matches by the netns path inode, else by the process; never a hostNetwork pod, never the host by pid', async () => {
    tree = runtimeTree();
    // Distinct namespace files on the nsfs device stand in for two pods' network namespaces.
    const links = join(tree.root, 'netns');
    mkdirSync(links);
    symlinkSync('/proc/self/ns/uts', join(links, 'cni-web'));
    symlinkSync('/proc/self/ns/ipc', join(links, 'crio-coredns'));
    tree.setNetns('web', join(links, 'cni-web'));
    tree.setNetns('coredns', join(links, 'crio-coredns'));
    tree.setPid('batch', process.pid); // runc's namespace: found through the process
    tree.setPid('kubeProxy', process.pid); // hostNetwork: must not claim this process's namespace
    const sandboxes = await new SandboxFinder({ containerd: tree.containerd, crio: tree.crio }).find();
    const ino = (path: string) => statSync(path).ino;
    const own = ino('/proc/self/ns/net');

    const pods = await podsByInode(sandboxes, '/proc', null);
    expect(Object.fromEntries([...pods].map(([inode, pod]) => [inode, `${pod.namespace}/${pod.name}`]))).toEqual({
      [ino('/proc/self/ns/uts')]: 'shop/web-7d9f8b6c5-x2x9q',
      [ino('/proc/self/ns/ipc')]: 'kube-system/coredns-5d78c9869d-4xk2p',
      [own]: 'jobs/batch-job-q8w7e',
    });
    // The same, with this process's namespace as the host's: a pid never names the host.
    expect([...(await podsByInode(sandboxes, '/proc', own)).keys()].sort()).toEqual(
      [ino('/proc/self/ns/uts'), ino('/proc/self/ns/ipc')].sort(),
    );
    // A path that is not a namespace file (a plain file where a bind mount was) matches nothing.
    writeFileSync(join(links, 'plain'), '');
    tree.setNetns('web', join(links, 'plain'));
    const again = await podsByInode(
      await new SandboxFinder({ containerd: tree.containerd, crio: null }).find(),
      '/proc',
      own,
    );
    expect([...again.values()].map((p) => p.name)).toEqual([]);
  });
});
