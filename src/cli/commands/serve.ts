/**
 * `conntrack-monitor serve`: /metrics in the Prometheus text format, from a private prom-client
 * registry rendered once per sample and served by MetricsServer (bounded whatever the clients
 * do). Loopback unless told otherwise; a clean shutdown on SIGTERM or SIGINT.
 */
import {
  ALL_NAMESPACES_FLAGS,
  ALL_NAMESPACES_HELP,
  allNamespacesOptions,
  checkAllNamespacesFlags,
  MONITOR_FLAGS_HELP,
  number,
  parseCommand,
  UsageError,
  withFlags,
} from '../args.js';
import { MetricsServer } from '../metrics-server.js';
import {
  awaitShutdown,
  createMonitor,
  forcedExit,
  namespaceGone,
  startOrExplain,
  stopUnlessForced,
} from '../monitor.js';
import { AllNamespacesMonitor } from '../../host/all-namespaces.js';
import { DropMonitor } from '../../host/drop-monitor.js';
import {
  registerAllNamespacesMetrics,
  registerConntrackMetrics,
  registerDropMetrics,
  registerTopMetrics,
} from '../../metrics.js';
import { TOP_LIMIT_RANGE } from '../../options.js';
import { printable } from '../../errors.js';

export const usage = `Usage: conntrack-monitor serve [--listen HOST:PORT] [options]

Serve the conntrack metrics at http://HOST:PORT/metrics for Prometheus.

Options:
  --listen HOST:PORT     address to listen on (default 127.0.0.1:9465: loopback only;
                         use 0.0.0.0:9465 or [::]:9465 to expose it)
  --all-namespaces       every network namespace on the node, one series per namespace
                         with the labels netns, pod_namespace and pod (the Kubernetes pod
                         that owns it, from containerd's or CRI-O's files; the host's
                         namespace has them empty), from one reader thread that reads only
                         counters; a namespace that goes leaves the next scrape
  --drops                also nf_conntrack_table_full_drops_total{netns}: table-full drops
                         of every namespace on the host, from the eBPF probe (see drops)
  --top N                while the table is under pressure (75% full or more, or dropping),
                         a snapshot at most once a minute, exported as
                         nf_conntrack_top_entries{group,key}: the top N sources,
                         destinations, destination ports and states (plus key="other"), and
                         what the kernel can reclaim: nf_conntrack_evictable_entries, of
                         which nf_conntrack_unassured_entries and
                         nf_conntrack_tcp_closing_entries; absent while the pressure is ok
                         (one namespace only: not with --all-namespaces)
  --no-process-metrics   leave out the exporter process's own metrics (process_* and
                         nodejs_*: CPU, memory, open files, event loop lag, heap, GC;
                         prom-client's default metrics), which are served by default
${ALL_NAMESPACES_HELP}
${MONITOR_FLAGS_HELP}

conntrack_monitor_scrape_duration_seconds is how long collecting and rendering the metrics
took, the previous time (the rendering it is in cannot time itself).

The server's memory stays bounded whatever clients do: at most 512 connections (one more
closes the one idle longest), a request head within 5 s and 8 KiB, no request bodies, 16
requests pipelined ahead of their answers and 1000 per connection, then Connection: close;
a client that takes none of its answer for 10 s is disconnected. The metrics are rendered
once per interval and every scrape shares that rendering.

Needs prom-client next to conntrack-monitor (npm install prom-client). Exits 0 on SIGTERM
or SIGINT, 1 when it cannot start or the --netns namespace is deleted.`;

export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new UsageError(`--listen expects HOST:PORT such as 127.0.0.1:9465, got '${text}'`);
  return { host: match[1] ?? match[2]!, port };
}

