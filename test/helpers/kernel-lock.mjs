// The host's global conntrack settings belong to everyone on the machine: other checkouts'
// test runs, the benchmarks, whatever else watches the table. A test that changes one
// (nf_conntrack_max, or any sysctl of the initial namespace) or floods holds the lock the
// benchmarks take (`flock /tmp/ctmon-kernel.lock ...`) for as short as it can, and puts the
// value back, even after a crash: what it set is written down first (KERNEL_STATE), and
// whoever takes the lock next and still finds that value there restores the one before it.
// Plain JavaScript so that child processes and scripts can use it too.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';

export const KERNEL_LOCK = '/tmp/ctmon-kernel.lock';
export const KERNEL_STATE = '/tmp/ctmon-kernel.state.json';
export const LOCK_WAIT_SECONDS = Number(process.env.CTMON_KERNEL_LOCK_WAIT ?? 120);
export const CONNTRACK_MAX = '/proc/sys/net/netfilter/nf_conntrack_max';

// Two ways to hold it. Shared, by every root integration test while it runs: its namespaces
// are limited by the global nf_conntrack_max and its numbers are the kernel's, so no one may
// change a global setting under it (test/helpers/integration-each.ts). Exclusive, to change
// one or to flood: a shared hold of this process is let go meanwhile, then taken again.
/** @type {Promise<() => Promise<void>> | null} */
let shared = null;
/** @type {Promise<() => Promise<void>> | null} */
let exclusive = null;
let depth = 0;

export async function holdKernelLockShared() {
  if (shared || exclusive) return;
  shared = acquire(true);
  await shared.catch((error) => {
    shared = null;
    throw error;
  });
}

export async function releaseKernelLockShared() {
  const hold = shared;
  shared = null;
  const release = await hold?.catch(() => null);
  await release?.();
}

export async function withKernelLock(body) {
  depth++;
  let resume = false;
  try {
    if (!exclusive) {
      resume = shared !== null;
      await releaseKernelLockShared();
      exclusive = acquire(false);
    }
    await exclusive;
    return await body();
  } finally {
    if (--depth === 0 && exclusive) {
      const release = await exclusive.catch(() => null);
      exclusive = null;
      await release?.();
    }
    if (resume) await holdKernelLockShared();
  }
}

// flock(1) takes the lock, then runs cat on a pipe from this process: cat echoes a line back
// once the lock is held, and ends at the pipe's end, which frees the lock: at release, or when
// this process dies, however it dies. --close: the lock is flock's alone, not cat's too. On
// taking it, whatever a holder that died left changed is put back: no one else changes
// anything while this holds it, shared or not.
function acquire(share) {
  const child = spawn(
    'flock',
    [...(share ? ['--shared'] : []), '--close', '--wait', String(LOCK_WAIT_SECONDS), KERNEL_LOCK, 'cat'],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const exited = new Promise((resolve) => child.once('close', resolve));
  const release = async () => {
    child.stdin.end();
    await exited;
  };
  const asked = performance.now();
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.stdout.once('data', () => {
      const waited = performance.now() - asked;
      if (waited > 1000) console.warn(`kernel lock: waited ${(waited / 1000).toFixed(1)} s for ${KERNEL_LOCK}`);
      try {
        restoreAbandoned();
        resolve(release);
      } catch (error) {
        void release();
        reject(error);
      }
    });
    child.once('close', (code) =>
      reject(
        new Error(
          `${KERNEL_LOCK} not acquired${share ? ' (shared)' : ''} within ${LOCK_WAIT_SECONDS} s ` +
            `(flock exited ${code}${err ? `: ${err.trim()}` : ''}): held by ${holders() || 'a process this one cannot see'}, ` +
            'which changes global conntrack settings, floods, or needs them to hold still; ' +
            'run the tests again when it is done (CTMON_KERNEL_LOCK_WAIT=SECONDS waits longer)',
        ),
      ),
    );
    child.stdin.write('held\n');
  });
}

/** The processes with the lock file open (those that hold the lock among them), for a message. */
function holders() {
  const found = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkSafe(`/proc/${pid}/fd/${fd}`) === KERNEL_LOCK)) continue;
      found.push(
        `pid ${pid} (${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 120)})`,
      );
    } catch {
      // gone, or not ours to see
    }
  }
  return found.slice(0, 3).join(', ');
}

function readlinkSafe(path) {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

function readState() {
  try {
    return JSON.parse(readFileSync(KERNEL_STATE, 'utf8'));
  } catch {
    return {};
  }
}

function writeState(state) {
  if (Object.keys(state).length === 0) rmSync(KERNEL_STATE, { force: true });
  else writeFileSync(KERNEL_STATE, `${JSON.stringify(state, null, 2)}\n`);
}

export function restoreAbandoned() {
  const restored = [];
  for (const [path, change] of Object.entries(readState())) {
    if (readFileSync(path, 'utf8').trim() === change.set) {
      writeFileSync(path, change.original);
      restored.push(`${path} ${change.set} -> ${change.original} (set by pid ${change.pid})`);
    }
  }
  writeState({});
  if (restored.length)
    console.warn(`kernel lock: put back what a holder that died left changed: ${restored.join('; ')}`);
  return restored;
}

export function withGlobalSetting(path, value, body) {
  return withKernelLock(async () => {
    const original = readFileSync(path, 'utf8').trim();
    writeState({ ...readState(), [path]: { original, set: value, pid: process.pid } });
    writeFileSync(path, value);
    try {
      return await body();
    } finally {
      writeFileSync(path, original);
      const state = readState();
      delete state[path];
      writeState(state);
    }
  });
}

export function withConntrackMax(max, body) {
  return withGlobalSetting(CONNTRACK_MAX, String(max), body);
}
