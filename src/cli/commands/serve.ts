/**
 * `conntrack-monitor serve`: /metrics in the Prometheus text format over node:http, from a
 * private prom-client registry filled at scrape time. Loopback unless told otherwise; a clean
 * shutdown on SIGTERM or SIGINT.
 */
import { createServer } from 'node:http';
import {
  ALL_NAMESPACES_FLAGS,
  ALL_NAMESPACES_HELP,
  allNamespacesOptions,
  checkAllNamespacesFlags,
  MONITOR_FLAGS_HELP,
  parseCommand,
  UsageError,
  withFlags,
} from '../args.js';
import { createMonitor, startOrExplain, untilStopped } from '../monitor.js';
import { AllNamespacesMonitor } from '../../host/all-namespaces.js';
import { DropMonitor } from '../../host/drop-monitor.js';
import { registerAllNamespacesMetrics, registerConntrackMetrics, registerDropMetrics } from '../../metrics.js';

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
${ALL_NAMESPACES_HELP}
${MONITOR_FLAGS_HELP}

Needs prom-client next to conntrack-monitor (npm install prom-client).`;

export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new UsageError(`--listen expects HOST:PORT such as 127.0.0.1:9465, got '${text}'`);
  return { host: match[1] ?? match[2]!, port };
}

export async function run(argv: string[]): Promise<number> {
  const { help, options, values } = parseCommand(argv, {
    listen: { type: 'string' },
    drops: { type: 'boolean' },
    ...ALL_NAMESPACES_FLAGS,
  });
  if (help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  checkAllNamespacesFlags(values);
  const { host, port } = parseListen(String(values.listen ?? '127.0.0.1:9465'));
  let Registry: new () => { metrics(): Promise<string>; contentType: string; registerMetric(m: unknown): void };
  try {
    ({ Registry } = require('prom-client'));
  } catch {
    process.stderr.write('conntrack-monitor: serve needs prom-client: npm install prom-client\n');
    return 1;
  }
  const registry = new Registry();
  const monitor =
    values['all-namespaces'] === true ? nodeMonitor(allNamespacesOptions(options, values)) : createMonitor(options);
  if (monitor instanceof AllNamespacesMonitor) registerAllNamespacesMetrics(monitor, { registry });
  else registerConntrackMetrics(monitor, { registry });
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
  await untilStopped();
  await new Promise((resolve) => {
    server.close(resolve);
    server.closeAllConnections();
  });
  await monitor.stop();
  await drops?.stop();
  return 0;
}

/** The node-wide monitor, with errors on stderr as createMonitor() does for one namespace. */
function nodeMonitor(options: ConstructorParameters<typeof AllNamespacesMonitor>[0]): AllNamespacesMonitor {
  const monitor = withFlags(() => new AllNamespacesMonitor(options));
  monitor.on('error', (e) => process.stderr.write(`conntrack-monitor: ${e.message}\n`));
  return monitor;
}
