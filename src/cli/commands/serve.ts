/**
 * `conntrack-monitor serve`: /metrics in the Prometheus text format over node:http, from a
 * private prom-client registry filled at scrape time. Loopback unless told otherwise; a clean
 * shutdown on SIGTERM or SIGINT.
 */
import { createServer } from 'node:http';
import { MONITOR_FLAGS_HELP, number, parseCommand, UsageError } from '../args.js';
import {
  awaitShutdown,
  createMonitor,
  forcedExit,
  namespaceGone,
  startOrExplain,
  stopUnlessForced,
} from '../monitor.js';
import { DropMonitor } from '../../host/drop-monitor.js';
import { registerConntrackMetrics, registerDropMetrics, registerTopMetrics } from '../../metrics.js';
import { TOP_LIMIT_RANGE } from '../../options.js';

export const usage = `Usage: conntrack-monitor serve [--listen HOST:PORT] [options]

Serve the conntrack metrics at http://HOST:PORT/metrics for Prometheus.

Options:
  --listen HOST:PORT     address to listen on (default 127.0.0.1:9465: loopback only;
                         use 0.0.0.0:9465 or [::]:9465 to expose it)
  --drops                also nf_conntrack_table_full_drops_total{netns}: table-full drops
                         of every namespace on the host, from the eBPF probe (see drops)
  --top N                while the table is under pressure (75% full or more, or dropping),
                         a snapshot at most once a minute, exported as
                         nf_conntrack_top_entries{group,key}: the top N sources,
                         destinations, destination ports and states (plus key="other"), and
                         nf_conntrack_evictable_entries; absent while the pressure is ok
${MONITOR_FLAGS_HELP}

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
  });
  if (help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const { host, port } = parseListen(String(values.listen ?? '127.0.0.1:9465'));
  let Registry: new () => { metrics(): Promise<string>; contentType: string; registerMetric(m: unknown): void };
  try {
    ({ Registry } = require('prom-client'));
  } catch {
    process.stderr.write('conntrack-monitor: serve needs prom-client: npm install prom-client\n');
    return 1;
  }
  const top = values.top === undefined ? null : number('--top', values.top);
  if (top !== null && !(Number.isInteger(top) && top >= TOP_LIMIT_RANGE[0] && top <= TOP_LIMIT_RANGE[1]))
    throw new UsageError(`--top must be an integer from ${TOP_LIMIT_RANGE[0]} to ${TOP_LIMIT_RANGE[1]}, got ${top}`);
  const registry = new Registry();
  const monitor = createMonitor(top === null ? options : { ...options, snapshotOnPressure: { limit: top } }, {
    eventsAuto: verbose,
  });
  const gone = namespaceGone(monitor);
  registerConntrackMetrics(monitor, { registry });
  if (top !== null) registerTopMetrics(monitor, { registry });
  let drops: DropMonitor | null = null;
  if (values.drops === true) {
    drops = new DropMonitor({ intervalMs: monitor.options.intervalMs, topFlows: 0 });
    registerDropMetrics(drops, { registry });
    try {
      await drops.start();
    } catch (err) {
      process.stderr.write(`conntrack-monitor: --drops cannot run: ${(err as Error).message}\n`);
      return 1;
    }
  }
  if (!(await startOrExplain(monitor))) {
    await drops?.stop();
    return 1;
  }
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${err.message}\n`),
      );
    } else if (path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('conntrack-monitor: metrics at /metrics\n');
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    }
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
  } catch (err) {
    await monitor.stop();
    await drops?.stop();
    process.stderr.write(`conntrack-monitor: cannot listen on ${host}:${port}: ${(err as Error).message}\n`);
    return 1;
  }
  const bound = (server.address() as { port: number }).port; // the real port when --listen asked for 0
  process.stderr.write(
    `conntrack-monitor: serving http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics\n`,
  );
  const shutdown = awaitShutdown(undefined, gone);
  const why = await shutdown.requested;
  const finished = await stopUnlessForced(
    shutdown,
    () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
    () => monitor.stop(),
    async () => drops?.stop(),
  );
  if (!finished) return forcedExit();
  return why === 'namespace gone' ? 1 : 0; // the reason is on stderr already
}
