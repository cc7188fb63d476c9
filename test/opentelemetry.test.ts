/**
 * The OpenTelemetry instruments through the real SDK (@opentelemetry/sdk-metrics) and its
 * in-memory exporter: kinds, units, descriptions, attributes, values read at collection time,
 * nothing observed where the sample has nothing, the same figures as the Prometheus metrics,
 * and node-wide attribute sets that follow the namespaces. The root tests in
 * test/integration/opentelemetry.test.ts compare the exported values with the kernel's.
 */
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AllNamespacesMonitor,
  ConntrackMonitor,
  registerAllNamespacesMetrics,
  registerAllNamespacesOpenTelemetryMetrics,
  registerConntrackMetrics,
  registerOpenTelemetryMetrics,
  type AllNamespacesReport,
  type ConntrackSample,
  type NamespaceReport,
} from '../dist/index.js';
import { procFixtureSamples } from './helpers/fixtures';
import { SAMPLE_FIGURES, TABLE_FIGURES } from '../dist/figures.js';
import { counters, namespaceReport, sample } from './helpers/sample';

const providers: MeterProvider[] = [];
afterEach(async () => {
  for (const p of providers.splice(0)) await p.shutdown();
});

/** A real MeterProvider whose reader exports to the SDK's in-memory exporter on demand. */
function sdk(temporality = AggregationTemporality.CUMULATIVE) {
  const exporter = new InMemoryMetricExporter(temporality);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const provider = new MeterProvider({ readers: [reader] });
  providers.push(provider);
  const meter = provider.getMeter('conntrack-monitor-test');
  /** One collection and export: the metrics of this export, by name. */
  const collect = async (): Promise<Map<string, MetricData>> => {
    exporter.reset();
    await reader.forceFlush();
    const metrics = exporter.getMetrics().flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics));
    return new Map(metrics.map((m) => [m.descriptor.name, m]));
  };
  return { meter, collect };
}

/** The data points of one metric as `attributes -> value`, attributes as sorted `k=v` pairs. */
function points(metric: MetricData | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of metric?.dataPoints ?? []) {
    const key = Object.entries(p.attributes)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    out[key] = p.value as number;
  }
  return out;
}

/** A sample in which every figure has a distinct, known value. */
function fullSample(): ConntrackSample {
  const s = sample({
    entries: 750,
    max: 1000,
    buckets: 1024,
    totals: {
      insert: 5000,
      delete: 4250,
      drop: 7,
      earlyDrop: 1,
      insertFailed: 3,
      invalid: 11,
      icmpError: 2,
      clashResolve: 4,
      chainTooLong: 5,
      searchRestart: 6,
    },
    events: { newTotal: 5000, updateTotal: 12, destroyTotal: 4250, lostTotal: 0, resyncs: 2, malformedTotal: 1 },
    timeWait: { entries: 600, timeoutSeconds: 120 },
  });
  return {
    ...s,
    samplesMissed: 9,
    timeToFullSeconds: 312.5,
    tcpStates: { ...s.tcpStates!, ESTABLISHED: 40, TIME_WAIT: 600 },
    protocols: { tcp: 640, udp: 100, icmp: 8, other: 2 },
  };
}

