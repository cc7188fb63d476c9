/**
 * `record --out FIFO`, with real FIFOs: with no reader it fails at once with a clear line (it
 * used to wait in open(2) for ever, deaf to SIGTERM); with a reader it records into it; with a
 * reader that stops reading it gives up writing after STALL_MS, says so, and still ends as
 * usual. Uses the proc backend: needs no privileges.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRecording } from '../dist/recording/format.js';
import { runCli } from './helpers/cli';

const dir = mkdtempSync(join(tmpdir(), 'ctmon-record-fifo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fifo = (name: string) => {
  const path = join(dir, name);
  spawnSync('mkfifo', [path]);
  return path;
};
const RECORD = ['record', '--backend', 'proc', '--interval', '50'];

describe('record --out FIFO', () => {
  it('with no reader: exit 1 at once, one line saying what to do; the command does not run', async () => {
    const out = fifo('nobody-reads');
    const marker = join(dir, 'ran');
    const started = performance.now();
    const run = await runCli([...RECORD, '--out', out, '--', 'touch', marker]);
    const ms = performance.now() - started;
    console.info(
      `record --out FIFO without a reader: exit ${run.code} after ${ms.toFixed(0)} ms: ${run.stderr.trim()}`,
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `conntrack-monitor record: cannot write ${out}: ${out} is a FIFO that nothing reads: start its reader first\n`,
    );
    expect(ms).toBeLessThan(3000); // Node's start-up included
    expect(spawnSync('test', ['-e', marker]).status).toBe(1);
  });

  it('with a reader: the recording goes through the FIFO whole', async () => {
    const out = fifo('cat-reads');
    const copy = join(dir, 'copy.ndjson');
    const reader = spawn('sh', ['-c', `cat "$0" > "$1"`, out, copy]);
    const readerDone = new Promise((r) => reader.on('close', r));
    const run = await runCli([...RECORD, '--out', out, '--', 'sleep', '0.3']);
    await readerDone;
    expect(run.code).toBe(0);
    const recording = parseRecording(readFileSync(copy, 'utf8'));
    expect(recording.header).not.toBeNull();
    expect(recording.samples.length).toBeGreaterThanOrEqual(3);
    expect(recording.end).toMatchObject({ reason: 'command exited', exit: { code: 0, signal: null } });
  });

  it('with a reader that stops reading: writing stops after 5 s, said, and record still ends with the command', async () => {
    const out = fifo('stalled');
    // Opens the FIFO, shrinks its buffer to one page (F_SETPIPE_SZ) and never reads.
    const reader = spawn('python3', [
      '-c',
      'import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.fcntl(fd, 1031, 4096); print("open", flush=True); time.sleep(60)',
      out,
    ]);
    try {
      // The reader's open() waits for the writer: record opens the FIFO once the reader is there.
      await new Promise((r) => setTimeout(r, 300));
      const started = performance.now();
      const run = await runCli([...RECORD, '--out', out, '--', 'sleep', '1']);
      const ms = performance.now() - started;
      console.info(
        `record into a FIFO nobody reads from: exit ${run.code} after ${ms.toFixed(0)} ms: ${run.stderr.trim().split('\n').at(-1)}`,
      );
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(
        new RegExp(
          `conntrack-monitor record: writing ${out} failed \\(${out} was not read for 5 s\\): it holds the first \\d+ lines only\\n$`,
        ),
      );
      expect(ms).toBeLessThan(15_000);
    } finally {
      reader.kill();
    }
  }, 30_000);
});
