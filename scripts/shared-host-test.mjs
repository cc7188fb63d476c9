#!/usr/bin/env node
// Runs the whole suite (`npm test` with CI=true) as on a shared host: another process listens
// on 127.0.0.1:9465 (serve's default port) for the whole run, and another holder keeps
// /tmp/ctmon-kernel.lock for the run's first minute, during which nf_conntrack_max is read
// every 100 ms: it must not change. Prints what it saw; exits 1 if the suite failed or the
// setting changed while the lock was held. Root, after npm run build:
//
//   node scripts/shared-host-test.mjs [--hold 60] [-- VITEST_ARGS...]
//
// (Where other people run the suite too, as other agents do on this project's machine, under
// their lock: flock /tmp/ctmon-suite.lock node scripts/shared-host-test.mjs.)
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CONNTRACK_MAX, KERNEL_LOCK, withKernelLock } from '../test/helpers/kernel-lock.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values, positionals } = parseArgs({
  options: { hold: { type: 'string', default: '60' }, help: { type: 'boolean', short: 'h' } },
  allowPositionals: true,
});
if (values.help) {
  console.log(
    readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\n')
      .slice(1, 11)
      .map((l) => l.replace(/^\/\/ ?/, ''))
      .join('\n'),
  );
  process.exit(0);
}
const holdMs = Number(values.hold) * 1000;
const results = join(root, 'build', 'shared-host-results.json');
const readMax = () => Number(readFileSync(CONNTRACK_MAX, 'utf8'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The neighbour's server on serve's default address. Taken already: someone else's, as good.
const neighbour = net.createServer((socket) => socket.destroy());
const port = await new Promise((resolve) => {
  neighbour.once('error', (e) => resolve(`taken already (${e.code})`));
  neighbour.listen(9465, '127.0.0.1', () => resolve('listening'));
});

// The neighbour's lock, taken before the suite starts and held for its first `hold` seconds.
let holding;
const held = new Promise((resolve) => {
  holding = withKernelLock(async () => {
    resolve();
    await sleep(holdMs);
  });
});
await held;
const start = performance.now();
const initial = readMax();
const readings = [];
const watch = setInterval(() => readings.push({ ms: performance.now() - start, max: readMax() }), 100);
let released = null;
void holding.then(() => (released = performance.now() - start));

mkdirSync(join(root, 'build'), { recursive: true });
const output = [];
const suite = spawn(
  'npm',
  ['test', '--', '--reporter=default', '--reporter=json', `--outputFile.json=${results}`, ...positionals],
  { cwd: root, env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] },
);
for (const stream of ['stdout', 'stderr']) {
  suite[stream].on('data', (d) => {
    process[stream].write(d);
    output.push(String(d));
  });
}
const status = await new Promise((resolve) => suite.on('close', resolve));
const wallS = (performance.now() - start) / 1000;
clearInterval(watch);
await holding;
neighbour.close();

const during = readings.filter((r) => r.ms < released);
const changed = during.filter((r) => r.max !== initial);
const after = readings.filter((r) => r.ms >= released);
const lowered = [...new Set(after.filter((r) => r.max !== initial).map((r) => r.max))].sort((a, b) => a - b);
const firstChange = after.find((r) => r.max !== initial);
const waits = [...output.join('').matchAll(/kernel lock: waited ([\d.]+ s)/g)].map((m) => m[1]);
let tests = 'no results';
try {
  const r = JSON.parse(readFileSync(results, 'utf8'));
  tests = `${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`;
} catch {
  // said below
}
console.log(
  [
    `shared host: npm test exited ${status} after ${wallS.toFixed(0)} s: ${tests}`,
    `  127.0.0.1:9465: ${port} for the whole run`,
    `  ${KERNEL_LOCK}: held by this script for the first ${(released / 1000).toFixed(1)} s; ` +
      `waits the tests reported: ${waits.length ? waits.join(', ') : 'none'}`,
    `  nf_conntrack_max while it was held: ${during.length} readings, every 100 ms, ` +
      (changed.length ? `CHANGED: ${[...new Set(changed.map((r) => r.max))].join(', ')}` : `all ${initial}`),
    `  afterwards: ${after.length} readings; the suite set ${lowered.length ? lowered.join(', ') : 'nothing else'}` +
      (firstChange ? `, first at ${(firstChange.ms / 1000).toFixed(1)} s` : '') +
      `; at the end ${readMax()}`,
  ].join('\n'),
);
process.exit(status === 0 && changed.length === 0 && during.length > 0 ? 0 : 1);
