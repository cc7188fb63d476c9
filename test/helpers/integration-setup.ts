/**
 * Once per run of the root integration tests (vitest globalSetup, in vitest's own process):
 * the world-readable copy of the package for the tests run as nobody, removed at the end
 * whatever happened; and at the end, if a test worker was ended while it had a global
 * setting changed (a test that timed out, then its file's worker stopped), the next holder
 * of the kernel lock is this run, which puts the setting back (test/helpers/kernel-lock.mjs).
 */
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { KERNEL_STATE, withKernelLock } from './kernel-lock.mjs';

const ROOT = join(__dirname, '..', '..');
const RUNTIME_ROOTS = ['node-gyp-build', 'prom-client'];

export default function setup(project: TestProject): () => Promise<void> {
  const root = makeUnprivilegedCopy();
  project.provide('unprivilegedRoot', root);
  return async () => {
    rmSync(root, { recursive: true, force: true });
    if (existsSync(KERNEL_STATE)) await withKernelLock(async () => {});
  };
}

/** Makes the copy (test/helpers/unprivileged.ts) in a new directory under $TMPDIR; returns its path. */
function makeUnprivilegedCopy(): string {
  const root = mkdtempSync(join(tmpdir(), 'ctmon-world-'));
  for (const part of ['package.json', 'dist', 'build/Release/conntrack_monitor.node']) {
    cpSync(join(ROOT, part), join(root, part), { recursive: true });
  }
  for (const name of runtimeDependencies()) {
    cpSync(join(ROOT, 'node_modules', name), join(root, 'node_modules', name), { recursive: true });
  }
  openUp(root);
  return root;
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
