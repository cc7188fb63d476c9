import { DEFAULT_RUNTIME_ROOTS } from './host/pods.js';
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
}

export const DEFAULT_INTERVAL_MS = 1000;
export const DEFAULT_RECEIVE_BUFFER_BYTES = 32 * 1024 * 1024;
export const INTERVAL_MS_RANGE = [50, 3_600_000] as const;
export const RECEIVE_BUFFER_RANGE = [4096, 1024 * 1024 * 1024] as const;
export const DEFAULT_RESYNC_INTERVAL_MS = 60_000;
export const RESYNC_INTERVAL_RANGE = [1000, 86_400_000] as const;
const BACKENDS: readonly BackendName[] = ['auto', 'netlink', 'proc'];
const KNOWN_OPTIONS = new Set(['netns', 'intervalMs', 'receiveBufferBytes', 'resyncIntervalMs', 'backend', 'pressure']);
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
  };
}

/** AllNamespacesMonitor's options after validation. */
export interface ResolvedAllNamespacesOptions {
  intervalMs: number;
  receiveBufferBytes: number;
  resyncIntervalMs: number;
  rediscoverMs: number;
  counting: 'auto' | 'ebpf' | 'filter';
  trackStates: string[];
  containerdRoot: string | null;
  crioRoot: string | null;
}

const ALL_NAMESPACES_OPTIONS = new Set([
  'intervalMs',
  'receiveBufferBytes',
  'resyncIntervalMs',
  'rediscoverMs',
  'counting',
  'trackStates',
  'containerdRoot',
  'crioRoot',
  'backend',
]);
const COUNTING = ['auto', 'ebpf', 'filter'] as const;
/**
 * Names under /var/run/netns are seen at once (a directory watch); a namespace that only a
 * process holds is found by this scan, and with 1 s reports shows within 5 s of its creation.
 */
export const DEFAULT_REDISCOVER_MS = 4000;
const POD_REF = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}\/[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
export const MAX_TRACKED_NAMESPACES = 64;

/**
 * Validates AllNamespacesMonitor's options (see its AllNamespacesOptions); a TypeError names
 * the option at fault. `backend` is accepted for compatibility ('auto' or 'netlink': the node
 * monitor reads ctnetlink).
 */
export function resolveAllNamespacesOptions(options: object = {}): ResolvedAllNamespacesOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!ALL_NAMESPACES_OPTIONS.has(key)) {
      throw new TypeError(`unknown option '${key}' (known: ${[...ALL_NAMESPACES_OPTIONS].join(', ')})`);
    }
  }
  if (o.backend !== undefined && o.backend !== 'auto' && o.backend !== 'netlink') {
    throw new TypeError(`backend must be auto or netlink for every namespace (ctnetlink), got ${describe(o.backend)}`);
  }
  if (o.counting !== undefined && !(COUNTING as readonly unknown[]).includes(o.counting)) {
    throw new TypeError(`counting must be one of ${COUNTING.join(', ')}, got ${describe(o.counting)}`);
  }
  const tracked = o.trackStates ?? [];
  if (!Array.isArray(tracked) || tracked.length > MAX_TRACKED_NAMESPACES) {
    throw new TypeError(
      `trackStates must be an array of at most ${MAX_TRACKED_NAMESPACES} names, got ${describe(tracked)}`,
    );
  }
  for (const name of tracked) {
    if (typeof name !== 'string' || !(POD_REF.test(name) || (NETNS_NAME.test(name) && name.length <= 255))) {
      throw new TypeError(
        `trackStates entries are names under /var/run/netns or pods as NAMESPACE/NAME, got ${describe(name)}`,
      );
    }
  }
  const root = (name: string, fallback: string): string | null => {
    const value = o[name];
    if (value === undefined) return fallback;
    if (value === null) return null;
    if (typeof value !== 'string' || !value.startsWith('/') || value.includes('\0')) {
      throw new TypeError(`${name} must be an absolute path or null, got ${describe(value)}`);
    }
    return value;
  };
  return {
    intervalMs: integerIn('intervalMs', o.intervalMs, DEFAULT_INTERVAL_MS, INTERVAL_MS_RANGE),
    receiveBufferBytes: integerIn(
      'receiveBufferBytes',
      o.receiveBufferBytes,
      DEFAULT_RECEIVE_BUFFER_BYTES,
      RECEIVE_BUFFER_RANGE,
    ),
    resyncIntervalMs:
      o.resyncIntervalMs === 0
        ? 0
        : integerIn('resyncIntervalMs', o.resyncIntervalMs, DEFAULT_RESYNC_INTERVAL_MS, RESYNC_INTERVAL_RANGE, ' or 0'),
    rediscoverMs: integerIn('rediscoverMs', o.rediscoverMs, DEFAULT_REDISCOVER_MS, [100, 86_400_000]),
    counting: (o.counting as ResolvedAllNamespacesOptions['counting'] | undefined) ?? 'auto',
    trackStates: [...(tracked as string[])],
    containerdRoot: root('containerdRoot', DEFAULT_RUNTIME_ROOTS.containerd!),
    crioRoot: root('crioRoot', DEFAULT_RUNTIME_ROOTS.crio!),
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
