/**
 * The package as users load it: `require` and `import` by name (self-reference through the
 * exports map) and one shared copy of the classes. test/packaging.test.ts checks the packed
 * package, types included.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');
const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });

describe('package entry points', () => {
  it('works with require()', () => {
    const out = node([
      '-e',
      `
      const m = require('conntrack-monitor');
      const monitor = new m.ConntrackMonitor({ intervalMs: 500 });
      console.log(JSON.stringify({ keys: Object.keys(m).sort(), interval: monitor.options.intervalMs }));`,
    ]);
    expect(JSON.parse(out)).toEqual({
      keys: [
        'AllNamespacesMonitor',
        'COUNTER_NAMES',
        'ConntrackError',
        'ConntrackMonitor',
        'DEFAULT_PRESSURE',
        'DropMonitor',
        'PROTOCOL_NAMES',
        'RecordingFormatError',
        'TCP_STATE_NAMES',
        'adviseTuning',
        'evictableVerdict',
        'listNamespaces',
        'parseRecording',
        'record',
        'registerAllNamespacesMetrics',
        'registerAllNamespacesOpenTelemetryMetrics',
        'registerConntrackMetrics',
        'registerDropMetrics',
        'registerOpenTelemetryMetrics',
        'registerTopMetrics',
        'renderReport',
        'runsOf',
        'summarize',
        'topEntries',
        'tuningEnvironment',
      ],
      interval: 500,
    });
  });

  it('works with import, sharing one copy of the classes with require()', () => {
    const out = node([
      '--input-type=module',
      '-e',
      `
      import { ConntrackMonitor, ConntrackError, COUNTER_NAMES } from 'conntrack-monitor';
      import { createRequire } from 'node:module';
      const cjs = createRequire(import.meta.url)('conntrack-monitor');
      console.log(JSON.stringify({
        same: ConntrackError === cjs.ConntrackError && ConntrackMonitor === cjs.ConntrackMonitor,
        counters: COUNTER_NAMES.length,
        interval: new ConntrackMonitor().options.intervalMs,
      }));`,
    ]);
    expect(JSON.parse(out)).toEqual({ same: true, counters: 10, interval: 1000 });
  });
});
