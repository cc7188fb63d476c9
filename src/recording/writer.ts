/**
 * Writes a recording line by line as it happens: each line goes to the file with one write(2)
 * as soon as it exists, so a crash leaves every line before it whole; close() fsyncs.
 * One sample per interval, so a synchronous write of a few hundred bytes is cheap.
 *
 * The file may be a FIFO or a device (/dev/null, a terminal): it is opened O_NONBLOCK, so a
 * FIFO that nothing reads fails at once (ENXIO) instead of waiting in open(2) for a reader,
 * where no signal handler could run. A reader that stops reading gets STALL_MS to take each
 * line; after that the write fails like a full disk would: `error` says so and nothing more is
 * written, while the recording goes on and ends as usual.
 */
import { closeSync, constants, fsyncSync, openSync, writeSync } from 'node:fs';
import { fileError } from '../host/host-file.js';
import type { ConntrackSample } from '../types.js';
import type { AllNamespacesReport } from '../host/all-namespaces.js';
import {
  recordingLine,
  reportLine,
  sampleLine,
  type RecordingEnd,
  type RecordingHeader,
  type RecordingNotice,
} from './format.js';

const OPEN_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NONBLOCK | constants.O_NOCTTY;
/** How long a line may wait for the reader of a FIFO (or a stopped terminal) to take it. */
export const STALL_MS = 5000;
const pause = new Int32Array(new SharedArrayBuffer(4));

export class RecordingWriter {
  private fd: number | null;
  /** Lines written, the header included. */
  lines = 0;
  /** The first failed write (a full disk, say): later lines are not written. */
  error: NodeJS.ErrnoException | null = null;

  /** Creates (or truncates) the file and writes the header; throws the fs error if it cannot. */
  constructor(
    readonly path: string,
    header: RecordingHeader,
  ) {
    try {
      this.fd = openSync(path, OPEN_FLAGS, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
      throw fileError('ENXIO', 'open', path, 'is a FIFO that nothing reads: start its reader first');
    }
    this.write(recordingLine(header));
  }

  sample(sample: ConntrackSample): void {
    this.write(sampleLine(sample));
  }

  report(report: AllNamespacesReport): void {
    this.write(reportLine(report));
  }

  notice(kind: RecordingNotice['kind'], message: string): void {
    this.write(recordingLine({ type: 'notice', time: new Date().toISOString(), kind, message }));
  }

  /** Writes the end line, flushes to disk and closes. Idempotent; a failure goes to `error`. */
  close(end: Omit<RecordingEnd, 'type' | 'endTime'>): void {
    if (this.fd === null) return;
    this.write(recordingLine({ type: 'end', endTime: new Date().toISOString(), ...end }));
    try {
      fsyncSync(this.fd);
    } catch (err) {
      // EINVAL: not a file that can be synced (a pipe, /dev/null); nothing was lost.
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') this.error ??= err as NodeJS.ErrnoException;
    }
    try {
      closeSync(this.fd);
    } catch (err) {
      this.error ??= err as NodeJS.ErrnoException;
    }
    this.fd = null;
  }

  private write(line: string): void {
    if (this.fd === null || this.error) return;
    const bytes = Buffer.from(line);
    const deadline = performance.now() + STALL_MS;
    try {
      let off = 0;
      while (off < bytes.length) {
        try {
          off += writeSync(this.fd, bytes, off);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
          // The reader has not taken the previous lines yet: wait a little, not for ever.
          if (performance.now() > deadline)
            throw fileError('EAGAIN', 'write', this.path, `was not read for ${STALL_MS / 1000} s`);
          Atomics.wait(pause, 0, 0, 5);
        }
      }
      this.lines++;
    } catch (err) {
      this.error = err as NodeJS.ErrnoException;
    }
  }
}
