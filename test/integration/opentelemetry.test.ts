/**
 * The OpenTelemetry instruments on the real kernel, through the real SDK: its Prometheus
 * exporter scraped over HTTP (and checked by promtool), and its OTLP/HTTP exporter sending to
 * a receiver here that decodes what it gets. The values are the kernel's own: the namespace's
 * nf_conntrack_count, nf_conntrack_max, and the nft `ct state new` counter after a known
 * number of flows. Node-wide: a namespace made while running appears with its own values,
 * and once deleted is observed no more.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type MetricReader,
} from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import {
  AllNamespacesMonitor,
  registerAllNamespacesOpenTelemetryMetrics,
  registerOpenTelemetryMetrics,
} from '../../dist/index.js';
import { canRunIntegration } from '../helpers/gate';
import type { TestNamespace } from '../helpers/netns';
import { nextSamples } from '../helpers/samples';
import { defer, namespace, startMonitor } from '../helpers/scope';

const SCOPE = 'conntrack-monitor';

/** An HTTP server on a free loopback port, closed after the test. */
async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  defer(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A MeterProvider with these readers, shut down after the test. */
function provider(...readers: MetricReader[]): MeterProvider {
  const p = new MeterProvider({ readers });
  defer(() => p.shutdown());
  return p;
}

/** The SDK's Prometheus exporter behind a server of ours: its documented request handler. */
async function prometheus(): Promise<{ exporter: PrometheusExporter; scrape: () => Promise<string> }> {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const url = await listen(createServer((req, res) => exporter.getMetricsRequestHandler(req, res)));
  return { exporter, scrape: async () => (await fetch(`${url}/metrics`)).text() };
}

/** The value of the one series of `name` whose labels include `labels` (as written in the text). */
function value(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** What a scrape says of a namespace, by the series whose labels include `labels`. */
function scraped(text: string, labels: string) {
  return {
    count: value(text, 'system_network_conntrack_count', labels),
    max: value(text, 'system_network_conntrack_max', labels),
    inserts: value(text, 'conntrack_inserts_total', labels),
  };
}

/** What the kernel says of a namespace. */
async function kernel(ns: TestNamespace) {
  return {
    count: await ns.count(),
    max: Number((await ns.exec('cat', ['/proc/sys/net/netfilter/nf_conntrack_max'])).trim()),
    inserts: await ns.newFlows(),
  };
}

const promtool = (text: string) => spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });

/** One OTLP/JSON data point as the receiver decodes it. */
interface OtlpPoint {
  attributes: Record<string, string>;
  value: number;
}
interface OtlpMetric {
  name: string;
  unit: string;
  description: string;
  kind: 'sum' | 'gauge';
  monotonic: boolean;
  temporality: number;
  points: OtlpPoint[];
}

