/**
 * What a test needs to run the package as user nobody, wherever the checkout is. A checkout
 * only root can read (a clone under /root, anything in a `mktemp -d`) cannot be loaded by nobody,
 * so these tests run a world-readable copy of what the package needs at run time: package.json,
 * dist/, the built addon and the runtime dependencies (node-gyp-build, and prom-client for serve).
 * Made once per test file, removed when the test process exits.
 */
import { chmodSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const RUNTIME_ROOTS = ['node-gyp-build', 'prom-client'];

export interface UnprivilegedCopy {
  root: string;
  /** dist/cli.js of the copy. */
  cli: string;
  /** dist/index.js of the copy, for require(). */
  index: string;
}

let copy: UnprivilegedCopy | undefined;

export function unprivilegedCopy(): UnprivilegedCopy {
  if (copy) return copy;
  const root = mkdtempSync(join(tmpdir(), 'ctmon-world-'));
  process.once('exit', () => rmSync(root, { recursive: true, force: true }));
  for (const part of ['package.json', 'dist', 'build/Release/conntrack_monitor.node']) {
    cpSync(join(ROOT, part), join(root, part), { recursive: true });
  }
  for (const name of runtimeDependencies()) {
    cpSync(join(ROOT, 'node_modules', name), join(root, 'node_modules', name), { recursive: true });
  }
  openUp(root);
  copy = { root, cli: join(root, 'dist', 'cli.js'), index: join(root, 'dist', 'index.js') };
  return copy;
}

/** The runtime packages and, recursively, their dependencies (npm's flat node_modules). */
function runtimeDependencies(): string[] {
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const manifest = JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8'));
    for (const dependency of Object.keys(manifest.dependencies ?? {})) visit(dependency);
  };
  RUNTIME_ROOTS.forEach(visit);
  return [...seen];
}

/** Directories 0755 and files 0644 (0755 if executable), whatever the checkout's umask was. */
function openUp(path: string): void {
  const st = statSync(path);
  if (st.isDirectory()) {
    chmodSync(path, 0o755);
    for (const entry of readdirSync(path)) openUp(join(path, entry));
  } else {
    chmodSync(path, st.mode & 0o100 ? 0o755 : 0o644);
  }
}
