/**
 * `conntrack-monitor [watch]`: the live view on a terminal, one line per interval otherwise,
 * NDJSON with --json. On --duration expiry, SIGINT or SIGTERM it prints the final partial
 * sample (so totals are complete) and exits 0.
 */
import {
  ALL_NAMESPACES_FLAGS,
  ALL_NAMESPACES_HELP,
  allNamespacesOptions,
  checkAllNamespacesFlags,
  MAX_TIMER_S,
  MONITOR_FLAGS_HELP,
  parseCommand,
  seconds,
  withFlags,
} from '../args.js';
import { AllNamespacesMonitor, type AllNamespacesOptions } from '../../host/all-namespaces.js';
import {
  awaitShutdown,
  createMonitor,
  forcedExit,
  namespaceGone,
  startOrExplain,
  stopUnlessForced,
} from '../monitor.js';
import { formatNamespacesReport, formatSampleLine } from '../format.js';
import type { ConntrackSample } from '../../types.js';
import { LIVE_TOP, LiveView, readQuitKey } from '../live-view.js';
import { printable } from '../../errors.js';

export const usage = `Usage: conntrack-monitor [watch] [options]

Watch the conntrack table of a network namespace: entries against nf_conntrack_max,
per-second insert/delete rates from ctnetlink events, the kernel's drop counters and
TIME_WAIT occupancy. On a terminal: a live view. Otherwise one line per interval.

Other commands: serve, check, advise, drops, top, record, report (conntrack-monitor
COMMAND --help).

Options:
  --json                 one JSON sample per line (NDJSON), flushed per line
  --duration S           stop after S seconds (default: run until SIGINT/SIGTERM)
  --all-namespaces       every network namespace on the node (names under /var/run/netns
                         and those of all processes, with the Kubernetes pod that owns
                         each, from containerd's or CRI-O's files), one row each: entries,
                         max, fill, drop, insert_failed and insert rates, from one reader
                         thread that only reads counters (no table dumps); JSON lines are
                         { time, intervalMs, final, namespaces: [{ inode, name, pid, host,
                         pod, intervalMs, entries, max, fill, counts, rates, totals,
                         events, timeWait, tcpStates, protocols, drops, dropRate,
                         inserts, insertRate, totalDrops, source, error, unavailable }] }
${ALL_NAMESPACES_HELP}
${MONITOR_FLAGS_HELP}

ctnetlink needs CAP_NET_ADMIN (root); --netns also needs CAP_SYS_ADMIN. Without them
the auto backend reads /proc instead (fewer fields) and says so once on stderr.
Events are counted in the kernel by an eBPF socket filter (CAP_BPF or CAP_SYS_ADMIN, Linux
5.12+); without it a classic filter queues them to the monitor, and the sample's
events.path and events.pathReason say so.
SIGINT or SIGTERM (or q in the live view, as in top) stops it after the final sample;
further signals wait for it, except a second Ctrl-C a second or more later, which exits at
once (status 130).
Exit status: 0 after a clean stop, 1 if monitoring could not start or the watched
namespace was deleted (one line on stderr, after the final sample), 2 for bad usage.`;

export async function run(argv: string[]): Promise<number> {
  const { help, verbose, options, values } = parseCommand(argv, {
    json: { type: 'boolean' },
    duration: { type: 'string' },
    ...ALL_NAMESPACES_FLAGS,
  });
  if (help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const durationS = values.duration === undefined ? 0 : seconds('--duration', values.duration, 0, 0.001, MAX_TIMER_S);
  checkAllNamespacesFlags(values);
  if (values['all-namespaces'] === true)
    return allNamespaces(allNamespacesOptions(options, values), values.json === true, durationS);
  const live = values.json !== true && process.stdout.isTTY === true ? new LiveView(process.stdout) : null;
  // The live view keeps the fallback, warnings and errors on screen (stderr would be drawn
  // over), and shows what fills the table while it is under pressure.
  const monitor = createMonitor(
    live ? { ...options, snapshotOnPressure: { limit: LIVE_TOP } } : options,
    live ? { log: () => {} } : { eventsAuto: verbose },
  );
  if (live) {
    monitor.on('fallback', (f) => (live.fallback = f.reason));
    monitor.on('error', (e) => live.error(e.message)); // escaped where it is drawn
    monitor.on('pressure', (e) => (live.pressure = e.level));
    monitor.on('top', (r) => (live.top = r));
  }
  let final: ConntrackSample | null = null;
  monitor.on('sample', (s) => {
    if (s.final) final = s;
    if (values.json === true) process.stdout.write(`${JSON.stringify(s)}\n`);
    else if (live && !s.final) live.update(s);
    else if (!live) process.stdout.write(`${formatSampleLine(s)}\n`);
  });
  const gone = namespaceGone(monitor);
  if (!(await startOrExplain(monitor))) return 1;
  live?.open();
  const keys = live ? readQuitKey(process.stdin) : null;
  if (live && keys) live.quitKey = true;
  const shutdown = awaitShutdown(durationS > 0 ? durationS * 1000 : undefined, gone, keys?.quit);
  const why = await shutdown.requested;
  const finished = await stopUnlessForced(shutdown, () => monitor.stop());
  keys?.close();
  if (live) {
    live.close();
    if (final) process.stdout.write(`${formatSampleLine(final)}\n`);
  }
  if (!finished) return forcedExit();
  if (why === 'namespace gone') {
    if (live) process.stderr.write(`conntrack-monitor: ${printable(await gone)}\n`);
    return 1;
  }
  return 0;
}

async function allNamespaces(options: AllNamespacesOptions, json: boolean, durationS: number): Promise<number> {
  const host = withFlags(() => new AllNamespacesMonitor(options));
  const redraw = !json && process.stdout.isTTY === true;
  host.on('report', (r) => {
    if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      // On a terminal, laid out for its width at each redraw (a resize shows at the next report).
      const width = redraw ? (process.stdout.columns ?? 80) : Infinity;
      process.stdout.write(`${redraw && !r.final ? '\x1b[H\x1b[2J' : ''}${formatNamespacesReport(r, width)}\n`);
    }
  });
  host.on('error', (e) => process.stderr.write(`conntrack-monitor: ${printable(e.message)}\n`));
  try {
    await host.start();
  } catch (err) {
    process.stderr.write(`conntrack-monitor: cannot start: ${printable((err as Error).message)}\n`);
    return 1;
  }
  const shutdown = awaitShutdown(durationS > 0 ? durationS * 1000 : undefined);
  await shutdown.requested;
  return (await stopUnlessForced(shutdown, () => host.stop())) ? 0 : forcedExit();
}
