/**
 * The package as users load it: `require` and `import` by name (self-reference through the
 * exports map), one shared copy of the classes, and types that resolve for both.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');
const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });

describe('package entry points', () => {
  it('works with require()', () => {
    const out = node(['-e', `
      const m = require('conntrack-monitor');
      const monitor = new m.ConntrackMonitor({ intervalMs: 500 });
      console.log(JSON.stringify({ keys: Object.keys(m).sort(), interval: monitor.options.intervalMs }));`]);
    expect(JSON.parse(out)).toEqual({
      keys: ['COUNTER_NAMES', 'ConntrackError', 'ConntrackMonitor', 'DEFAULT_PRESSURE', 'PROTOCOL_NAMES', 'TCP_STATE_NAMES', 'registerConntrackMetrics'],
      interval: 500,
    });
  });

  it('works with import, sharing one copy of the classes with require()', () => {
    const out = node(['--input-type=module', '-e', `
      import { ConntrackMonitor, ConntrackError, COUNTER_NAMES } from 'conntrack-monitor';
      import { createRequire } from 'node:module';
      const cjs = createRequire(import.meta.url)('conntrack-monitor');
      console.log(JSON.stringify({
        same: ConntrackError === cjs.ConntrackError && ConntrackMonitor === cjs.ConntrackMonitor,
        counters: COUNTER_NAMES.length,
        interval: new ConntrackMonitor().options.intervalMs,
      }));`]);
    expect(JSON.parse(out)).toEqual({ same: true, counters: 10, interval: 1000 });
  });

  it('has types that resolve for both import and require', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctmon-types-'));
    try {
      const consumer = `
        import { ConntrackMonitor, type ConntrackSample, ConntrackError } from 'conntrack-monitor';
        const m = new ConntrackMonitor({ netns: 'x', intervalMs: 1000 });
        m.on('sample', (s: ConntrackSample) => { const d: number | null = s.rates.drop; void d; });
        m.on('error', (e: ConntrackError) => { const c: string = e.code; void c; });
        // @ts-expect-error unknown event names are rejected by the typed event map
        m.on('nonsense', () => {});
        export {};`;
      // A consumer project with the package installed as a dependency.
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(ROOT, join(dir, 'node_modules', 'conntrack-monitor'));
      writeFileSync(join(dir, 'esm.mts'), consumer);
      writeFileSync(join(dir, 'cjs.cts'), consumer);
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
        compilerOptions: { strict: true, noEmit: true, module: 'Node16', moduleResolution: 'Node16', types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')] },
        files: ['esm.mts', 'cjs.cts'],
      }));
      execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', dir], { cwd: ROOT, encoding: 'utf8' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
