// The declarations use Node's types (EventEmitter, Buffer, NodeJS.ErrnoException): the reference,
// kept in the emitted index.d.ts, loads them for a consumer whatever its tsconfig `types` says
// (TypeScript 6 and later include no @types package unless told). @types/node is a peer dependency.
/// <reference types="node" preserve="true" />
export { ConntrackMonitor } from './monitor.js';
export {
  AllNamespacesMonitor,
  type AllNamespacesOptions,
  type AllNamespacesReport,
  type NamespaceEvents,
  type NamespaceReport,
  type PodIdentity,
} from './host/all-namespaces.js';
export { listNamespaces, type NetworkNamespace } from './host/namespaces.js';
export { ConntrackError, type KernelFeature } from './errors.js';
export {
  registerAllNamespacesMetrics,
  registerConntrackMetrics,
  registerDropMetrics,
  registerTopMetrics,
  type ConntrackMetricsOptions,
  type RegistryLike,
} from './metrics.js';
export {
  registerAllNamespacesOpenTelemetryMetrics,
  registerOpenTelemetryMetrics,
  type AttributeValueLike,
  type BatchObservableResultLike,
  type InstrumentOptionsLike,
  type MeterLike,
  type ObservableLike,
  type OpenTelemetryMetricsOptions,
} from './opentelemetry.js';
export {
  DropMonitor,
  type DropMonitorOptions,
  type DropSample,
  type DroppedFlow,
  type NamespaceDrops,
} from './host/drop-monitor.js';
export { adviseTuning, type Recommendation, type TuningAdvice, type TuningEnvironment } from './advise.js';
export { tuningEnvironment } from './environment.js';
export { DEFAULT_PRESSURE, type PressureEvent, type PressureLevel, type PressureThresholds } from './pressure.js';
export { record, type RecordOptions, type RecordResult } from './record.js';
export { summarize, type RateStats, type RunSummary } from './report/summary.js';
export { renderReport, type RenderOptions, type RunInput } from './report/html.js';
export { runsOf, type ReportRun } from './report/runs.js';
export {
  parseRecording,
  RecordingFormatError,
  type Recording,
  type RecordingEnd,
  type RecordingHeader,
  type RecordingNotice,
} from './recording/format.js';
export { topEntries, type TopItem, type TopOptions, type TopReport } from './top.js';
export {
  evictableVerdict,
  type EntryClass,
  type EvictableVerdict,
  type Knob,
  type TableComposition,
} from './verdict.js';
export { COUNTER_NAMES, PROTOCOL_NAMES, TCP_STATE_NAMES } from './types.js';
export type {
  BackendName,
  ConntrackMonitorEvents,
  ConntrackMonitorOptions,
  ConntrackSample,
  CounterName,
  ConntrackFallback,
  ConntrackWarning,
  CounterSet,
  EventStats,
  ProtocolName,
  TcpStateName,
  TimeWaitStats,
} from './types.js';