describe('registerOpenTelemetryMetrics', () => {
  it('creates the hostmetrics receiver instruments and the conntrack.* ones, with their kinds and units', async () => {
    const { meter, collect } = sdk();
    const monitor = new ConntrackMonitor({ netns: '/var/run/netns/blue' });
    const names = registerOpenTelemetryMetrics(meter, monitor, { attributes: { 'service.instance.id': 'a' } });
    monitor.emit('sample', fullSample());
    const m = await collect();
    expect([...m.keys()].sort()).toEqual([...names].sort());

    // As the Collector's hostmetrics receiver defines them: non-monotonic cumulative sums of
    // integers, unit {entries}, its descriptions.
    for (const [name, description, value] of [
      ['system.network.conntrack.count', 'The count of entries in conntrack table.', 750],
      ['system.network.conntrack.max', 'The limit for entries in the conntrack table.', 1000],
    ] as const) {
      const metric = m.get(name)!;
      expect(metric.descriptor).toMatchObject({ name, description, unit: '{entries}', valueType: 0 });
      expect(metric).toMatchObject({
        dataPointType: DataPointType.SUM,
        isMonotonic: false,
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
      });
      expect(points(metric)).toEqual({ 'conntrack.netns=blue,service.instance.id=a': value });
    }
    // Counters: monotonic sums, the samples' totals.
    const counters = {
      'conntrack.inserts': ['{entries}', 5000],
      'conntrack.deletes': ['{entries}', 4250],
      'conntrack.drops': ['{packets}', 7],
      'conntrack.early_drops': ['{entries}', 1],
      'conntrack.insert_failed': ['{entries}', 3],
      'conntrack.invalid': ['{packets}', 11],
      'conntrack.icmp_errors': ['{packets}', 2],
      'conntrack.clash_resolve': ['{entries}', 4],
      'conntrack.chaintoolong': ['{entries}', 5],
      'conntrack.search_restarts': ['{restarts}', 6],
      'conntrack.events.lost': ['{events}', 0],
      'conntrack.messages.malformed': ['{messages}', 1],
      'conntrack.resyncs': ['{resyncs}', 2],
      'conntrack.samples.missed': ['{samples}', 9],
    } as const;
    for (const [name, [unit, value]] of Object.entries(counters)) {
      const metric = m.get(name)!;
      expect(metric.descriptor, name).toMatchObject({ unit, valueType: 0 });
      expect(metric, name).toMatchObject({ dataPointType: DataPointType.SUM, isMonotonic: true });
      expect(points(metric), name).toEqual({ 'conntrack.netns=blue,service.instance.id=a': value });
    }
    expect(points(m.get('conntrack.events.received'))).toEqual({
      'conntrack.event.type=new,conntrack.netns=blue,service.instance.id=a': 5000,
      'conntrack.event.type=update,conntrack.netns=blue,service.instance.id=a': 12,
      'conntrack.event.type=destroy,conntrack.netns=blue,service.instance.id=a': 4250,
    });
    // Gauges.
    for (const [name, unit, value] of [
      ['conntrack.time_to_full', 's', 312.5],
      ['conntrack.time_wait.timeout', 's', 120],
      ['conntrack.buckets', '{buckets}', 1024],
    ] as const) {
      const metric = m.get(name)!;
      expect(metric, name).toMatchObject({ dataPointType: DataPointType.GAUGE, descriptor: { unit } });
      expect(points(metric), name).toEqual({ 'conntrack.netns=blue,service.instance.id=a': value });
    }
    // States and protocols: one non-monotonic sum; non-TCP entries have no TCP state.
    const states = m.get('conntrack.entry.count')!;
    expect(states).toMatchObject({ dataPointType: DataPointType.SUM, isMonotonic: false });
    const byState = points(states);
    const key = (transport: string, state?: string) =>
      ['conntrack.netns=blue', ...(state ? [`conntrack.tcp.state=${state}`] : [])]
        .concat(`network.transport=${transport}`, 'service.instance.id=a')
        .join(',');
    expect(byState[key('tcp', 'time_wait')]).toBe(600);
    expect(byState[key('tcp', 'established')]).toBe(40);
    expect(byState[key('tcp', 'syn_sent2')]).toBe(0);
    expect(byState[key('udp')]).toBe(100);
    expect(byState[key('icmp')]).toBe(8);
    expect(byState[key('other')]).toBe(2);
    expect(Object.keys(byState)).toHaveLength(10 + 3);
  });

  it('observes nothing before the first sample, and reads the latest sample at each collection', async () => {
    const { meter, collect } = sdk();
    const monitor = new ConntrackMonitor();
    registerOpenTelemetryMetrics(meter, monitor);
    expect([...(await collect()).keys()]).toEqual([]);
    monitor.emit('sample', sample({ entries: 10, totals: { insert: 10 } }));
    monitor.emit('sample', sample({ entries: 25, totals: { insert: 40 } }));
    let m = await collect();
    expect(points(m.get('system.network.conntrack.count'))).toEqual({ '': 25 });
    expect(points(m.get('conntrack.inserts'))).toEqual({ '': 40 });
    monitor.emit('sample', sample({ entries: 5, totals: { insert: 55 } }));
    m = await collect();
    expect(points(m.get('system.network.conntrack.count'))).toEqual({ '': 5 });
    expect(points(m.get('conntrack.inserts'))).toEqual({ '': 55 });
  });

  it('observes nothing for what the proc backend cannot know, never 0 in its place', async () => {
    const { meter, collect } = sdk();
    const monitor = new ConntrackMonitor();
    registerOpenTelemetryMetrics(meter, monitor);
    monitor.emit('sample', (await procFixtureSamples('no-stat'))[0]!);
    const m = await collect();
    expect(points(m.get('system.network.conntrack.count'))).toEqual({ '': 5000 });
    expect(points(m.get('system.network.conntrack.max'))).toEqual({ '': 262144 });
    for (const absent of [
      'conntrack.inserts',
      'conntrack.deletes',
      'conntrack.drops',
      'conntrack.events.received',
      'conntrack.events.lost',
      'conntrack.entry.count',
      'conntrack.resyncs',
      'conntrack.samples.missed',
    ]) {
      expect(m.has(absent), absent).toBe(false);
    }
  });

  it('after lost events, inserts and deletes are observed no more (delta temporality: absent)', async () => {
    const { meter, collect } = sdk(AggregationTemporality.DELTA);
    const monitor = new ConntrackMonitor();
    registerOpenTelemetryMetrics(meter, monitor);
    monitor.emit('sample', sample({ totals: { insert: 100, delete: 90 } }));
    expect(points((await collect()).get('conntrack.inserts'))).toEqual({ '': 100 });
    monitor.emit('sample', sample({ totals: { insert: null, delete: null }, events: { lostTotal: 3 } }));
    const m = await collect();
    expect(m.has('conntrack.inserts')).toBe(false);
    expect(m.has('conntrack.deletes')).toBe(false);
    expect(points(m.get('conntrack.events.lost'))).toEqual({ '': 3 });
  });

  it('has the same figures, from the same fields, as the Prometheus metrics', async () => {
    const { meter, collect } = sdk();
    const monitor = new ConntrackMonitor();
    const registry = new Registry();
    registerOpenTelemetryMetrics(meter, monitor);
    registerConntrackMetrics(monitor, { registry });
    monitor.emit('sample', fullSample());
    const m = await collect();
    const prom = await registry.getMetricsAsJSON();
    let compared = 0;
    for (const figure of SAMPLE_FIGURES) {
      if (!figure.prometheus || !figure.openTelemetry) continue;
      const promName = (figure.prometheus.own ? 'conntrack_monitor_' : 'nf_conntrack_') + figure.prometheus.name;
      const promValues = prom
        .find((x) => x.name === promName)!
        .values.map((v) => v.value)
        .sort((a, b) => a - b);
      const otelValues = Object.values(points(m.get(figure.openTelemetry.name))).sort((a, b) => a - b);
      expect(otelValues, figure.openTelemetry.name).toEqual(promValues);
      compared++;
    }
    console.info(`${compared} figures have the same values through both registrations`);
    expect(compared).toBe(SAMPLE_FIGURES.filter((f) => f.prometheus && f.openTelemetry).length);
    expect(compared).toBeGreaterThanOrEqual(17);
  });

  it('rejects a missing or misplaced Meter and bad attributes, naming the function', () => {
    const monitor = new ConntrackMonitor();
    const { meter } = sdk();
    expect(() => registerOpenTelemetryMetrics(monitor as never, meter as never)).toThrow(
      /^registerOpenTelemetryMetrics\(meter, monitor\) needs an OpenTelemetry Meter first/,
    );
    expect(() => registerOpenTelemetryMetrics(undefined as never, monitor)).toThrow(/needs an OpenTelemetry Meter/);
    expect(() => registerOpenTelemetryMetrics(meter, monitor, { attributes: { '': 'x' } })).toThrow(
      /attribute '' must have a non-empty name/,
    );
    expect(() => registerOpenTelemetryMetrics(meter, monitor, { attributes: { a: null } as never })).toThrow(
      /attribute 'a' must have .* a string, number or boolean value/,
    );
    expect(() => registerAllNamespacesOpenTelemetryMetrics({} as never, new AllNamespacesMonitor())).toThrow(
      /^registerAllNamespacesOpenTelemetryMetrics\(meter, monitor\) needs an OpenTelemetry Meter/,
    );
  });
});

