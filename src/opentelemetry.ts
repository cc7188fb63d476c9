/**
 * OpenTelemetry instruments through the Meter the caller passes. @opentelemetry/api is an
 * optional peer dependency that this module never loads: it only calls the Meter it is given,
 * and its types are the structural MeterLike below, so the package imports, runs and
 * type-checks without it.
 *
 * Every instrument is asynchronous and read at collection time from the monitor's latest
 * sample (or node report), in one batch callback: no timer, no copy of the data. The figures,
 * their names, units and sources are src/figures.ts, shared with the Prometheus metrics. What
 * is unknown is not observed, never observed as 0.
 */
import type { AllNamespacesMonitor, NamespaceReport } from './host/all-namespaces.js';
import type { ConntrackMonitor } from './monitor.js';
import { OTEL_ATTRIBUTE, SAMPLE_FIGURES, TABLE_FIGURES, namespaceNetns, netnsLabel, type Figure } from './figures.js';
import type { ConntrackSample } from './types.js';

/** An attribute value, as the OpenTelemetry API takes it. */
export type AttributeValueLike = string | number | boolean;

/** An asynchronous instrument, as the Meter returns it (opaque here). */
export type ObservableLike = object;

/** The options of an instrument, as the OpenTelemetry API's MetricOptions takes them. */
export interface InstrumentOptionsLike {
  description: string;
  unit: string;
  /** ValueType.INT (0) or ValueType.DOUBLE (1). */
  valueType: number;
}

/** What a batch callback observes into. */
export interface BatchObservableResultLike {
  observe(observable: ObservableLike, value: number, attributes?: Record<string, AttributeValueLike>): void;
}

/**
 * The part of an OpenTelemetry Meter (@opentelemetry/api >= 1.3) this module uses, so that the
 * API stays optional: `meterProvider.getMeter(name)` returns one.
 */
export interface MeterLike {
  createObservableCounter(name: string, options?: InstrumentOptionsLike): ObservableLike;
  createObservableUpDownCounter(name: string, options?: InstrumentOptionsLike): ObservableLike;
  createObservableGauge(name: string, options?: InstrumentOptionsLike): ObservableLike;
  addBatchObservableCallback(
    callback: (result: BatchObservableResultLike) => void | Promise<void>,
    observables: ObservableLike[],
  ): void;
}

export interface OpenTelemetryMetricsOptions {
  /**
   * Attributes added to every data point, e.g. to tell two monitors apart on one Meter. What
   * describes the whole process (the node, the service) belongs in the MeterProvider's Resource.
   */
  attributes?: Record<string, AttributeValueLike>;
}

const CREATE = {
  counter: 'createObservableCounter',
  updowncounter: 'createObservableUpDownCounter',
  gauge: 'createObservableGauge',
} as const;
const INT = 0;
const DOUBLE = 1;

/** One table to observe: its attributes and what its figures read. */
interface Row<S> {
  attributes: Record<string, AttributeValueLike>;
  source: S;
}

/** The Meter and the constant attributes, once checked; the errors name the function called. */
function checkedAttributes(
  fn: string,
  meter: MeterLike,
  options: OpenTelemetryMetricsOptions | undefined,
): Record<string, AttributeValueLike> {
  const methods = [...Object.values(CREATE), 'addBatchObservableCallback'] as const;
  if (!meter || methods.some((m) => typeof (meter as unknown as Record<string, unknown>)[m] !== 'function')) {
    throw new TypeError(`${fn}(meter, monitor) needs an OpenTelemetry Meter first: meterProvider.getMeter(name)`);
  }
  const attributes = options?.attributes ?? {};
  if (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes)) {
    throw new TypeError(`${fn}: options.attributes must be an object of attribute names and values`);
  }
  for (const [key, value] of Object.entries(attributes)) {
    if (key === '' || !['string', 'number', 'boolean'].includes(typeof value)) {
      throw new TypeError(`${fn}: attribute '${key}' must have a non-empty name and a string, number or boolean value`);
    }
  }
  return { ...attributes };
}

