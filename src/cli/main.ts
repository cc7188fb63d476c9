/**
 * conntrack-monitor CLI: dispatches to a subcommand (watch by default; serve, check, advise,
 * drops, top, record, report).
 * Usage errors give one line on stderr and exit 2; a command may say them its own way (check:
 * the monitoring-plugins UNKNOWN status line on stdout, exit 3).
 */
import { UsageError } from './args.js';
import * as advise from './commands/advise.js';
import * as check from './commands/check.js';
import * as drops from './commands/drops.js';
import * as record from './commands/record.js';
import * as report from './commands/report.js';
import * as serve from './commands/serve.js';
import * as top from './commands/top.js';
import * as watch from './commands/watch.js';
import { printable } from '../errors.js';

interface Command {
  run(argv: string[]): Promise<number>;
  /** Reports a usage error (the message names the flag) and returns the exit code. */
  usageError?(message: string): number;
}
const COMMANDS: Record<string, Command> = { watch, serve, check, advise, drops, top, record, report };

/** Runs the command line `argv` (without node and the script) and resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const named = argv[0] !== undefined && Object.hasOwn(COMMANDS, argv[0]);
  const name = named ? argv[0]! : 'watch';
  const command = COMMANDS[name]!;
  try {
    return await command.run(named ? argv.slice(1) : argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (command.usageError) return command.usageError(err.message);
    const prefix = name === 'watch' ? 'conntrack-monitor' : `conntrack-monitor ${name}`;
    process.stderr.write(`${prefix}: ${printable(err.message)} (see --help)\n`);
    return 2;
  }
}
