import { resolvePressure, type PressureThresholds } from './pressure.js';
import type { BackendName, ConntrackMonitorOptions } from './types.js';

/** Options after validation, as the backends use them. */
export interface ResolvedOptions {
  /** Absolute path of the namespace file, or null for the process's own namespace. */
  netnsPath: string | null;
  intervalMs: number;
  receiveBufferBytes: number;
  resyncIntervalMs: number;
  backend: BackendName;
  pressure: PressureThresholds;
  /** Keys per group of the automatic snapshot under pressure, or false (off). */
  snapshotOnPressure?: { limit: number } | false;
}

/** topEntries() options after validation. */
export interface ResolvedTopOptions {
  netnsPath: string | null;
  limit: number;
  timeoutMs: number;
}

export const DEFAULT_TOP_LIMIT = 10;
export const TOP_LIMIT_RANGE = [1, 1000] as const;
export const DEFAULT_TOP_TIMEOUT_MS = 30_000;
export const TOP_TIMEOUT_RANGE = [1000, 600_000] as const;
const KNOWN_TOP_OPTIONS = new Set(['netns', 'limit', 'timeoutMs', 'signal']);

export const DEFAULT_INTERVAL_MS = 1000;
export const DEFAULT_RECEIVE_BUFFER_BYTES = 32 * 1024 * 1024;
export const INTERVAL_MS_RANGE = [50, 3_600_000] as const;
export const RECEIVE_BUFFER_RANGE = [4096, 1024 * 1024 * 1024] as const;
export const DEFAULT_RESYNC_INTERVAL_MS = 60_000;
export const RESYNC_INTERVAL_RANGE = [1000, 86_400_000] as const;
const BACKENDS: readonly BackendName[] = ['auto', 'netlink', 'proc'];
const KNOWN_OPTIONS = new Set([
  'netns',
  'intervalMs',
  'receiveBufferBytes',
  'resyncIntervalMs',
  'backend',
  'pressure',
  'snapshotOnPressure',
]);
const NETNS_NAME = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/;

/**
 * Validates options before any native call; throws a TypeError naming the option and the
 * value at fault.
 */
export function resolveOptions(options: ConntrackMonitorOptions = {}): ResolvedOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) {
      throw new TypeError(`unknown option '${key}' (known: ${[...KNOWN_OPTIONS].join(', ')})`);
    }
  }
  return {
    netnsPath: resolveNetns(options.netns),
    intervalMs: integerIn('intervalMs', options.intervalMs, DEFAULT_INTERVAL_MS, INTERVAL_MS_RANGE),
    receiveBufferBytes: integerIn(
      'receiveBufferBytes',
      options.receiveBufferBytes,
      DEFAULT_RECEIVE_BUFFER_BYTES,
      RECEIVE_BUFFER_RANGE,
    ),
    resyncIntervalMs:
      options.resyncIntervalMs === 0
        ? 0
        : integerIn(
            'resyncIntervalMs',
            options.resyncIntervalMs,
            DEFAULT_RESYNC_INTERVAL_MS,
            RESYNC_INTERVAL_RANGE,
            ' or 0',
          ),
    backend: resolveBackend(options.backend),
    pressure: resolvePressure(options.pressure),
    snapshotOnPressure: resolveSnapshotOnPressure(options.snapshotOnPressure),
  };
}

/** Validates topEntries() options; throws a TypeError naming the option and the value. */
export function resolveTopOptions(options: unknown = {}): ResolvedTopOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KNOWN_TOP_OPTIONS.has(key)) {
      throw new TypeError(`unknown option '${key}' (known: ${[...KNOWN_TOP_OPTIONS].join(', ')})`);
    }
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw new TypeError(`signal must be an AbortSignal, got ${describe(o.signal)}`);
  }
  return {
    netnsPath: resolveNetns(o.netns),
    limit: integerIn('limit', o.limit, DEFAULT_TOP_LIMIT, TOP_LIMIT_RANGE),
    timeoutMs: integerIn('timeoutMs', o.timeoutMs, DEFAULT_TOP_TIMEOUT_MS, TOP_TIMEOUT_RANGE),
  };
}

function resolveSnapshotOnPressure(value: unknown): { limit: number } | false {
  if (value === undefined || value === false) return false;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`snapshotOnPressure must be false or an object { limit? }, got ${describe(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (key !== 'limit') throw new TypeError(`unknown snapshotOnPressure option '${key}' (known: limit)`);
  }
  return {
    limit: integerIn(
      'snapshotOnPressure.limit',
      (value as { limit?: unknown }).limit,
      DEFAULT_TOP_LIMIT,
      TOP_LIMIT_RANGE,
    ),
  };
}

/** A bare name means /var/run/netns/NAME (as `ip netns` names them); a path is used as is. */
export function resolveNetns(netns: unknown): string | null {
  if (netns === undefined) return null;
  if (typeof netns !== 'string' || netns.length === 0) {
    throw new TypeError(`netns must be a non-empty string, got ${describe(netns)}`);
  }
  if (netns.includes('\0')) throw new TypeError('netns must not contain NUL characters');
  if (netns.startsWith('/')) return netns;
  if (!NETNS_NAME.test(netns) || netns === '.' || netns === '..') {
    throw new TypeError(`netns '${netns}' is neither an absolute path nor a namespace name under /var/run/netns`);
  }
  return `/var/run/netns/${netns}`;
}

/** An integer option within [min, max], or `fallback` when absent; a TypeError naming it. */
export function integerIn(
  name: string,
  value: unknown,
  fallback: number,
  [min, max]: readonly [number, number],
  alternative = '',
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new TypeError(`${name} must be an integer from ${min} to ${max}${alternative}, got ${describe(value)}`);
  }
  return value;
}

function resolveBackend(value: unknown): BackendName {
  if (value === undefined) return 'auto';
  if (typeof value !== 'string' || !(BACKENDS as readonly string[]).includes(value)) {
    throw new TypeError(`backend must be one of ${BACKENDS.join(', ')}, got ${describe(value)}`);
  }
  return value as BackendName;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}
