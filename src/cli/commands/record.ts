/**
 * `conntrack-monitor record --out FILE [-- COMMAND ARGS...]`: records the table while COMMAND
 * (a load test) runs, writes every sample to FILE as it comes, prints a summary and exits with
 * COMMAND's status.
 *
 * The one file in src/ that starts a process: the user's own COMMAND, from its argv, with
 * node:child_process spawn and no shell (nothing is parsed or expanded here), on this terminal's stdio.
 * SIGINT and SIGTERM are passed on to COMMAND, and record waits for it. A SIGINT typed on the
 * terminal (Ctrl-C) already reached COMMAND, which is in the same foreground process group:
 * that one is not sent again, since many tools (k6) take a second SIGINT as "abort now".
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { allNamespacesOptions, MONITOR_FLAGS_HELP, parseCommand, UsageError, withFlags } from '../args.js';
import { createMonitor } from '../monitor.js';
import { AllNamespacesMonitor } from '../../host/all-namespaces.js';
import { readFileBoundedSync } from '../../host/host-file.js';
import { DEFAULT_INTERVAL_MS } from '../../options.js';
import { recordingHeader } from '../../recording/header.js';
import { RecordingWriter } from '../../recording/writer.js';
import type { RecordingEnd } from '../../recording/format.js';
import { commandText } from '../../report/html.js';
import { RunsBuilder } from '../../report/runs.js';
import { formatRun } from '../../report/text.js';
import type { ConntrackMonitor } from '../../monitor.js';
import { printable } from '../../errors.js';

export const usage = `Usage: conntrack-monitor record --out FILE [options] [-- COMMAND [ARGS...]]

Record the conntrack table while COMMAND runs (a load test: wrk, k6, your own generator),
then print a summary. COMMAND runs with this terminal's stdin, stdout and stderr, from its
arguments as given: no shell is involved (run sh -c '...' as COMMAND if you want one).
Recording stops when COMMAND exits, and record exits with COMMAND's exit status (128+N if
signal N ended it). Without -- COMMAND it records until SIGINT or SIGTERM.

SIGINT and SIGTERM are passed on to COMMAND, and record waits for it to exit. Ctrl-C on the
terminal reaches COMMAND directly (same process group), so record does not send it twice.

FILE is NDJSON, written line by line as it happens (a crash leaves every line before it):
  {"type":"header", ...}      first: kernel, nf_conntrack_max, buckets, timeouts, CPUs,
                              hostname, start time, command, namespace
  {"type":"sample", ...}      each sample, as --json prints them
  {"type":"namespaces", ...}  with --all-namespaces instead: each report
  {"type":"notice", ...}      fallback to /proc, warnings, errors
  {"type":"end", ...}         last: when, and COMMAND's exit
conntrack-monitor report FILE summarizes it; report FILE --html OUT.html draws it.

Options:
  -o, --out FILE         where to write the recording (required; replaced if it exists;
                         a FIFO needs its reader running first)
  --all-namespaces       record every network namespace on the host
${MONITOR_FLAGS_HELP}

Exit status: COMMAND's (without COMMAND: 0 after SIGINT/SIGTERM); 1 if monitoring could not
start or FILE could not be written (COMMAND does not run then), 2 for bad usage, 126 if
COMMAND could not be run, 127 if it was not found.`;

type Signal = 'SIGINT' | 'SIGTERM';

export async function run(argv: string[]): Promise<number> {
  const split = argv.indexOf('--');
  const command = split < 0 ? null : argv.slice(split + 1);
  const { help, options, values } = parseCommand(split < 0 ? argv : argv.slice(0, split), {
    out: { type: 'string', short: 'o' },
    'all-namespaces': { type: 'boolean' },
  });
  if (help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const out = values.out;
  if (typeof out !== 'string' || out === '') throw new UsageError('--out FILE is required');
  if (command !== null && command.length === 0) throw new UsageError('nothing to run after --');
  const all = values['all-namespaces'] === true;
  if (all && options.netns !== undefined) throw new UsageError('--all-namespaces and --netns exclude each other');

  // Paths, the command and monitor messages come from elsewhere: one escaped line each.
  const log = (line: string) => process.stderr.write(`conntrack-monitor record: ${printable(line)}\n`);
  let source: ConntrackMonitor | AllNamespacesMonitor;
  if (all) source = withFlags(() => new AllNamespacesMonitor(allNamespacesOptions(options, {})));
  else source = createMonitor(options);

  // From here on a signal stops the recording (and goes on to COMMAND) instead of the process.
  const signals = new Signals();
  try {
    const header = recordingHeader({
      command,
      netns: all ? null : (source as ConntrackMonitor).options.netnsPath,
      allNamespaces: all,
      intervalMs: all ? (options.intervalMs ?? DEFAULT_INTERVAL_MS) : (source as ConntrackMonitor).options.intervalMs,
      backend: options.backend ?? 'auto',
    });
    let writer: RecordingWriter;
    try {
      writer = new RecordingWriter(out, header);
    } catch (err) {
      log(`cannot write ${out}: ${(err as Error).message}`);
      return 1;
    }
    // The summary printed at the end, built as samples come: bounded however long it records.
    const runs = new RunsBuilder(out);
    runs.add({ type: 'header', header });
    if (source instanceof AllNamespacesMonitor) {
      source.on('report', (r) => {
        runs.add({ type: 'namespaces', report: r });
        writer.report(r);
      });
      source.on('error', (e) => {
        log(e.message);
        writer.notice('error', e.message);
      });
    } else {
      source.on('sample', (s) => {
        runs.add({ type: 'sample', sample: s });
        writer.sample(s);
      });
      source.on('fallback', (f) => writer.notice('fallback', `using /proc instead of ctnetlink: ${f.reason}`));
      source.on('warning', (w) => writer.notice('warning', w.message));
      source.on('error', (e) => writer.notice('error', e.message));
    }

    try {
      await source.start();
    } catch (err) {
      const reason = `cannot start monitoring: ${(err as Error).message}`;
      log(command ? `${reason}; not running ${commandText(command)}` : reason);
      writer.close({ exit: null, reason });
      return 1;
    }

    let end: Omit<RecordingEnd, 'type' | 'endTime'>;
    let status: number;
    let ran = true;
    if (signals.received) {
      end = { exit: null, reason: signals.received };
      status = command ? 128 + constants.signals[signals.received] : 0;
    } else if (command) {
      ({ end, status, ran } = await runCommand(command, signals, log));
    } else {
      log(`recording to ${out} until SIGINT or SIGTERM`);
      end = { exit: null, reason: await signals.next() };
      status = 0;
    }
    await source.stop();
    writer.close(end);
    if (!ran) return status; // nothing ran: no summary that reads as if it had

    runs.add({ type: 'end', end: { type: 'end', endTime: new Date().toISOString(), ...end } });
    const summaries = runs.runs();
    const shown = summaries.slice(0, 5);
    process.stderr.write(`\n${shown.map(formatRun).join('\n')}\n`);
    if (summaries.length > shown.length)
      process.stderr.write(`(and ${summaries.length - shown.length} more namespaces)\n`);
    if (writer.error) {
      log(`writing ${out} failed (${writer.error.message}): it holds the first ${writer.lines} lines only`);
      return status || 1;
    }
    process.stderr.write(
      `recorded ${writer.lines} lines to ${printable(out)}; conntrack-monitor report ${printable(out)} --html report.html\n`,
    );
    return status;
  } finally {
    signals.close();
  }
}

/** Runs COMMAND, passing signals on; resolves once it has exited. */
async function runCommand(
  command: string[],
  signals: Signals,
  log: (line: string) => void,
): Promise<{ end: Omit<RecordingEnd, 'type' | 'endTime'>; status: number; ran: boolean }> {
  let child: ChildProcess;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: NodeJS.ErrnoException }>(
    (resolve) => {
      // The user's own command, from its argv: never through a shell.
      child = spawn(command[0]!, command.slice(1), { stdio: 'inherit', shell: false });
      child.once('error', (error: NodeJS.ErrnoException) => resolve({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => resolve({ code, signal }));
    },
  );
  signals.forward = (signal) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    if (signal === 'SIGINT' && terminalSentToGroup()) return; // COMMAND got this one itself
    child.kill(signal);
  };
  const result = await exited;
  signals.forward = null;
  if (result.error) {
    const notFound = result.error.code === 'ENOENT';
    log(`cannot run ${command[0]}: ${result.error.message} (no summary: nothing ran while recording)`);
    return {
      end: { exit: null, reason: `cannot run the command: ${result.error.message}` },
      status: notFound ? 127 : 126,
      ran: false,
    };
  }
  const status =
    result.signal !== null
      ? 128 + (constants.signals[result.signal as keyof typeof constants.signals] ?? 0)
      : (result.code ?? 1);
  return { end: { exit: { code: result.code, signal: result.signal }, reason: 'command exited' }, status, ran: true };
}

/**
 * True when this process is in its terminal's foreground process group: a SIGINT it gets is
 * then most likely the terminal's Ctrl-C, which the kernel sent to the whole group, COMMAND
 * included. From /proc/self/stat: pgrp (5th field) and tpgid (8th).
 */
function terminalSentToGroup(): boolean {
  try {
    const stat = readFileBoundedSync('/proc/self/stat', 4096);
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(fields[2]);
    const tpgid = Number(fields[5]);
    return tpgid > 0 && tpgid === pgrp;
  } catch {
    return false;
  }
}

/** SIGINT and SIGTERM while recording: remembered, handed to `forward`, awaitable. */
class Signals {
  received: Signal | null = null;
  forward: ((signal: Signal) => void) | null = null;
  private waiters: ((signal: Signal) => void)[] = [];
  private readonly onSignal = (signal: Signal) => {
    this.received ??= signal;
    this.forward?.(signal);
    for (const w of this.waiters.splice(0)) w(signal);
  };

  constructor() {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  next(): Promise<Signal> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}
