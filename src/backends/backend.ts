import type { ConntrackError } from '../errors.js';
import type { ConntrackSample } from '../types.js';

/** Where a backend delivers its output; the monitor turns these into events. */
export interface BackendSink {
  sample(sample: ConntrackSample): void;
  error(error: ConntrackError): void;
}

/** A source of samples. start() throws (or rejects with) a ConntrackError when it cannot run. */
export interface Backend {
  start(): void | Promise<void>;
  /** Stops and delivers the final partial sample to the sink before returning (or resolving). */
  stop(): void | Promise<void>;
  ref(): void;
  unref(): void;
}
