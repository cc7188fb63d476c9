/**
 * conntrack-monitor CLI: dispatches to a subcommand (watch by default; serve, check, advise,
 * drops, record, report).
 * Usage errors give one line on stderr and exit 2 (3 for check, the monitoring-plugins UNKNOWN).
 */
import { UsageError } from './args.js';
import * as advise from './commands/advise.js';
import * as check from './commands/check.js';
import * as drops from './commands/drops.js';
import * as record from './commands/record.js';
import * as report from './commands/report.js';
import * as serve from './commands/serve.js';
import * as watch from './commands/watch.js';

interface Command {
  run(argv: string[]): Promise<number>;
  USAGE_EXIT?: number;
}
const COMMANDS: Record<string, Command> = { watch, serve, check, advise, drops, record, report };

/** Runs the command line `argv` (without node and the script) and resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
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