/** A local OTLP/HTTP receiver: decodes each JSON export request into its metrics. */
async function otlpReceiver() {
  const requests: { contentType: string; metrics: OtlpMetric[] }[] = [];
  const decode = (body: string): OtlpMetric[] => {
    type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean };
    type Point = { attributes?: { key: string; value: AnyValue }[]; asInt?: string | number; asDouble?: number };
    type Data = { dataPoints: Point[]; isMonotonic?: boolean; aggregationTemporality?: number };
    type Metric = { name: string; unit?: string; description?: string; sum?: Data; gauge?: Data };
    const parsed = JSON.parse(body) as { resourceMetrics: { scopeMetrics: { metrics: Metric[] }[] }[] };
    return parsed.resourceMetrics.flatMap((r) =>
      r.scopeMetrics.flatMap((s) =>
        s.metrics.map((m) => {
          const data = (m.sum ?? m.gauge)!;
          return {
            name: m.name,
            unit: m.unit ?? '',
            description: m.description ?? '',
            kind: m.sum ? ('sum' as const) : ('gauge' as const),
            monotonic: data.isMonotonic ?? false,
            temporality: data.aggregationTemporality ?? 0,
            points: data.dataPoints.map((p) => ({
              attributes: Object.fromEntries(
                (p.attributes ?? []).map((a) => [a.key, String(a.value.stringValue ?? a.value.intValue)]),
              ),
              value: Number(p.asInt ?? p.asDouble),
            })),
          };
        }),
      ),
    );
  };
  const read = async (req: IncomingMessage) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    return body;
  };
  const url = await listen(
    createServer((req, res) => {
      void read(req).then((body) => {
        requests.push({ contentType: req.headers['content-type'] ?? '', metrics: decode(body) });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    }),
  );
  return { url: `${url}/v1/metrics`, requests };
}

describe.skipIf(!canRunIntegration)('OpenTelemetry instruments on the real kernel', () => {
  it('Prometheus exporter: count = nf_conntrack_count, max = nf_conntrack_max, inserts = nft counter; promtool parses it', async () => {
    const ns = await namespace('otel-prom');
    const { monitor } = await startMonitor(ns);
    const { exporter, scrape } = await prometheus();
    registerOpenTelemetryMetrics(provider(exporter).getMeter(SCOPE), monitor);
    await nextSamples(monitor, 1);
    await ns.traffic('tcp', 7);
    await ns.traffic('udp', 23);
    await nextSamples(monitor, 2);
    const text = await scrape();
    const truth = await kernel(ns);
    const labels = `conntrack_netns="${ns.name}",otel_scope_name="${SCOPE}"`;
    const got = scraped(text, labels);
    console.info(
      `Prometheus exporter: system_network_conntrack_count ${got.count} (nf_conntrack_count ${truth.count}), ` +
        `system_network_conntrack_max ${got.max} (nf_conntrack_max ${truth.max}), ` +
        `conntrack_inserts_total ${got.inserts} (nft ct state new counter ${truth.inserts})`,
    );
    expect(truth.inserts).toBe(30);
    expect(got).toEqual(truth);
    expect(text).toMatch(/^# TYPE system_network_conntrack_count gauge$/m);
    expect(text).toMatch(/^# TYPE conntrack_inserts_total counter$/m);
    expect(value(text, 'conntrack_deletes_total', labels)).toBeGreaterThanOrEqual(0);

    // promtool parses the scrape (exit 1 would be a parse error). Its lint (exit 3) flags
    // only the `_count` ending of the two `.count` instruments, which the OpenTelemetry
    // conventions name so (the hostmetrics receiver's system.network.conntrack.count).
    const check = promtool(text);
    const complaints = `${check.stdout}${check.stderr}`.trim().split('\n').sort();
    console.info(`promtool check metrics: exit ${check.status}: ${complaints.join('; ')}`);
    expect(complaints).toEqual([
      'conntrack_entry_count non-histogram and non-summary metrics should not have "_count" suffix',
      'system_network_conntrack_count non-histogram and non-summary metrics should not have "_count" suffix',
    ]);
    expect(check.status).toBe(3);
  });

  it('OTLP/HTTP exporter to a local receiver: the decoded export carries the kernel values, kinds and units', async () => {
    const ns = await namespace('otel-otlp');
    const { monitor } = await startMonitor(ns);
    const receiver = await otlpReceiver();
    const reader = new PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter({ url: receiver.url }),
      exportIntervalMillis: 3_600_000,
    });
    registerOpenTelemetryMetrics(provider(reader).getMeter(SCOPE), monitor);
    await nextSamples(monitor, 1);
    await ns.traffic('udp-echo', 11);
    await ns.traffic('tcp', 5);
    await nextSamples(monitor, 2);
    await reader.forceFlush();
    const truth = await kernel(ns);
    expect(receiver.requests).toHaveLength(1);
    const { contentType, metrics } = receiver.requests[0]!;
    const metric = (name: string) => metrics.find((m) => m.name === name)!;
    const only = (name: string) => {
      const points = metric(name).points;
      expect(points, name).toHaveLength(1);
      expect(points[0]!.attributes, name).toEqual({ 'conntrack.netns': ns.name });
      return points[0]!.value;
    };
    const got = {
      count: only('system.network.conntrack.count'),
      max: only('system.network.conntrack.max'),
      inserts: only('conntrack.inserts'),
    };
    console.info(
      `OTLP/HTTP (${contentType}, ${metrics.length} metrics): system.network.conntrack.count ${got.count} ` +
        `(nf_conntrack_count ${truth.count}), system.network.conntrack.max ${got.max} (nf_conntrack_max ${truth.max}), ` +
        `conntrack.inserts ${got.inserts} (nft ct state new counter ${truth.inserts})`,
    );
    expect(contentType).toBe('application/json');
    expect(truth.inserts).toBe(16);
    expect(got).toEqual(truth);
    const CUMULATIVE = 2; // AggregationTemporality in OTLP's encoding
    for (const [name, description] of [
      ['system.network.conntrack.count', 'The count of entries in conntrack table.'],
      ['system.network.conntrack.max', 'The limit for entries in the conntrack table.'],
    ]) {
      expect(metric(name!)).toMatchObject({
        unit: '{entries}',
        description,
        kind: 'sum',
        monotonic: false,
        temporality: CUMULATIVE,
      });
    }
    expect(metric('conntrack.inserts')).toMatchObject({ unit: '{entries}', kind: 'sum', monotonic: true });
    const byType = Object.fromEntries(
      metric('conntrack.events.received').points.map((p) => [p.attributes['conntrack.event.type'], p.value]),
    );
    expect(byType.new).toBe(truth.inserts);
  });

  it('node-wide: a namespace made while running appears with its own values, and once deleted is observed no more', async () => {
    const host = new AllNamespacesMonitor({ intervalMs: 200, containerdRoot: null, crioRoot: null });
    defer(() => host.stop());
    const { exporter, scrape } = await prometheus();
    // A second reader that takes every instrument as deltas: what the library observed at each
    // collection, and nothing it did not (cumulative exports of this SDK repeat gone attribute
    // sets: see docs/opentelemetry.md).
    const deltas = new InMemoryMetricExporter(AggregationTemporality.DELTA);
    const deltaReader = new PeriodicExportingMetricReader({ exporter: deltas, exportIntervalMillis: 3_600_000 });
    registerAllNamespacesOpenTelemetryMetrics(provider(exporter, deltaReader).getMeter(SCOPE), host);
    await host.start();
    const reports = async (n: number) => {
      for (let i = 0; i < n; i++) await once(host, 'report');
    };
    await reports(1);
    const ns = await namespace('otel-node');
    await ns.traffic('tcp', 9);
    await reports(3);
    const text = await scrape();
    const truth = await kernel(ns);
    const labels = `conntrack_netns="${ns.name}",otel_scope_name="${SCOPE}"`;
    const got = scraped(text, labels);
    console.info(
      `node-wide, ${ns.name}: system_network_conntrack_count ${got.count} (nf_conntrack_count ${truth.count}), ` +
        `conntrack_inserts_total ${got.inserts} (nft counter ${truth.inserts}); ` +
        `${text.split('\n').filter((l) => l.startsWith('system_network_conntrack_count{')).length} namespaces in the scrape`,
    );
    expect(truth.inserts).toBe(9);
    expect(got).toEqual(truth);
    // The node's own namespace: no conntrack.netns attribute.
    expect(text).toMatch(
      new RegExp(`^system_network_conntrack_max\\{otel_scope_name="${SCOPE}"\\} ${truth.max}$`, 'm'),
    );

    const observed = async () => {
      deltas.reset();
      await deltaReader.forceFlush();
      const points = deltas
        .getMetrics()
        .flatMap((r) =>
          r.scopeMetrics.flatMap((s) =>
            s.metrics.flatMap((m) => m.dataPoints as { attributes: Record<string, unknown> }[]),
          ),
        );
      return { all: points.length, mine: points.filter((p) => p.attributes['conntrack.netns'] === ns.name).length };
    };
    const before = await observed();
    expect(before.mine).toBeGreaterThan(0);
    await ns.remove();
    const removed = Date.now();
    while (host.latest?.namespaces.some((n) => n.name === ns.name)) {
      if (Date.now() - removed > 5000) throw new Error(`${ns.name} still in the node report 5 s after it was deleted`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const after = await observed();
    const stale = value(await scrape(), 'system_network_conntrack_count', labels);
    console.info(
      `node-wide, ${ns.name} deleted: observed data points of it ${before.mine} before, ${after.mine} after ` +
        `(${after.all} data points of the other namespaces); the SDK's cumulative Prometheus export still shows ` +
        `${stale === undefined ? 'nothing' : `its last count, ${stale}`}`,
    );
    expect(after.mine).toBe(0);
    expect(after.all).toBeGreaterThan(0);
  });
});
