/**
 * Flag parsing shared by every subcommand: the monitor's own options (--netns, --backend,
 * --interval, ...) plus each command's extras, with one-line errors that name the flag.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { printable } from '../errors.js';
import type { AllNamespacesOptions } from '../host/all-namespaces.js';
import { describe, OPTION_FLAGS, OptionError } from '../options.js';
import type { ConntrackMonitorOptions } from '../types.js';

/**
 * Bad usage: the CLI prints the message in one line and exits 2 (check: the monitoring-plugins
 * UNKNOWN status line on stdout, exit 3).
 */
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
  --verbose              also warn of nf_conntrack_events=2, the kernel's default (events
                         only for entries made while a listener exists)
  -h, --help             show this help`;

/** The flags of --all-namespaces (watch and serve). */
export const ALL_NAMESPACES_FLAGS = {
  'all-namespaces': { type: 'boolean' },
  'track-states': { type: 'string' },
  counting: { type: 'string' },
  'containerd-root': { type: 'string' },
  'crio-root': { type: 'string' },
} as const;

export const ALL_NAMESPACES_HELP = `  --track-states LIST    with --all-namespaces, where events are counted by the classic
                         filter (on the eBPF path every namespace has them): TIME_WAIT and
                         TCP-state counts for these namespaces (names under /var/run/netns,
                         or pods as NAMESPACE/NAME, comma-separated); each gets a full
                         monitor with its own table dumps, so name only the few you need
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
  /** --verbose: also report what is not worth a line by default (EVENTS_AUTO). */
  verbose: boolean;
  options: ConntrackMonitorOptions;
  values: V;
}

/**
 * Parses flags strictly (no positionals); a bad one throws a one-line UsageError. A value that
 * starts with '-' (a negative number) is taken as the value of the flag before it, so that
 * `--interval -5` is refused for its value, not as an "ambiguous" argument.
 */
export function parseFlags(argv: string[], options: Extra): Record<string, string | boolean | undefined> {
  const args: string[] = [];
  const shortNames = new Map(
    Object.entries(options).flatMap(([name, o]) => (o.short === undefined ? [] : [[o.short, name] as const])),
  );
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = arg.startsWith('--') ? arg.slice(2) : (shortNames.get(/^-([A-Za-z])$/.exec(arg)?.[1] ?? '') ?? null);
    const next = argv[i + 1];
    if (name !== null && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      args.push(`--${name}=${next}`);
      i++;
    } else {
      args.push(arg);
    }
  }
  try {
    return parseArgs({ args, strict: true, allowPositionals: false, options }).values as Record<
      string,
      string | boolean | undefined
    >;
  } catch (err) {
    throw new UsageError(printable((err as Error).message.split('\n')[0]!));
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
    verbose: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    ...extra,
  });
  const options: ConntrackMonitorOptions = {};
  if (values.netns !== undefined) options.netns = values.netns as string;
  if (values.backend !== undefined) options.backend = values.backend as ConntrackMonitorOptions['backend'];
  if (values.interval !== undefined) options.intervalMs = number('--interval', values.interval);
  if (values['receive-buffer'] !== undefined) {
    options.receiveBufferBytes = number('--receive-buffer', values['receive-buffer']);
  }
  if (values['resync-interval'] !== undefined) {
    options.resyncIntervalMs = number('--resync-interval', values['resync-interval']);
  }
  return {
    help: values.help === true,
    verbose: values.verbose === true,
    options,
    values: values as Record<keyof E, string | boolean | undefined>,
  };
}

/**
 * A plain decimal number from a flag ("1000", "-5", "2.5"). Hex, binary, octal, exponents,
 * a leading '+' and surrounding spaces are refused: `0x64` is not what anyone means by 100.
 */
export function number(flag: string, text: string | boolean | undefined): number {
  const s = String(text);
  if (!/^-?(\d+\.?\d*|\.\d+)$/.test(s)) throw new UsageError(`${flag} expects a decimal number, got ${describe(s)}`);
  return Number(s);
}

/** Seconds from a flag, within [min, max], or `fallback` when the flag is absent. */
export function seconds(
  flag: string,
  text: string | boolean | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  const value = number(flag, text);
  if (!(value >= min && value <= max)) {
    throw new UsageError(`${flag} must be from ${min} to ${max} seconds, got ${describe(String(text))}`);
  }
  return value;
}

/**
 * Runs `build` (a library constructor, say) and turns its OptionError into a UsageError that
 * names the command-line flag instead of the library option.
 */
export function withFlags<T>(build: () => T): T {
  try {
    return build();
  } catch (err) {
    if (!(err instanceof OptionError)) throw err;
    const root = err.option.split('.')[0]!;
    const flag = OPTION_FLAGS[root];
    throw new UsageError(flag && root === err.option ? `${flag} ${err.detail}` : err.message);
  }
}
