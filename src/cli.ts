#!/usr/bin/env node
/**
 * conntrack-monitor CLI: dispatches to a subcommand (watch by default; serve, check, advise,
 * drops).
 * Usage errors give one line on stderr and exit 2 (3 for check, the monitoring-plugins UNKNOWN).
 */
import { UsageError } from './cli-args.js';
import * as advise from './command-advise.js';
import * as check from './command-check.js';
import * as drops from './command-drops.js';
import * as serve from './command-serve.js';
import * as watch from './command-watch.js';

interface Command {
  run(argv: string[]): Promise<number>;
  USAGE_EXIT?: number;
}
const COMMANDS: Record<string, Command> = { watch, serve, check, advise, drops };

async function main(argv: string[]): Promise<number> {
  const named = argv[0] !== undefined && Object.hasOwn(COMMANDS, argv[0]);
  const name = named ? argv[0]! : 'watch';
  const command = COMMANDS[name]!;
  try {
    return await command.run(named ? argv.slice(1) : argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    const prefix = name === 'watch' ? 'conntrack-monitor' : `conntrack-monitor ${name}`;
    process.stderr.write(`${prefix}: ${err.message} (see --help)\n`);
    return command.USAGE_EXIT ?? 2;
  }
}

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