/**
 * Creates the instrument of each figure that has one and observes them all, at each
 * collection, from `rows()`: a table that is not in the rows is not observed.
 */
function observe<S>(
  meter: MeterLike,
  figures: Figure<S>[],
  constant: Record<string, AttributeValueLike>,
  rows: () => Row<S>[],
): string[] {
  const instruments: [Figure<S>, ObservableLike][] = [];
  for (const figure of figures) {
    const otel = figure.openTelemetry;
    if (!otel) continue;
    const instrument = meter[CREATE[otel.instrument]](otel.name, {
      description: otel.description ?? figure.help,
      unit: otel.unit,
      valueType: otel.integer ? INT : DOUBLE,
    });
    instruments.push([figure, instrument]);
  }
  meter.addBatchObservableCallback(
    (result) => {
      for (const row of rows()) {
        for (const [figure, instrument] of instruments) {
          figure.read((value, labels = {}) => {
            if (value === null || value === undefined) return;
            const attributes = { ...constant, ...row.attributes };
            for (const [label, v] of Object.entries(labels)) if (v !== '') attributes[OTEL_ATTRIBUTE[label]!] = v;
            result.observe(instrument, value, attributes);
          }, row.source);
        }
      }
    },
    instruments.map(([, instrument]) => instrument),
  );
  return instruments.map(([figure]) => figure.openTelemetry!.name);
}

/**
 * Creates the conntrack instruments of `monitor` on `meter` and returns their names. Values
 * come from the latest sample at each collection; before the first sample, and for fields
 * the backend cannot know, nothing is observed. A monitor of another namespace adds the
 * attribute `conntrack.netns` (its name under /var/run/netns, else its path).
 */
export function registerOpenTelemetryMetrics(
  meter: MeterLike,
  monitor: ConntrackMonitor,
  options?: OpenTelemetryMetricsOptions,
): string[] {
  const constant = checkedAttributes('registerOpenTelemetryMetrics', meter, options);
  const netns = netnsLabel(monitor.options.netnsPath);
  const attributes: Record<string, AttributeValueLike> = netns === null ? {} : { 'conntrack.netns': netns };
  let latest: ConntrackSample | null = null;
  monitor.on('sample', (s) => (latest = s));
  return observe(meter, SAMPLE_FIGURES, constant, () => (latest ? [{ attributes, source: latest }] : []));
}

/**
 * The attributes of one namespace in the node-wide instruments: `conntrack.netns` (its name
 * under /var/run/netns, else `inode:<number>`; none for the node's own namespace) and, when
 * a pod owns it, the semantic conventions' `k8s.namespace.name`, `k8s.pod.name` and
 * `k8s.pod.uid`.
 */
export function namespaceAttributes(
  n: Pick<NamespaceReport, 'inode' | 'name' | 'host' | 'pod'>,
): Record<string, AttributeValueLike> {
  const attributes: Record<string, AttributeValueLike> = {};
  const netns = namespaceNetns(n);
  if (netns !== '') attributes['conntrack.netns'] = netns;
  if (n.pod) {
    attributes['k8s.namespace.name'] = n.pod.namespace;
    attributes['k8s.pod.name'] = n.pod.name;
    attributes['k8s.pod.uid'] = n.pod.uid;
  }
  return attributes;
}

/**
 * Creates the node-wide instruments of an AllNamespacesMonitor on `meter`: those of
 * registerOpenTelemetryMetrics that a node report has, one attribute set per namespace
 * (namespaceAttributes()), observed from the latest report only, so that a namespace that is
 * gone is observed no more. Returns the instrument names.
 */
export function registerAllNamespacesOpenTelemetryMetrics(
  meter: MeterLike,
  monitor: AllNamespacesMonitor,
  options?: OpenTelemetryMetricsOptions,
): string[] {
  const constant = checkedAttributes('registerAllNamespacesOpenTelemetryMetrics', meter, options);
  return observe(meter, TABLE_FIGURES, constant, () =>
    (monitor.latest?.namespaces ?? [])
      .filter((n) => n.error === null)
      .map((n) => ({ attributes: namespaceAttributes(n), source: n })),
  );
}
