/**
 * Test namespaces and other host-wide names are unique per run: two runs on one host (or two
 * containers sharing its kernel) cannot meet in /var/run/netns, even with the same pid.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { uniqueName } from './helpers/netns';

const HELPER = join(__dirname, 'helpers', 'unique-name.mjs');

/** Runs a Node.js process as pid 1 of a new PID namespace, as a containerised CI job would be. */
function nameFromPidOne(): { pid: number; name: string } | null {
  const script = `import(${JSON.stringify(HELPER)}).then((m) => console.log(JSON.stringify({ pid: process.pid, name: m.uniqueName('same') })))`;
  for (const flags of [
    ['--pid', '--fork'],
    ['--user', '--map-root-user', '--pid', '--fork'],
  ]) {
    try {
      return JSON.parse(execFileSync('unshare', [...flags, process.execPath, '-e', script], { encoding: 'utf8' }));
    } catch {
      // no permission for this form: try the next
    }
  }
  return null;
}

describe('test namespace names', () => {
  it('differ between two runs even when both have the same pid', () => {
    const a = nameFromPidOne();
    const b = nameFromPidOne();
    if (!a || !b) {
      if (process.env.CI === 'true') throw new Error('unshare --pid is needed under CI=true');
      return;
    }
    console.info(`two runs as pid ${a.pid} and ${b.pid}: ${a.name}, ${b.name}`);
    expect(a.pid).toBe(1);
    expect(b.pid).toBe(1);
    expect(a.name).toMatch(/^ctmon-same-1-[0-9a-f]{8}$/);
    expect(b.name).toMatch(/^ctmon-same-1-[0-9a-f]{8}$/);
    expect(a.name).not.toBe(b.name);
  });

  it('differ within one run, and stay plain namespace names', () => {
    const names = new Set(Array.from({ length: 1000 }, () => uniqueName('x')));
    expect(names.size).toBe(1000);
    for (const n of names) expect(n).toMatch(new RegExp(`^ctmon-x-${process.pid}-[0-9a-f]{8}$`));
  });
});
