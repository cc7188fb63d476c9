/**
 * Writes a recording line by line as it happens: each line goes to the file with one write(2)
 * as soon as it exists, so a crash leaves every line before it whole; close() fsyncs.
 * One sample per interval, so a synchronous write of a few hundred bytes is cheap.
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
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
    this.fd = openSync(path, 'w', 0o644);
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
    try {
      let off = 0;
      while (off < bytes.length) off += writeSync(this.fd, bytes, off);
      this.lines++;
    } catch (err) {
      this.error = err as NodeJS.ErrnoException;
    }
  }
}
