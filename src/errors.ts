import { constants } from 'node:os';

/** errno number -> name, from Node's own table (EPERM, ENOENT, ...). */
const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, value]) => [value, name]));

/** EPERM for 1, ...; E<n> for a number Node does not name. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/** The shape of errors thrown or reported by the native binding. */
export interface NativeErrorLike {
  message: string;
  errno: number;
  syscall: string;
  context: string;
}

/**
 * An error from the monitor: `code` is the errno name (EPERM, ENOENT, ...) or the monitor's own
 * (ERR_ADDON: the addon cannot load; NAMESPACE_GONE: the watched namespace was deleted and the
 * monitor stopped), `syscall` the call that failed, `hint` what to do about it.
 */
export class ConntrackError extends Error {
  override name = 'ConntrackError';
  readonly code: string;
  readonly errno: number | undefined;
  readonly syscall: string | undefined;
  readonly hint: string | undefined;
  /** The kernel feature the error shows to be missing, when it shows one. */
  readonly missing: KernelFeature | undefined;

  constructor(
    message: string,
    details: {
      code: string;
      errno?: number;
      syscall?: string;
      hint?: string;
      missing?: KernelFeature;
      cause?: unknown;
    },
  ) {
    super(details.hint ? `${message} (${details.hint})` : message, { cause: details.cause });
    this.code = details.code;
    this.errno = details.errno;
    this.syscall = details.syscall;
    this.hint = details.hint;
    this.missing = details.missing;
  }

  /**
   * The native addon could not be loaded: no prebuild fits this platform and nothing was built
   * (the install script did not run: npm skips dependencies' install scripts with
   * --ignore-scripts, and from npm 12 unless they are allowed), or a build that does not load.
   * The hint says what to run.
   */
  static addonUnavailable(cause: unknown): ConntrackError {
    const detail = String((cause as Error)?.message ?? cause).split('\n')[0]!;
    const notBuilt = /^No native build was found/.test(detail);
    return new ConntrackError(`the native addon could not be loaded: ${detail}`, {
      code: 'ERR_ADDON',
      hint: notBuilt
        ? 'no prebuilt addon fits and none was built (npm ran no install script: --ignore-scripts, or npm >= 12 ' +
          'without allowScripts for it): run `npm rebuild conntrack-monitor` (where npm asks, ' +
          '`npm install-scripts approve conntrack-monitor` first; it needs python3, make and a C++ compiler), or use the proc backend'
        : 'rebuild it for this system: `npm rebuild conntrack-monitor` (needs python3, make and a C++ compiler), ' +
          'or use the proc backend',
      cause,
    });
  }

  /** A failed file operation of the proc backend. */
  static fromFs(err: NodeJS.ErrnoException, context: string): ConntrackError {
    const code = err.code ?? 'EIO';
    return new ConntrackError(`${context}: ${err.message}`, {
      code,
      errno: err.errno,
      syscall: err.syscall,
      hint: code === 'EACCES' || code === 'EPERM' ? `no permission to read ${err.path ?? 'it'}` : undefined,
      cause: err,
    });
  }

  /** Builds a ConntrackError from a native error, adding a hint for the usual causes. */
  static fromNative(err: NativeErrorLike, netns: string | null): ConntrackError {
    const code = errnoName(err.errno);
    const missing = missingFeature(code, err.syscall, err.context);
    return new ConntrackError(printable(err.message), {
      code,
      errno: err.errno,
      syscall: err.syscall,
      hint: missing ? MISSING_HINTS[missing] : hintFor(code, err.syscall, netns),
      missing,
      cause: err,
    });
  }
}

/** Kernel features the netlink backend needs. */
export type KernelFeature = 'nfnetlink' | 'ctnetlink' | 'conntrack';

