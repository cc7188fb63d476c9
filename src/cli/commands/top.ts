/**
 * `conntrack-monitor top`: what fills the table. One dump of the namespace's table, grouped by
 * source, destination, destination port and state, with the entries the kernel may reclaim;
 * `--watch` repeats it every interval, never two dumps at once.
 */
import { awaitShutdown } from '../monitor.js';
import { number, parseFlags, UsageError, withFlags } from '../args.js';
import { resolveTopOptions } from '../../options.js';
import { formatGroup, wrapWords } from '../format.js';
import { topEntries, type TopItem, type TopReport } from '../../top.js';
import { evictableVerdict, ofMax, reclaimableText } from '../../verdict.js';
import { printable } from '../../errors.js';

export const usage = `Usage: conntrack-monitor top [--netns NAME|PATH] [--json] [--limit N] [--watch] [--interval MS]

What fills the conntrack table: one ctnetlink dump of the namespace's table, grouped by
source address, destination address, destination port ("udp/53", "tcp/443",
"icmp/echo-request") and state ("tcp/TIME_WAIT", "udp/UNREPLIED", "udp/REPLIED",
"udp/ASSURED"), all from the original direction, the heaviest N of each with the rest as
"other", with their share of nf_conntrack_max; how many entries the kernel can reclaim:
unassured ones (no [ASSURED]: early_drop evicts them for new ones) and closing TCP (FIN_WAIT,
CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE: the garbage collector evicts them once an insert
failed at 95% full), and what mostly fills the table, with the knob that acts on it. Exact
for that snapshot.

Options:
  --netns NAME|PATH      namespace: a name under /var/run/netns or a path such as
                         /proc/PID/ns/net (default: this process's namespace)
  --limit N              keys per group, 1 to 1000 (default 10)
  --json                 one JSON object per snapshot and line (NDJSON):
                         { time, netns, max, entries, evictable, unassured, tcpClosing,
                         bySource, byDestination, byDestinationPort, byState,
                         unavailable }, each group [{ key, entries }]
  --watch                repeat every interval until SIGINT/SIGTERM
  --interval MS          with --watch, at most one dump per MS milliseconds (default 5000,
                         at least 1000); a dump that takes longer delays the next
  -h, --help             show this help

A dump walks the whole global hash table whatever the namespace holds (~0.7 s of kernel
time for 262,144 entries on a 2-vCPU VM). Needs CAP_NET_ADMIN (root); --netns also
CAP_SYS_ADMIN. Exit status: 0, 1 if the table could not be read, 2 for bad usage.`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, {
    netns: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
    watch: { type: 'boolean' },
    interval: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const options = {
    ...(values.netns === undefined ? {} : { netns: String(values.netns) }),
    ...(values.limit === undefined ? {} : { limit: number('--limit', String(values.limit)) }),
  };
  withFlags(() => resolveTopOptions(options));
  if (values.interval !== undefined && values.watch !== true) throw new UsageError('--interval needs --watch');
  const intervalMs = values.interval === undefined ? 5000 : number('--interval', String(values.interval));
  if (!Number.isInteger(intervalMs) || intervalMs < 1000 || intervalMs > 3_600_000)
    throw new UsageError(`--interval must be an integer from 1000 to 3600000, got ${values.interval}`);
  const json = values.json === true;
  const redraw = values.watch === true && !json && process.stdout.isTTY === true;

  if (values.watch !== true) return (await snapshot(options, json, false, undefined)) ? 0 : 1;

  // --watch: one dump at a time, the next no sooner than an interval after the previous began.
  // The signal handlers stay to the end (awaitShutdown): a second SIGTERM, as timeout(1)
  // sends one, does not kill the process while the dump in flight is cancelled.
  const controller = new AbortController();
  void awaitShutdown().requested.then(() => controller.abort());
  while (!controller.signal.aborted) {
    const started = Date.now();
    if (!(await snapshot(options, json, redraw, controller.signal))) return controller.signal.aborted ? 0 : 1;
    await sleep(Math.max(0, started + intervalMs - Date.now()), controller.signal);
  }
  return 0;
}

/** Takes and prints one snapshot; false (said on stderr) when the table could not be read. */
async function snapshot(
  options: { netns?: string; limit?: number },
  json: boolean,
  redraw: boolean,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  let report: TopReport;
  try {
    report = await topEntries({ ...options, ...(signal ? { signal } : {}) });
  } catch (err) {
    if (signal?.aborted) return false;
    process.stderr.write(`conntrack-monitor top: cannot read the table: ${printable((err as Error).message)}\n`);
    return false;
  }
  if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else process.stdout.write(`${redraw ? '\x1b[H\x1b[2J' : ''}${formatTopReport(report)}\n`);
  return true;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** The report as compact text tables, one per group, under its verdict. */
export function formatTopReport(r: TopReport): string {
  const verdict = evictableVerdict(r);
  const head = [
    `${r.time.slice(11, 19)}  ${r.netns === null ? 'this namespace' : printable(r.netns)}: ${r.entries} entries${ofMax(r.max)(r.entries)}, ${reclaimableText(r)}`,
    ...wrapWords(`${verdict.text.charAt(0).toUpperCase()}${verdict.text.slice(1)}.`, 100, '  ', '  '),
  ].join('\n');
  const groups: [string, TopItem[]][] = [
    ['SOURCE', r.bySource],
    ['DESTINATION', r.byDestination],
    ['DEST PORT', r.byDestinationPort],
    ['STATE', r.byState],
  ];
  const lines = [head];
  for (const [title, items] of groups) lines.push('', ...formatGroup(title, items, r.max));
  return lines.join('\n');
}
