export { ConntrackMonitor } from './monitor.js';
export { ConntrackError } from './errors.js';
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
