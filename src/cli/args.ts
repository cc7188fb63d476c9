/**
 * Flag parsing shared by every subcommand: the monitor's own options (--netns, --backend,
 * --interval, ...) plus each command's extras, with one-line errors that name the flag.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { AllNamespacesOptions } from '../host/all-namespaces.js';
import type { ConntrackMonitorOptions } from '../types.js';

export class UsageError extends Error {}

/** The longest delay setTimeout honours (2^31 - 1 ms), in whole seconds. */
export const MAX_TIMER_S = 2_147_483;

type Extra = NonNullable<ParseArgsConfig['options']>;

export const MONITOR_FLAGS_HELP = `  --netns NAME|PATH      namespace to watch: a name under /var/run/netns or a path
                         such as /proc/PID/ns/net (default: this process's namespace)
  --backend NAME         auto (default): ctnetlink, else /proc; netlink; proc
  --interval MS          interval length in milliseconds (default 1000)
  --receive-buffer BYTES event socket receive buffer (default 33554432)
  --resync-interval MS   re-dump the table every MS milliseconds to reconcile the
                         tracked entries (default 60000; 0: only after lost events)
  -h, --help             show this help`;

/** The flags of --all-namespaces (watch and serve). */
export const ALL_NAMESPACES_FLAGS = {
  'all-namespaces': { type: 'boolean' },
  'track-states': { type: 'string' },
  counting: { type: 'string' },
  'containerd-root': { type: 'string' },
  'crio-root': { type: 'string' },
} as const;

export const ALL_NAMESPACES_HELP = `  --track-states LIST    with --all-namespaces: also TIME_WAIT and TCP-state counts for
                         these namespaces (names under /var/run/netns, or pods as
                         NAMESPACE/NAME, comma-separated); each gets a full monitor with
                         its own table dumps, so name only the few you need
  --counting MODE        with --all-namespaces: how events are counted: auto (default:
                         eBPF where it can be loaded, else a classic socket filter),
                         ebpf, filter
  --containerd-root DIR  containerd's state directory, for pod names (default
                         /run/containerd; '' to skip)
  --crio-root DIR        CRI-O's storage run root, for pod names (default
                         /run/containers/storage; '' to skip)`;

/** --track-states and the like only mean something with --all-namespaces. */
export function checkAllNamespacesFlags(values: Record<string, string | boolean | undefined>): void {
  if (values['all-namespaces'] === true) return;
  const stray = Object.keys(ALL_NAMESPACES_FLAGS).find((f) => f !== 'all-namespaces' && values[f] !== undefined);
  if (stray) throw new UsageError(`--${stray} needs --all-namespaces`);
}

/** AllNamespacesMonitor options from the monitor flags and ALL_NAMESPACES_FLAGS; throws UsageError. */
export function allNamespacesOptions(
  options: ConntrackMonitorOptions,
  values: Record<string, string | boolean | undefined>,
): AllNamespacesOptions {
  if (options.netns !== undefined) throw new UsageError('--all-namespaces and --netns exclude each other');
  if (options.backend === 'proc')
    throw new UsageError('--all-namespaces reads ctnetlink: --backend proc does not apply');
  const out: AllNamespacesOptions = {};
  if (options.intervalMs !== undefined) out.intervalMs = options.intervalMs;
  if (options.receiveBufferBytes !== undefined) out.receiveBufferBytes = options.receiveBufferBytes;
  if (options.resyncIntervalMs !== undefined) out.resyncIntervalMs = options.resyncIntervalMs;
  if (options.backend !== undefined) out.backend = options.backend;
  const list = values['track-states'];
  if (typeof list === 'string') out.trackStates = list.split(',').filter((n) => n !== '');
  if (typeof values.counting === 'string') out.counting = values.counting as AllNamespacesOptions['counting'];
  const root = (flag: string) => {
    const v = values[flag];
    return typeof v === 'string' ? (v === '' ? null : v) : undefined;
  };
  if (root('containerd-root') !== undefined) out.containerdRoot = root('containerd-root');
  if (root('crio-root') !== undefined) out.crioRoot = root('crio-root');
  return out;
}

export interface Parsed<V> {
  help: boolean;
  options: ConntrackMonitorOptions;
  values: V;
}

/** Parses flags strictly (no positionals); a bad one throws a one-line UsageError. */
export function parseFlags(argv: string[], options: Extra): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({ args: argv, strict: true, allowPositionals: false, options }).values as Record<
      string,
      string | boolean | undefined
    >;
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]);
  }
}

/** Parses argv into monitor options and the command's own values; throws UsageError. */
export function parseCommand<E extends Extra>(
  argv: string[],
  extra: E,
): Parsed<Record<keyof E, string | boolean | undefined>> {
  const values = parseFlags(argv, {
    netns: { type: 'string' },
    backend: { type: 'string' },
    interval: { type: 'string' },
    'receive-buffer': { type: 'string' },
    'resync-interval': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
    ...extra,
  });
  const options: ConntrackMonitorOptions = {};
  if (values.netns !== undefined) options.netns = values.netns as string;
  if (values.backend !== undefined) options.backend = values.backend as ConntrackMonitorOptions['backend'];
  if (values.interval !== undefined) options.intervalMs = number('--interval', values.interval as string);
  if (values['receive-buffer'] !== undefined) {
    options.receiveBufferBytes = number('--receive-buffer', values['receive-buffer'] as string);
  }
  if (values['resync-interval'] !== undefined) {
    options.resyncIntervalMs = number('--resync-interval', values['resync-interval'] as string);
  }
  return { help: values.help === true, options, values: values as Record<keyof E, string | boolean | undefined> };
}

export function number(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new UsageError(`${flag} expects a number, got '${text}'`);
  return value;
}

/** Seconds from a flag, within [min, max]. */
export function seconds(
  flag: string,
  text: string | boolean | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  const value = number(flag, String(text));
  if (!(value >= min && value <= max))
    throw new UsageError(`${flag} must be from ${min} to ${max} seconds, got ${text}`);
  return value;
}

/** Option errors name library options; on the command line, name the flags instead. */
export function asFlags(message: string): string {
  return message
    .replace(/^intervalMs\b/, '--interval')
    .replace(/^receiveBufferBytes\b/, '--receive-buffer')
    .replace(/^resyncIntervalMs\b/, '--resync-interval')
    .replace(/^netns\b/, '--netns')
    .replace(/^backend\b/, '--backend')
    .replace(/^topFlows\b/, '--top')
    .replace(/^trackStates\b/, '--track-states')
    .replace(/^counting\b/, '--counting')
    .replace(/^containerdRoot\b/, '--containerd-root')
    .replace(/^crioRoot\b/, '--crio-root');
}
