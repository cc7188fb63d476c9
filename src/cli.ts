#!/usr/bin/env node
/** The `conntrack-monitor` executable (package.json "bin"); the commands are in cli/. */
import { main } from './cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Nothing else should keep the loop alive; exit explicitly in case something does.
    setImmediate(() => process.exit(code)).unref();
  },
  (err: unknown) => {
    process.stderr.write(`conntrack-monitor: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