/** An AllNamespacesMonitor whose latest report the test sets (it never starts). */
class ReportedMonitor extends AllNamespacesMonitor {
  current: AllNamespacesReport | null = null;
  override get latest(): AllNamespacesReport | null {
    return this.current;
  }
}

const row = (over: Partial<NamespaceReport> & { inode: number }) => namespaceReport(over);

const report = (namespaces: NamespaceReport[]): AllNamespacesReport => ({
  time: new Date(0).toISOString(),
  intervalMs: 1000,
  final: false,
  namespaces,
});

describe('registerAllNamespacesOpenTelemetryMetrics', () => {
  const host = row({ inode: 4026531840, host: true, entries: 300 });
  const pod = row({
    inode: 4026532500,
    name: 'cni-1',
    entries: 42,
    totals: { ...counters(0), insert: 77 },
    pod: { namespace: 'shop', name: 'web-0', uid: '0c9e4d7a-1b2c-4d5e-8f90-a1b2c3d4e5f6' },
  });
  const unnamed = row({ inode: 4026532600, entries: 3 });
  const failed = row({ inode: 4026532700, name: 'broken', entries: null, events: null, error: 'EPERM' });

  it('one attribute set per namespace: conntrack.netns and the pod by the k8s.* semantic conventions', async () => {
    const { meter, collect } = sdk();
    const monitor = new ReportedMonitor();
    const names = registerAllNamespacesOpenTelemetryMetrics(meter, monitor);
    expect(names).toEqual(TABLE_FIGURES.filter((f) => f.openTelemetry).map((f) => f.openTelemetry!.name));
    expect(names).not.toContain('conntrack.time_to_full'); // a node report has no forecast
    monitor.current = report([host, pod, unnamed, failed]);
    const m = await collect();
    expect(points(m.get('system.network.conntrack.count'))).toEqual({
      '': 300,
      'conntrack.netns=cni-1,k8s.namespace.name=shop,k8s.pod.name=web-0,k8s.pod.uid=0c9e4d7a-1b2c-4d5e-8f90-a1b2c3d4e5f6': 42,
      'conntrack.netns=inode:4026532600': 3,
    });
    expect(points(m.get('conntrack.inserts'))).toMatchObject({
      'conntrack.netns=cni-1,k8s.namespace.name=shop,k8s.pod.name=web-0,k8s.pod.uid=0c9e4d7a-1b2c-4d5e-8f90-a1b2c3d4e5f6': 77,
    });
    // A namespace that could not be opened is a row with its error, and has no data points.
    expect(JSON.stringify([...m.values()].map((x) => x.dataPoints))).not.toContain('broken');
  });

  it('a namespace that goes is observed no more: gone at once from exports of delta temporality', async () => {
    const { meter, collect } = sdk(AggregationTemporality.DELTA);
    const monitor = new ReportedMonitor();
    const names = registerAllNamespacesOpenTelemetryMetrics(meter, monitor);
    monitor.current = report([host, pod]);
    let m = await collect();
    expect(Object.keys(points(m.get('system.network.conntrack.count')))).toHaveLength(2);
    expect(JSON.stringify([...m.values()].map((x) => x.dataPoints))).toContain('web-0');
    monitor.current = report([host]);
    m = await collect();
    // Only the host's attribute set is left in every instrument (deltas: its changes, here 0).
    for (const name of names) {
      if (m.has(name))
        expect(Object.keys(points(m.get(name))), name).toEqual(
          name === 'conntrack.events.received' ? ['conntrack.event.type=new', 'conntrack.event.type=destroy'] : [''],
        );
    }
    expect(JSON.stringify([...m.values()].map((x) => x.dataPoints))).not.toContain('web-0');
  });

  it('has the same figures, from the same fields, as the node-wide Prometheus metrics', async () => {
    const { meter, collect } = sdk();
    const monitor = new ReportedMonitor();
    const registry = new Registry();
    registerAllNamespacesOpenTelemetryMetrics(meter, monitor);
    registerAllNamespacesMetrics(monitor, { registry });
    monitor.current = report([host, pod, unnamed]);
    const m = await collect();
    const prom = await registry.getMetricsAsJSON();
    for (const figure of TABLE_FIGURES) {
      if (!figure.prometheus || !figure.openTelemetry) continue;
      const promName = (figure.prometheus.own ? 'conntrack_monitor_' : 'nf_conntrack_') + figure.prometheus.name;
      const promValues = prom.find((x) => x.name === promName)!.values.map((v) => v.value);
      const otelValues = Object.values(points(m.get(figure.openTelemetry.name)));
      expect(otelValues.sort(), figure.openTelemetry.name).toEqual(promValues.sort());
    }
  });
});

