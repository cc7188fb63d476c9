/**
 * Replays the fuzz seeds (the captured fixtures) and every input in fuzz/regressions/ through
 * the libFuzzer target built with ASan and UBSan: a bug the fuzzer once found stays found.
 * fuzz/regressions/table-erase-shifts-colliding-entries is the input the fuzzer produced
 * within seconds when the table's backward-shift deletion was broken on purpose; it makes
 * entries collide and erases between them, and the target checks the table against a model.
 * The refresh seed keeps flows past their announced deadline and verifies them: counting a flow
 * whose deadline is the verification's own decisecond as unverified is found by the seed itself.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

function clangMissing(): string | null {
  try {
    execFileSync('clang++', ['--version'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'clang++ is not installed (apt-get install clang libclang-rt-14-dev)';
  }
}
const missing = clangMissing();
if (missing && process.env.CI === 'true') throw new Error(`the fuzz replay must run under CI=true, but: ${missing}`);

describe.skipIf(missing !== null)('fuzz target (ASan + UBSan)', () => {
  it('replays every seed and regression input without a finding', () => {
    const regressions = readdirSync('fuzz/regressions');
    expect(regressions).toContain('table-erase-shifts-colliding-entries');
    const r = spawnSync(process.execPath, ['fuzz/run.mjs', '--replay'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).not.toMatch(/ERROR: (AddressSanitizer|libFuzzer)|runtime error|diverged/);
    const replayed = Number(/fuzz replay: (\d+) inputs, exit (\d+)/.exec(r.stdout)?.[1]);
    expect(r.status).toBe(0);
    // One seed per captured fixture file, the life-cycle, snapshot, kallsyms, BTF and refresh
    // seeds, and the regressions.
    const fixtures = readdirSync('test/fixtures/netlink').filter((f) => f.endsWith('.hex')).length;
    expect(replayed).toBe(fixtures + 5 + regressions.length); // + life cycle, snapshot, kallsyms, BTF, refresh
  }, 120_000);

  it.each([
    [['--seconds=-5'], '--seconds must be a whole number of seconds >= 1, got "-5"'],
    [['--seconds', '1.5'], '--seconds must be a whole number of seconds >= 1, got "1.5"'],
    [['--jobs', 'x'], '--jobs must be a whole number >= 1, got "x"'],
    [['--nope'], "Unknown option '--nope'"],
  ])('rejects %j with a clear message', (args, message) => {
    const r = spawnSync(process.execPath, ['fuzz/run.mjs', ...args], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(message);
  });
});
