export { ConntrackMonitor } from './monitor.js';
export { ConntrackError } from './errors.js';
export { COUNTER_NAMES } from './types.js';
export type {
  BackendName,
  ConntrackMonitorEvents,
  ConntrackMonitorOptions,
  ConntrackSample,
  CounterName,
  CounterSet,
  EventStats,
} from './types.js';
