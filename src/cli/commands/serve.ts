/**
 * `conntrack-monitor serve`: /metrics in the Prometheus text format, from a private prom-client
 * registry rendered once per sample and served by MetricsServer (bounded whatever the clients
 * do). Loopback unless told otherwise; a clean shutdown on SIGTERM or SIGINT.
 */
import { MONITOR_FLAGS_HELP, parseCommand, UsageError } from '../args.js';
import { MetricsServer } from '../metrics-server.js';
import { createMonitor, startOrExplain, untilStopped } from '../monitor.js';
import { DropMonitor } from '../../host/drop-monitor.js';
import { registerConntrackMetrics, registerDropMetrics } from '../../metrics.js';

export const usage = `Usage: conntrack-monitor serve [--listen HOST:PORT] [options]

Serve the conntrack metrics at http://HOST:PORT/metrics for Prometheus.

Options:
  --listen HOST:PORT     address to listen on (default 127.0.0.1:9465: loopback only;
                         use 0.0.0.0:9465 or [::]:9465 to expose it)
  --drops                also nf_conntrack_table_full_drops_total{netns}: table-full drops
                         of every namespace on the host, from the eBPF probe (see drops)
${MONITOR_FLAGS_HELP}

The server's memory stays bounded whatever clients do: at most 512 connections (one more
closes the one idle longest), a request head within 5 s and 8 KiB, no request bodies, 16
requests pipelined ahead of their answers and 1000 per connection, then Connection: close;
a client that takes none of its answer for 10 s is disconnected. The metrics are rendered
once per interval and every scrape shares that rendering.

Needs prom-client next to conntrack-monitor (npm install prom-client).`;

export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new UsageError(`--listen expects HOST:PORT such as 127.0.0.1:9465, got '${text}'`);
  return { host: match[1] ?? match[2]!, port };
}

export async function run(argv: string[]): Promise<number> {
  const { help, options, values } = parseCommand(argv, { listen: { type: 'string' }, drops: { type: 'boolean' } });
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
  const registry = new Registry();
  const monitor = createMonitor(options);
  registerConntrackMetrics(monitor, { registry });
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
  const server = new MetricsServer({ render: () => registry.metrics(), contentType: registry.contentType });
  // Rendered once per new sample and shared by every scrape until the next one.
  monitor.on('sample', () => void server.refresh());
  drops?.on('sample', () => void server.refresh());
  let bound: number;
  try {
    await server.start();
    bound = await server.listen(port, host); // the real port when --listen asked for 0
  } catch (err) {
    await monitor.stop();
    await drops?.stop();
    process.stderr.write(`conntrack-monitor: cannot listen on ${host}:${port}: ${(err as Error).message}\n`);
    return 1;
  }
  process.stderr.write(
    `conntrack-monitor: serving http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics\n`,
  );
  await untilStopped();
  await server.close();
  await monitor.stop();
  await drops?.stop();
  return 0;
}