const MISSING_HINTS: Record<KernelFeature, string> = {
  nfnetlink: 'this kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK)',
  ctnetlink: 'this kernel has no conntrack netlink interface: load nf_conntrack_netlink (CONFIG_NF_CT_NETLINK)',
  conntrack: 'this kernel has no conntrack: nf_conntrack is not loaded (a firewall rule that uses conntrack loads it)',
};

/**
 * Which feature a native error shows to be missing. socket(NETLINK_NETFILTER) fails with
 * EPROTONOSUPPORT without nfnetlink. Without nf_conntrack_netlink, nfnetlink answers every
 * request to the subsystem with EINVAL (measured: any unregistered subsystem does); ours are
 * well-formed, so EINVAL to a stats or dump request means the subsystem is not there.
 */
function missingFeature(code: string, syscall: string, context: string): KernelFeature | undefined {
  if (syscall === 'socket' && (code === 'EPROTONOSUPPORT' || code === 'EAFNOSUPPORT')) return 'nfnetlink';
  if (
    syscall === 'recv' &&
    (code === 'EINVAL' || code === 'EOPNOTSUPP') &&
    /conntrack (statistics|table)/.test(context)
  )
    return 'ctnetlink';
  return undefined;
}

/**
 * Emits `error` as 'error' when someone listens, else as a process warning: a monitor running
 * inside an agent must never take it down with an unhandled 'error' event.
 */
export function reportError(
  emitter: { listenerCount(event: 'error'): number; emit(event: 'error', error: ConntrackError): boolean },
  error: ConntrackError,
): void {
  if (emitter.listenerCount('error') > 0) emitter.emit('error', error);
  else process.emitWarning(error.message, { type: 'ConntrackWarning', code: error.code });
}

/** Errors after which the 'auto' backend falls back to /proc. */
export function netlinkUnusable(error: ConntrackError): boolean {
  return (
    ['EPERM', 'EACCES', 'ERR_ADDON'].includes(error.code) ||
    error.missing === 'nfnetlink' ||
    error.missing === 'ctnetlink'
  );
}

/** System calls on netlink sockets: a permission error there is ctnetlink's CAP_NET_ADMIN. */
const NETLINK_CALLS = new Set(['socket', 'bind', 'setsockopt', 'send', 'sendto', 'recv', 'recvmsg', 'recvmmsg']);

function hintFor(code: string, syscall: string, netns: string | null): string | undefined {
  const where = netns === null ? 'it' : printable(netns);
  // A file that is not a network namespace: the message says what it is instead.
  if (['open', 'fstatfs', 'ioctl'].includes(syscall) && code === 'EINVAL')
    return 'pass /var/run/netns/NAME or /proc/PID/ns/net';
  if (syscall === 'open') {
    if (code === 'ENOENT') return `no network namespace at ${where}`;
    if (code === 'EACCES' || code === 'EPERM') return `no permission to open ${where}`;
    if (code === 'ETIMEDOUT') return `is ${where} on a filesystem that does not answer?`;
    return undefined;
  }
  if (syscall === 'setns' && code === 'EINVAL') return `${where} is not a network namespace`;
  if (syscall === 'setns' && code === 'EPERM') return 'entering a network namespace needs CAP_SYS_ADMIN';
  if ((code === 'EPERM' || code === 'EACCES') && NETLINK_CALLS.has(syscall))
    return 'ctnetlink needs CAP_NET_ADMIN in the namespace: run as root or grant the capability';
  return undefined;
}

/**
 * Text from elsewhere (a path, a namespace or host name, a recording's command, a parser's
 * echo of its input) made safe for a terminal: every control character (C0, DEL and C1, where
 * ESC, BEL, CSI and OSC sequences begin) escaped as in JSON (`\n`, `\u001b`, `\u009b`), so
 * that it cannot move the cursor, retitle the window or add a line. The one escaping function
 * of every text output; JSON output is escaped by JSON.stringify, pages by html-escape.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- the characters being escaped
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    const json = JSON.stringify(c).slice(1, -1);
    return json !== c ? json : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}
