/**
 * Reading a file whose path the host controls (a container runtime's state under /run, a pid
 * file, a recording, /proc and /sys) so that the call cannot wait for ever and cannot take
 * more memory than asked:
 *
 * - opened O_NONBLOCK (and O_NOCTTY): open(2) of a FIFO without a writer would otherwise wait
 *   for one, for ever, on the event loop's thread, where no signal handler can run;
 * - its type checked on what was opened (fstat): only a regular file is read, so no FIFO,
 *   character device (/dev/zero never ends, a tty waits for input), socket or directory;
 * - read up to a size bound, whatever fstat says (procfs and sysfs files report 0 bytes);
 * - the asynchronous reader also bounds the time: a file on a filesystem that does not answer
 *   (a hung FUSE or network mount) fails with ETIMEDOUT at the deadline while the event loop
 *   keeps running (signal handlers included). The thread-pool thread stays in the read until
 *   the filesystem answers, and the process's exit waits for it: Deadline counts such reads so
 *   that a caller stops adding more.
 *
 * The errors are Node's ErrnoException, as fs throws: EINVAL for a file that is not a regular
 * one (the message says what it is), EFBIG beyond the bound, ETIMEDOUT past the deadline.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { printable } from '../errors.js';

/** Read-only, without waiting for a FIFO's writer, and never becoming a controlling terminal. */
export const READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** What a file that is not a regular one is, in the words messages use. */
export function fileKind(s: Stats): string {
  if (s.isFIFO()) return 'a FIFO';
  if (s.isSocket()) return 'a socket';
  if (s.isDirectory()) return 'a directory';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  return 'a regular file';
}

/** An fs-style error: `code`, `syscall` and `path`, the message naming the path (escaped). */
export function fileError(code: string, syscall: string, path: string, detail: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${printable(path)} ${detail}`);
  err.code = code;
  err.syscall = syscall;
  err.path = path;
  return err;
}

const notRegular = (path: string, s: Stats) =>
  fileError('EINVAL', 'open', path, `is ${fileKind(s)}, not a regular file`);
const tooLarge = (path: string, max: number) => fileError('EFBIG', 'read', path, `is larger than ${max} bytes`);

/** A full read buffer twice as large, up to one byte past `maxBytes` (which shows there is more). */
function grown(buffer: Buffer, maxBytes: number, path: string): Buffer {
  if (buffer.length > maxBytes) throw tooLarge(path, maxBytes);
  const next = Buffer.alloc(Math.min(maxBytes + 1, buffer.length * 2));
  buffer.copy(next);
  return next;
}

/**
 * Opens a regular file for reading without blocking: its descriptor and fstat, or throws (what
 * open(2) says, or EINVAL for anything but a regular file, closed again at once).
 */
export function openRegularFile(path: string): { fd: number; stats: Stats } {
  const fd = openSync(path, READ_FLAGS);
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw notRegular(path, stats);
    return { fd, stats };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * At most `maxBytes` of a regular file, as UTF-8 text; throws EFBIG when there is more. For
 * files in memory (/proc, /sys, tmpfs): synchronous, so it bounds the size, not the time.
 */
export function readFileBoundedSync(path: string, maxBytes: number): string {
  const { fd } = openRegularFile(path);
  try {
    let buffer: Buffer = Buffer.alloc(Math.min(maxBytes + 1, 4096));
    let length = 0;
    for (;;) {
      if (length === buffer.length) buffer = grown(buffer, maxBytes, path);
      const n = readSync(fd, buffer, length, buffer.length - length, length);
      if (n === 0) break;
      length += n;
    }
    if (length > maxBytes) throw tooLarge(path, maxBytes);
    return buffer.toString('utf8', 0, length);
  } finally {
    closeSync(fd);
  }
}

/**
 * `work`, unless `ms` pass first: then the error `timedOut()` makes. What `work` waits on is
 * left to finish on its own, its outcome ignored.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  work.catch(() => {});
  if (ms <= 0) return Promise.reject(timedOut());
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/**
 * A time limit shared by several reads (a scan of a runtime's files, say), and a count of the
 * reads still waiting on their filesystem after it passed: each holds a thread-pool thread
 * until the filesystem answers (and the process cannot exit before), so a caller reads no
 * more from there while any is stuck.
 */
export class Deadline {
  readonly at: number;

  constructor(
    ms: number,
    readonly stuck: { count: number } = { count: 0 },
  ) {
    this.at = performance.now() + ms;
  }

  /** `work`, or ETIMEDOUT naming `path` if the deadline passes first (then counted as stuck until it settles). */
  race<T>(work: Promise<T>, path: string, syscall: string): Promise<T> {
    return withTimeout(work, this.at - performance.now(), () => {
      this.stuck.count++;
      const settled = () => void this.stuck.count--;
      work.then(settled, settled);
      return fileError('ETIMEDOUT', syscall, path, 'did not answer in time (on a filesystem that does not answer?)');
    });
  }
}

/** At most `maxBytes` of a regular file, as text, before `deadline`; see the module comment. */
export function readFileBounded(path: string, maxBytes: number, deadline: Deadline): Promise<string> {
  const work = (async () => {
    const file = await open(path, READ_FLAGS);
    try {
      const stats = await file.stat();
      if (!stats.isFile()) throw notRegular(path, stats);
      // fstat's size is a first guess: procfs and sysfs say 0, and a file may grow meanwhile.
      let buffer: Buffer = Buffer.alloc(Math.min(maxBytes + 1, Math.max(stats.size + 1, 4096)));
      let length = 0;
      for (;;) {
        if (length === buffer.length) buffer = grown(buffer, maxBytes, path);
        const { bytesRead } = await file.read(buffer, length, buffer.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
      if (length > maxBytes) throw tooLarge(path, maxBytes);
      return buffer.toString('utf8', 0, length);
    } finally {
      await file.close();
    }
  })();
  return deadline.race(work, path, 'read');
}

/** stat(2) before `deadline`; null when there is nothing there (ENOENT, ENOTDIR). */
export async function statBefore(path: string, deadline: Deadline): Promise<Stats | null> {
  try {
    return await deadline.race(stat(path), path, 'stat');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** The names of a directory's subdirectories before `deadline`; [] when it cannot be read. */
export async function subdirectoriesBefore(dir: string, deadline: Deadline): Promise<string[]> {
  try {
    const entries = await deadline.race(readdir(dir, { withFileTypes: true }), dir, 'scandir');
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ETIMEDOUT') throw err;
    return [];
  }
}
