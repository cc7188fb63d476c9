// ESM entry: re-exports the CommonJS build so that `import` and `require` share one copy
// of the classes (instanceof ConntrackError works across both).
import cjs from '../dist/index.js';

export const {
  ConntrackMonitor,
  ConntrackError,
  registerConntrackMetrics,
  DEFAULT_PRESSURE,
  COUNTER_NAMES,
  PROTOCOL_NAMES,
  TCP_STATE_NAMES,
} = cjs;