export async function run(argv: string[]): Promise<number> {
  const { help, verbose, options, values } = parseCommand(argv, {
    listen: { type: 'string' },
    drops: { type: 'boolean' },
    top: { type: 'string' },
    'no-process-metrics': { type: 'boolean' },
    ...ALL_NAMESPACES_FLAGS,
  });
  if (help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  checkAllNamespacesFlags(values);
  const { host, port } = parseListen(String(values.listen ?? '127.0.0.1:9465'));
  let promClient: PromClient;
  try {
    promClient = require('prom-client');
  } catch {
    process.stderr.write('conntrack-monitor: serve needs prom-client: npm install prom-client\n');
    return 1;
  }
  const top = values.top === undefined ? null : number('--top', values.top);
  if (top !== null && !(Number.isInteger(top) && top >= TOP_LIMIT_RANGE[0] && top <= TOP_LIMIT_RANGE[1]))
    throw new UsageError(`--top must be an integer from ${TOP_LIMIT_RANGE[0]} to ${TOP_LIMIT_RANGE[1]}, got ${top}`);
  const registry = new promClient.Registry();
  // The exporter's own process, as every prom-client exporter (and node_exporter) serves it;
  // less three gauges named like counters (promtool rejects them), each the sum of a series
  // that stays (nodejs_active_handles{type}, ...).
  if (values['no-process-metrics'] !== true) {
    promClient.collectDefaultMetrics({ register: registry });
    for (const what of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`nodejs_active_${what}_total`);
  }
  const scrapeDuration = new promClient.Gauge({
    name: 'conntrack_monitor_scrape_duration_seconds',
    help: 'Seconds the previous collection and rendering of these metrics took (once per interval; scrapes share it)',
    registers: [registry],
  });
  const all = values['all-namespaces'] === true;
  if (all && top !== null) throw new UsageError('--top reads one namespace: it cannot be used with --all-namespaces');
  const monitor = all
    ? nodeMonitor(allNamespacesOptions(options, values))
    : createMonitor(top === null ? options : { ...options, snapshotOnPressure: { limit: top } }, {
        eventsAuto: verbose,
      });
  const gone = monitor instanceof AllNamespacesMonitor ? undefined : namespaceGone(monitor);
  if (monitor instanceof AllNamespacesMonitor) registerAllNamespacesMetrics(monitor, { registry });
  else registerConntrackMetrics(monitor, { registry });
  if (top !== null && !(monitor instanceof AllNamespacesMonitor)) registerTopMetrics(monitor, { registry });
  let drops: DropMonitor | null = null;
  if (values.drops === true) {
    drops = new DropMonitor({ intervalMs: monitor.options.intervalMs, topFlows: 0 });
    registerDropMetrics(drops, { registry });
    try {
      await drops.start();
    } catch (err) {
      process.stderr.write(`conntrack-monitor: --drops cannot run: ${printable((err as Error).message)}\n`);
      return 1;
    }
  }
  if (!(await startOrExplain(monitor))) {
    await drops?.stop();
    return 1;
  }
  const render = async () => {
    const started = performance.now();
    const text = await registry.metrics();
    scrapeDuration.set((performance.now() - started) / 1000);
    return text;
  };
  const server = new MetricsServer({ render, contentType: registry.contentType });
  // Rendered once per new sample (or snapshot) and shared by every scrape until the next one.
  if (monitor instanceof AllNamespacesMonitor) monitor.on('report', () => void server.refresh());
  else {
    monitor.on('sample', () => void server.refresh());
    if (top !== null) monitor.on('top', () => void server.refresh());
  }
  drops?.on('sample', () => void server.refresh());
  let bound: number;
  try {
    await server.start();
    bound = await server.listen(port, host); // the real port when --listen asked for 0
  } catch (err) {
    await monitor.stop();
    await drops?.stop();
    process.stderr.write(
      `conntrack-monitor: cannot listen on ${printable(`${host}:${port}: ${(err as Error).message}`)}\n`,
    );
    return 1;
  }
  process.stderr.write(
    `conntrack-monitor: serving http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics\n`,
  );
  const shutdown = awaitShutdown(undefined, gone);
  const why = await shutdown.requested;
  const finished = await stopUnlessForced(
    shutdown,
    () => server.close(),
    () => monitor.stop(),
    async () => drops?.stop(),
  );
  if (!finished) return forcedExit();
  return why === 'namespace gone' ? 1 : 0; // the reason is on stderr already
}

/** What serve uses of prom-client (an optional peer, loaded when serve runs). */
interface PromClient {
  Registry: new () => {
    metrics(): Promise<string>;
    contentType: string;
    registerMetric(m: unknown): void;
    removeSingleMetric(name: string): void;
  };
  Gauge: new (config: { name: string; help: string; registers: unknown[] }) => { set(value: number): void };
  collectDefaultMetrics(config: { register: unknown }): void;
}

/** The node-wide monitor, with errors on stderr as createMonitor() does for one namespace. */
function nodeMonitor(options: ConstructorParameters<typeof AllNamespacesMonitor>[0]): AllNamespacesMonitor {
  const monitor = withFlags(() => new AllNamespacesMonitor(options));
  monitor.on('error', (e) => process.stderr.write(`conntrack-monitor: ${printable(e.message)}\n`));
  return monitor;
}
