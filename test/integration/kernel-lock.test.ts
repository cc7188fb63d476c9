/**
 * The kernel lock of the tests (test/helpers/kernel-lock.mjs), on the real host: the same lock
 * as `flock /tmp/ctmon-kernel.lock` (the benchmarks'), held shared by every integration test
 * and exclusive where one changes a global setting, waited for while another holds it, freed
 * when its holder dies however it dies, and a global setting left changed by a holder that was
 * killed put back by the next one.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { canRunIntegration } from '../helpers/gate';
import {
  CONNTRACK_MAX,
  KERNEL_LOCK,
  KERNEL_STATE,
  releaseKernelLockShared,
  withKernelLock,
} from '../helpers/kernel-lock.mjs';
import { defer } from '../helpers/scope';

const HELPER = join(__dirname, '..', 'helpers', 'kernel-lock.mjs');
/** flock(1) without waiting, exclusive or shared: 0 when it got the lock, 1 when it could not. */
const tryLock = (...mode: string[]) => spawnSync('flock', [...mode, '--nonblock', KERNEL_LOCK, 'true']).status;
const max = () => readFileSync(CONNTRACK_MAX, 'utf8').trim();

/** A process that prints `line` once it runs (for flock: once it holds the lock). */
function started(command: string, args: string[], line: string) {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  defer(() => void child.kill('SIGKILL'));
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes(line)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`${command} exited ${code} before printing ${line}`)));
  });
  return { child, ready };
}

describe.skipIf(!canRunIntegration)('the kernel lock', () => {
  it('is the lock `flock /tmp/ctmon-kernel.lock` takes: shared by the test, exclusive to change a setting, nested calls in one', async () => {
    const seen = { test: [tryLock(), tryLock('--shared')], exclusive: [] as (number | null)[] };
    await withKernelLock(async () => {
      seen.exclusive.push(tryLock(), tryLock('--shared'));
      await withKernelLock(async () => void seen.exclusive.push(tryLock()));
    });
    const after = [tryLock(), tryLock('--shared')];
    await releaseKernelLockShared();
    const released = spawnSync('flock', ['--wait', '10', KERNEL_LOCK, 'true']).status;
    console.info(`kernel lock: ${JSON.stringify({ ...seen, after, released })} (1: another could not take it)`);
    expect(seen.test).toEqual([1, 0]); // while a test runs: no one changes a setting, others read
    expect(seen.exclusive).toEqual([1, 1, 1]); // while it changes one: no one else at all
    expect(after).toEqual([1, 0]); // held shared again
    expect(released).toBe(0);
  });

  it('waits while another process holds it', async () => {
    await releaseKernelLockShared(); // the other must get it first
    const other = started(
      'flock',
      [KERNEL_LOCK, process.execPath, '-e', 'console.log("held"); setTimeout(() => {}, 1500)'],
      'held',
    );
    await other.ready;
    const asked = performance.now();
    const waitedMs = await withKernelLock(async () => performance.now() - asked);
    console.info(`kernel lock: waited ${waitedMs.toFixed(0)} ms for another holder of 1.5 s`);
    expect(waitedMs).toBeGreaterThan(1000);
  });

  it('a holder killed with nf_conntrack_max changed: the lock is free at once, and the next holder puts the value back', async () => {
    await releaseKernelLockShared(); // the holder below must get it
    const original = max();
    const lowered = String(Number(original) - 1);
    // In a process of its own, which dies with the setting changed (SIGKILL: no finally runs).
    const script = `
      import { withConntrackMax } from ${JSON.stringify(HELPER)};
      setInterval(() => {}, 1e6);
      await withConntrackMax(${lowered}, async () => {
        console.log('set');
        await new Promise(() => {});
      });`;
    const holder = started(process.execPath, ['--input-type=module', '-e', script], 'set');
    await holder.ready;
    const during = { max: max(), state: JSON.parse(readFileSync(KERNEL_STATE, 'utf8')), lock: tryLock() };
    holder.child.kill('SIGKILL');
    await new Promise((r) => holder.child.once('exit', r));
    const freedAt = performance.now();
    const free = spawnSync('flock', ['--wait', '5', KERNEL_LOCK, 'true']).status;
    const freedMs = performance.now() - freedAt;
    const after = await withKernelLock(async () => ({ max: max(), state: existsSync(KERNEL_STATE) }));
    console.info(
      `killed holder: nf_conntrack_max ${original} -> ${during.max}, state ${JSON.stringify(during.state)}; ` +
        `lock free ${freedMs.toFixed(0)} ms after the kill; the next holder found ${after.max}`,
    );
    expect(during).toMatchObject({ max: lowered, lock: 1 });
    expect(during.state[CONNTRACK_MAX]).toMatchObject({ original, set: lowered, pid: holder.child.pid });
    expect(free).toBe(0);
    expect(freedMs).toBeLessThan(1000);
    expect(after).toEqual({ max: original, state: false });
  });
});
