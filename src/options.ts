/**
 * Every option of the library is validated here, before anything native runs: one checker per
 * kind of value, one error type (OptionError, a TypeError naming the option and the value at
 * fault) and one table of the command-line flags that set them, so the CLI names its flags in
 * the same messages.
 *
 * Only an object's own properties are read: a value inherited through the prototype (an
 * options object made with Object.create(defaults), or a polluted Object.prototype) is ignored.
 */
import { DEFAULT_RUNTIME_ROOTS } from './host/pods.js';
import type { PressureThresholds } from './pressure.js';
import type { BackendName, ConntrackMonitorOptions } from './types.js';

/** An invalid option: `option` is its (dotted) name, `detail` what is wrong with the value. */
export class OptionError extends TypeError {
  override name = 'OptionError';
  constructor(
    readonly option: string,
    readonly detail: string,
  ) {
    super(`${option} ${detail}`);
  }
}

/** The command-line flag of each option that has one. */
export const OPTION_FLAGS: Readonly<Record<string, string>> = {
  netns: '--netns',
  intervalMs: '--interval',
  receiveBufferBytes: '--receive-buffer',
  resyncIntervalMs: '--resync-interval',
  backend: '--backend',
  topFlows: '--top',
  trackStates: '--track-states',
  counting: '--counting',
  containerdRoot: '--containerd-root',
  crioRoot: '--crio-root',
  limit: '--limit',
};

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

export const DEFAULT_INTERVAL_MS = 1000;
export const INTERVAL_MS_RANGE = [50, 3_600_000] as const;
export const DEFAULT_RECEIVE_BUFFER_BYTES = 32 * 1024 * 1024;
/** 4 KiB is allowed (the kernel doubles it): tests use it to force event loss on purpose. */
export const RECEIVE_BUFFER_RANGE = [4096, 1024 * 1024 * 1024] as const;
export const DEFAULT_RESYNC_INTERVAL_MS = 60_000;
export const RESYNC_INTERVAL_RANGE = [1000, 86_400_000] as const;
export const DEFAULT_PRESSURE: PressureThresholds = { warning: 0.75, critical: 0.9, hysteresis: 0.05 };
const BACKENDS: readonly BackendName[] = ['auto', 'netlink', 'proc'];
const NETNS_NAME = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/;

/** The own properties of an options object, after checking that it is one. */
export function ownOptions<K extends string>(
  name: string,
  value: unknown,
  known: readonly K[],
): Partial<Record<K, unknown>> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new OptionError(name, `must be an object, got ${describe(value)}`);
  }
  const out: Partial<Record<K, unknown>> = {};
  for (const key of Object.keys(value)) {
    if (!(known as readonly string[]).includes(key)) {
      throw new OptionError(name, `has an unknown option ${describe(key)} (known: ${known.join(', ')})`);
    }
    out[key as K] = (value as Record<string, unknown>)[key];
  }
  return out;
}

const MONITOR_OPTIONS = [
  'netns',
  'intervalMs',
  'receiveBufferBytes',
  'resyncIntervalMs',
  'backend',
  'pressure',
  'snapshotOnPressure',
] as const;

/** The reader's options both monitors share: the interval, the event socket's buffer, the resync period. */
function readerOptions(o: {
  intervalMs?: unknown;
  receiveBufferBytes?: unknown;
  resyncIntervalMs?: unknown;
}): Pick<ResolvedOptions, 'intervalMs' | 'receiveBufferBytes' | 'resyncIntervalMs'> {
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
  };
}

