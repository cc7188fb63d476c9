#!/usr/bin/env node
/**
 * conntrack-monitor CLI: one sample per interval, as a human line or as NDJSON (--json).
 * On --duration expiry, SIGINT or SIGTERM it prints the final partial sample and exits 0.
 */
import { parseArgs } from 'node:util';
import { ConntrackError } from './errors.js';
import { formatSampleLine } from './format.js';
import { ConntrackMonitor } from './monitor.js';
import type { ConntrackMonitorOptions } from './types.js';

const USAGE = `Usage: conntrack-monitor [options]

Watch the conntrack table of a network namespace: entries against nf_conntrack_max,
per-second insert/delete rates from ctnetlink events, and the kernel's drop counters.

Options:
  --json                 one JSON sample per line (NDJSON), flushed per line
  --netns NAME|PATH      namespace to watch: a name under /var/run/netns or a path
                         such as /proc/PID/ns/net (default: this process's namespace)
  --interval MS          interval length in milliseconds (default 1000)
  --duration S           stop after S seconds (default: run until SIGINT/SIGTERM)
  --receive-buffer BYTES event socket receive buffer (default 33554432)
  --backend NAME         auto (default): ctnetlink, else /proc; netlink; proc
  --resync-interval MS   re-dump the table every MS milliseconds to reconcile the
                         tracked entries (default 60000; 0: only after lost events)
  -h, --help             show this help

ctnetlink needs CAP_NET_ADMIN (root); --netns also needs CAP_SYS_ADMIN. Without them
the auto backend reads /proc instead (fewer fields) and says so once on stderr.
Exit status: 0 after a clean stop, 1 if monitoring could not start, 2 for bad usage.`;

class UsageError extends Error {}

interface CliArgs {
  json: boolean;
  durationMs: number | undefined;
  options: ConntrackMonitorOptions;
}

function parse(argv: string[]): CliArgs | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        json: { type: 'boolean', default: false },
        netns: { type: 'string' },
        interval: { type: 'string' },
        duration: { type: 'string' },
        'receive-buffer': { type: 'string' },
        'resync-interval': { type: 'string' },
        backend: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]);
  }
  if (values.help) return 'help';
  const options: ConntrackMonitorOptions = {};
  if (values.netns !== undefined) options.netns = values.netns;
  if (values.interval !== undefined) options.intervalMs = number('--interval', values.interval);
  if (values['receive-buffer'] !== undefined) {
    options.receiveBufferBytes = number('--receive-buffer', values['receive-buffer']);
  }
  if (values.backend !== undefined) options.backend = values.backend as ConntrackMonitorOptions['backend'];
  if (values['resync-interval'] !== undefined) {
    options.resyncIntervalMs = number('--resync-interval', values['resync-interval']);
  }
  let durationMs: number | undefined;
  if (values.duration !== undefined) {
    const seconds = number('--duration', values.duration);
    if (!(seconds > 0) || seconds > 31_536_000) {
      throw new UsageError(`--duration must be from 0 to 31536000 seconds, got ${values.duration}`);
    }
    durationMs = seconds * 1000;
  }
  return { json: values.json ?? false, durationMs, options };
}

/** Option errors name library options; on the command line, name the flags instead. */
function asFlags(message: string): string {
  return message
    .replace(/^intervalMs\b/, '--interval')
    .replace(/^receiveBufferBytes\b/, '--receive-buffer')
    .replace(/^resyncIntervalMs\b/, '--resync-interval')
    .replace(/^netns\b/, '--netns')
    .replace(/^backend\b/, '--backend');
}

function number(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) {
    throw new UsageError(`${flag} expects a number, got '${text}'`);
  }
  return value;
}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parse(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`conntrack-monitor: ${err.message} (see --help)\n`);
      return 2;
    }
    throw err;
  }
  if (args === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }

  let monitor: ConntrackMonitor;
  try {
    monitor = new ConntrackMonitor(args.options);
  } catch (err) {
    process.stderr.write(`conntrack-monitor: ${asFlags((err as Error).message)} (see --help)\n`);
    return 2;
  }
  const write = args.json
    ? (line: unknown) => process.stdout.write(`${JSON.stringify(line)}\n`)
    : (line: Parameters<typeof formatSampleLine>[0]) => process.stdout.write(`${formatSampleLine(line)}\n`);
  monitor.on('sample', (s) => write(s));
  monitor.on('error', (e) => process.stderr.write(`conntrack-monitor: ${e.message}\n`));
  monitor.on('fallback', (f) =>
    process.stderr.write(
      `conntrack-monitor: using /proc instead of ctnetlink: ${f.reason}. ` +
        'Without ctnetlink there are no insert/delete rates and no conntrack TIME_WAIT or state counts.\n',
    ),
  );
  monitor.on('warning', (w) => process.stderr.write(`conntrack-monitor: warning: ${w.message}\n`));

  try {
    await monitor.start();
  } catch (err) {
    const reason = err instanceof ConntrackError ? err.message : String(err);
    process.stderr.write(`conntrack-monitor: cannot start: ${reason}\n`);
    return 1;
  }

  await new Promise<void>((resolve) => {
    const finish = () => resolve();
    process.once('SIGINT', finish);
    process.once('SIGTERM', finish);
    process.stdout.once('error', finish); // EPIPE: the reader went away
    if (args.durationMs !== undefined) setTimeout(finish, args.durationMs);
  });
  await monitor.stop();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Nothing else should keep the loop alive; exit explicitly in case a signal listener does.
    setImmediate(() => process.exit(code)).unref();
  },
  (err: unknown) => {
    process.stderr.write(`conntrack-monitor: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
