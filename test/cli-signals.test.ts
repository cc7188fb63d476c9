/**
 * The CLI's shutdown with real signals, in child processes: the first SIGINT or SIGTERM asks
 * for the final sample, further ones (as `timeout` sends them: to the command, then to its
 * process group) must not kill the process before it is written, and only a person's second
 * Ctrl-C, a second or more later, exits at once. A stop that takes 1.5 s stands in for a
 * monitor draining after a flood; the kernel-backed run is in test/integration/cli.test.ts.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const MONITOR = require.resolve('../dist/cli/monitor.js');

/** A command as the CLI runs one: wait for the shutdown, stop (slowly), write the final line. */
const COMMAND = `
  const { awaitShutdown, stopUnlessForced, forcedExit } = require(${JSON.stringify(MONITOR)});
  setInterval(() => {}, 1000); // the monitor's reader keeps a real command alive
  (async () => {
    const shutdown = awaitShutdown();
    process.stdout.write('running\\n');
    const why = await shutdown.requested;
    process.stdout.write('stopping after ' + why + '\\n');
    const finished = await stopUnlessForced(shutdown, () => new Promise((r) => setTimeout(r, 1500)));
    if (!finished) process.exit(forcedExit());
    process.stdout.write('final sample\\n');
    process.exit(0);
  })();`;

/** The handling this replaced, as a control: handlers removed after the first signal. */
const BEFORE = `
  setInterval(() => {}, 1000);
  const finish = (signal) => {
    process.off('SIGINT', finish);
    process.off('SIGTERM', finish);
    process.stdout.write('stopping after ' + signal + '\\n');
    setTimeout(() => { process.stdout.write('final sample\\n'); process.exit(0); }, 1500);
  };
  process.once('SIGINT', finish);
  process.once('SIGTERM', finish);
  process.stdout.write('running\\n');`;

async function run(signals: { signal: NodeJS.Signals; afterMs: number }[], script = COMMAND) {
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  await new Promise<void>((resolve) =>
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('running\n')) resolve();
    }),
  );
  const started = performance.now();
  for (const { signal, afterMs } of signals) {
    await new Promise((r) => setTimeout(r, afterMs));
    child.kill(signal);
  }
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('close', (c, s) => resolve([c, s])),
  );
  return { code, signal, stdout, stderr, ms: performance.now() - started };
}

describe('CLI shutdown under repeated signals', () => {
  it.each([
    ['SIGTERM twice at once (timeout: the command, then its process group)', 'SIGTERM', 0],
    ['SIGTERM, then SIGTERM while stopping', 'SIGTERM', 300],
    ['SIGINT twice at once', 'SIGINT', 0],
    ['SIGTERM, then SIGINT while stopping', 'SIGINT', 300],
  ] as const)('%s: the final sample is written, exit 0', async (_name, second, afterMs) => {
    const first = second === 'SIGINT' && afterMs > 0 ? 'SIGTERM' : second;
    const r = await run([
      { signal: first, afterMs: 0 },
      { signal: second, afterMs },
    ]);
    console.info(
      `${first} then ${second} after ${afterMs} ms: exit ${r.code} after ${r.ms.toFixed(0)} ms: ${JSON.stringify(r.stdout)}`,
    );
    expect(r).toMatchObject({ code: 0, signal: null, stderr: '' });
    expect(r.stdout).toBe(`running\nstopping after ${first}\nfinal sample\n`);
  });

  it('control: with the handlers removed after the first signal, a second SIGTERM kills it before the final sample', async () => {
    const r = await run(
      [
        { signal: 'SIGTERM', afterMs: 0 },
        { signal: 'SIGTERM', afterMs: 300 },
      ],
      BEFORE,
    );
    console.info(
      `before the fix, SIGTERM then SIGTERM after 300 ms: exit ${r.code}, signal ${r.signal}: ${JSON.stringify(r.stdout)}`,
    );
    expect(r).toMatchObject({ code: null, signal: 'SIGTERM' });
    expect(r.stdout).toBe('running\nstopping after SIGTERM\n');
  });

  it("a person's second Ctrl-C a second later exits at once, saying so (130)", async () => {
    const r = await run([
      { signal: 'SIGINT', afterMs: 0 },
      { signal: 'SIGINT', afterMs: 1100 },
    ]);
    console.info(`Ctrl-C, Ctrl-C 1.1 s later: exit ${r.code} after ${r.ms.toFixed(0)} ms: ${r.stderr.trim()}`);
    expect(r.code).toBe(130);
    expect(r.stdout).toBe('running\nstopping after SIGINT\n');
    expect(r.stderr).toBe('conntrack-monitor: interrupted again: exiting without waiting for the final sample\n');
    expect(r.ms).toBeLessThan(1500);
  });
});