/** Validates ConntrackMonitor's options; throws an OptionError naming the option at fault. */
export function resolveOptions(options: ConntrackMonitorOptions = {}): ResolvedOptions {
  const o = ownOptions('options', options, MONITOR_OPTIONS);
  return {
    netnsPath: resolveNetns(o.netns),
    ...readerOptions(o),
    backend: oneOf('backend', o.backend, 'auto', BACKENDS),
    pressure: resolvePressure(o.pressure),
    snapshotOnPressure: resolveSnapshotOnPressure(o.snapshotOnPressure),
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

const ALL_NAMESPACES_OPTIONS = [
  'intervalMs',
  'receiveBufferBytes',
  'resyncIntervalMs',
  'rediscoverMs',
  'counting',
  'trackStates',
  'containerdRoot',
  'crioRoot',
  'backend',
] as const;
const POD_REF = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}\/[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
export const MAX_TRACKED_NAMESPACES = 64;
/**
 * Names under /var/run/netns are seen at once (a directory watch); a namespace that only a
 * process holds is found by this scan, and with 1 s reports shows within 5 s of its creation.
 */
export const DEFAULT_REDISCOVER_MS = 4000;

/**
 * Validates AllNamespacesMonitor's options (AllNamespacesOptions); throws an OptionError naming
 * the option at fault. `backend` is accepted for compatibility: the node monitor reads
 * ctnetlink, so only 'auto' and 'netlink' mean anything.
 */
export function resolveAllNamespacesOptions(options: unknown = {}): ResolvedAllNamespacesOptions {
  const o = ownOptions('options', options, ALL_NAMESPACES_OPTIONS);
  oneOf('backend', o.backend, 'auto', ['auto', 'netlink'] as const);
  const tracked = o.trackStates ?? [];
  if (!Array.isArray(tracked) || tracked.length > MAX_TRACKED_NAMESPACES) {
    throw new OptionError(
      'trackStates',
      `must be an array of at most ${MAX_TRACKED_NAMESPACES} names, got ${describe(tracked)}`,
    );
  }
  for (const name of tracked as unknown[]) {
    if (typeof name !== 'string' || !(POD_REF.test(name) || (NETNS_NAME.test(name) && name.length <= 255))) {
      throw new OptionError(
        'trackStates',
        `entries are names under /var/run/netns or pods as NAMESPACE/NAME, got ${describe(name)}`,
      );
    }
  }
  const root = (name: 'containerdRoot' | 'crioRoot', fallback: string | null): string | null => {
    const value = o[name];
    if (value === undefined) return fallback;
    if (value === null) return null;
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    if (typeof value !== 'string' || !value.startsWith('/') || /[\u0000-\u001f\u007f]/.test(value)) {
      throw new OptionError(name, `must be an absolute path or null, got ${describe(value)}`);
    }
    return value;
  };
  return {
    ...readerOptions(o),
    rediscoverMs: integerIn('rediscoverMs', o.rediscoverMs, DEFAULT_REDISCOVER_MS, [100, 86_400_000]),
    counting: oneOf('counting', o.counting, 'auto', ['auto', 'ebpf', 'filter'] as const),
    trackStates: [...(tracked as string[])],
    containerdRoot: root('containerdRoot', DEFAULT_RUNTIME_ROOTS.containerd),
    crioRoot: root('crioRoot', DEFAULT_RUNTIME_ROOTS.crio),
  };
}

/** Validates topEntries() options; throws an OptionError naming the option at fault. */
export function resolveTopOptions(options: unknown = {}): ResolvedTopOptions {
  const o = ownOptions('options', options, ['netns', 'limit', 'timeoutMs', 'signal'] as const);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw new OptionError('signal', `must be an AbortSignal, got ${describe(o.signal)}`);
  }
  return {
    netnsPath: resolveNetns(o.netns),
    limit: integerIn('limit', o.limit, DEFAULT_TOP_LIMIT, TOP_LIMIT_RANGE),
    timeoutMs: integerIn('timeoutMs', o.timeoutMs, DEFAULT_TOP_TIMEOUT_MS, TOP_TIMEOUT_RANGE),
  };
}

/** `false` (off, the default) or `{ limit? }`: the monitor's snapshots under pressure. */
function resolveSnapshotOnPressure(value: unknown): { limit: number } | false {
  if (value === undefined || value === false) return false;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new OptionError('snapshotOnPressure', `must be false or an object { limit? }, got ${describe(value)}`);
  }
  const o = ownOptions('snapshotOnPressure', value, ['limit'] as const);
  return { limit: integerIn('snapshotOnPressure.limit', o.limit, DEFAULT_TOP_LIMIT, TOP_LIMIT_RANGE) };
}

/** A bare name means /var/run/netns/NAME (as `ip netns` names them); a path is used as is. */
export function resolveNetns(netns: unknown): string | null {
  if (netns === undefined) return null;
  if (typeof netns !== 'string' || netns.length === 0) {
    throw new OptionError('netns', `must be a non-empty string, got ${describe(netns)}`);
  }
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(netns)) {
    throw new OptionError('netns', `must not contain control characters, got ${describe(netns)}`);
  }
  if (netns.startsWith('/')) return netns;
  if (!NETNS_NAME.test(netns) || netns === '.' || netns === '..') {
    throw new OptionError(
      'netns',
      `${describe(netns)} is neither an absolute path nor a namespace name under /var/run/netns`,
    );
  }
  return `/var/run/netns/${netns}`;
}

/** An integer option within [min, max], or `fallback` when absent. */
export function integerIn(
  name: string,
  value: unknown,
  fallback: number,
  [min, max]: readonly [number, number],
  alternative = '',
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new OptionError(name, `must be an integer from ${min} to ${max}${alternative}, got ${describe(value)}`);
  }
  return value;
}

/** A fraction option within [0, 1]. */
export function fractionIn(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new OptionError(name, `must be a fraction of nf_conntrack_max from 0 to 1, got ${describe(value)}`);
  }
  return value;
}

/** One of a fixed set of strings, or `fallback` when absent. */
export function oneOf<T extends string>(name: string, value: unknown, fallback: T, allowed: readonly T[]): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new OptionError(name, `must be one of ${allowed.join(', ')}, got ${describe(value)}`);
  }
  return value as T;
}

/**
 * Pressure thresholds (fractions of nf_conntrack_max): warning below critical, and a
 * hysteresis below warning, else a level once entered could never be left.
 */
export function resolvePressure(value: unknown): PressureThresholds {
  const o = ownOptions('pressure', value, ['warning', 'critical', 'hysteresis'] as const);
  const out: PressureThresholds = {
    warning: fractionIn('pressure.warning', o.warning, DEFAULT_PRESSURE.warning),
    critical: fractionIn('pressure.critical', o.critical, DEFAULT_PRESSURE.critical),
    hysteresis: fractionIn('pressure.hysteresis', o.hysteresis, DEFAULT_PRESSURE.hysteresis),
  };
  if (out.warning >= out.critical) {
    throw new OptionError('pressure.warning', `(${out.warning}) must be below pressure.critical (${out.critical})`);
  }
  if (out.hysteresis >= out.warning) {
    throw new OptionError(
      'pressure.hysteresis',
      `(${out.hysteresis}) must be below pressure.warning (${out.warning}): the warning level could never be left`,
    );
  }
  return out;
}

/** A value as an error message shows it: strings quoted with control characters escaped. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
