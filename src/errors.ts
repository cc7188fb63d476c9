import { constants } from 'node:os';

/** errno number -> name, from Node's own table (EPERM, ENOENT, ...). */
const ERRNO_NAMES = new Map<number, string>(
  Object.entries(constants.errno).map(([name, value]) => [value, name]),
);

/** The shape of errors thrown or reported by the native binding. */
export interface NativeErrorLike {
  message: string;
  errno: number;
  syscall: string;
  context: string;
}

/**
 * An error from the monitor: `code` is the errno name (EPERM, ENOENT, ...), `syscall` the call
 * that failed, `hint` what to do about it.
 */
export class ConntrackError extends Error {
  override name = 'ConntrackError';
  readonly code: string;
  readonly errno: number | undefined;
  readonly syscall: string | undefined;
  readonly hint: string | undefined;

  constructor(
    message: string,
    details: { code: string; errno?: number; syscall?: string; hint?: string; cause?: unknown },
  ) {
    super(details.hint ? `${message} (${details.hint})` : message, { cause: details.cause });
    this.code = details.code;
    this.errno = details.errno;
    this.syscall = details.syscall;
    this.hint = details.hint;
  }

  /** The native addon could not be loaded (no prebuild for this platform and no build). */
  static addonUnavailable(cause: unknown): ConntrackError {
    return new ConntrackError(`the native addon could not be loaded: ${(cause as Error)?.message ?? cause}`, {
      code: 'ERR_ADDON',
      hint: 'reinstall to build it (needs python3, make and a C++ compiler), or use the proc backend',
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
    const code = ERRNO_NAMES.get(err.errno) ?? `E${err.errno}`;
    return new ConntrackError(err.message, {
      code,
      errno: err.errno,
      syscall: err.syscall,
      hint: hintFor(code, err.syscall, netns),
      cause: err,
    });
  }
}

/** Errors after which the 'auto' backend falls back to /proc. */
export function netlinkUnusable(error: ConntrackError): boolean {
  return ['EPERM', 'EACCES', 'EPROTONOSUPPORT', 'EAFNOSUPPORT', 'ERR_ADDON'].includes(error.code);
}

function hintFor(code: string, syscall: string, netns: string | null): string | undefined {
  if (syscall === 'open') {
    if (code === 'ENOENT') return `no network namespace at ${netns}`;
    if (code === 'EACCES' || code === 'EPERM') return `no permission to open ${netns}`;
    return undefined;
  }
  if (syscall === 'setns' && code === 'EINVAL') return `${netns} is not a network namespace`;
  if (syscall === 'setns' && code === 'EPERM') return 'entering a network namespace needs CAP_SYS_ADMIN';
  if (code === 'EPERM' || code === 'EACCES')
    return 'ctnetlink needs CAP_NET_ADMIN in the namespace: run as root or grant the capability';
  if (syscall === 'socket' && (code === 'EPROTONOSUPPORT' || code === 'EAFNOSUPPORT'))
    return 'this kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK)';
  if (code === 'ENOENT' || code === 'EOPNOTSUPP')
    return 'this kernel has no conntrack netlink interface (CONFIG_NF_CT_NETLINK, nf_conntrack_netlink module)';
  return undefined;
}
