#!/usr/bin/env node
/** The `conntrack-monitor` executable (package.json "bin"); the commands are in cli/. */
import { main } from './cli/main.js';

/**
 * How long the exit waits for stdout and stderr to take what was written: a pipe takes it only
 * as fast as its reader reads (`report --json | ...`), and exiting sooner would cut it short.
 */
const FLUSH_TIMEOUT_MS = 30_000;

/** Resolves once `stream` has handed everything written to it to the kernel, or cannot (EPIPE: no reader). */
const flushed = (stream: NodeJS.WriteStream) =>
  new Promise<void>((resolve) => {
    if (stream.writableLength === 0 || stream.destroyed) return resolve();
    stream.once('error', () => resolve());
    stream.write('', () => resolve());
  });

main(process.argv.slice(2)).then(
  async (code) => {
    process.exitCode = code;
    const timer = setTimeout(() => process.exit(code), FLUSH_TIMEOUT_MS).unref();
    await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
    clearTimeout(timer);
    // Nothing else should keep the loop alive; exit explicitly in case something does.
    setImmediate(() => process.exit(code)).unref();
  },
  (err: unknown) => {
    process.stderr.write(`conntrack-monitor: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