/**
 * What this SDK does with attribute sets the library no longer observes, as docs/opentelemetry.md
 * says: when a release changes it, these fail, and the page's caveats are updated.
 */
describe('@opentelemetry/sdk-metrics with attribute sets no longer observed', () => {
  const host = row({ inode: 4026531840, host: true, entries: 300 });

  it('cumulative temporality repeats a gone namespace with its last values (opentelemetry-js issue 4096)', async () => {
    const { meter, collect } = sdk(AggregationTemporality.CUMULATIVE);
    const monitor = new ReportedMonitor();
    registerAllNamespacesOpenTelemetryMetrics(meter, monitor);
    monitor.current = report([host, row({ inode: 4026532500, name: 'gone', entries: 42 })]);
    await collect();
    monitor.current = report([host]);
    expect(points((await collect()).get('system.network.conntrack.count'))).toEqual({
      '': 300,
      'conntrack.netns=gone': 42,
    });
  });

  it('cumulative temporality repeats inserts after events were lost, where delta has none', async () => {
    const { meter, collect } = sdk(AggregationTemporality.CUMULATIVE);
    const monitor = new ConntrackMonitor();
    registerOpenTelemetryMetrics(meter, monitor);
    monitor.emit('sample', sample({ totals: { insert: 100 } }));
    await collect();
    monitor.emit('sample', sample({ totals: { insert: null }, events: { lostTotal: 3 } }));
    expect(points((await collect()).get('conntrack.inserts'))).toEqual({ '': 100 });
  });

  it('past 2,000 attribute sets ever seen by an instrument, a new namespace folds into otel.metric.overflow', async () => {
    const { meter, collect } = sdk(AggregationTemporality.DELTA);
    const monitor = new ReportedMonitor();
    registerAllNamespacesOpenTelemetryMetrics(meter, monitor);
    // One namespace at a time, each gone before the next: 2,000 in all over the process's life.
    for (let i = 0; i < 2000; i++) {
      monitor.current = report([row({ inode: 4026540000 + i, name: `pod-${i}`, entries: 1 })]);
      await collect();
    }
    monitor.current = report([row({ inode: 4026549999, name: 'new-pod', entries: 7 })]);
    expect(Object.keys(points((await collect()).get('system.network.conntrack.count')))).toEqual([
      'otel.metric.overflow=true',
    ]);
  });
});
