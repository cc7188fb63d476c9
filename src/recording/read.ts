/**
 * A recording read from its file as it streams by, so that memory does not grow with the
 * file: chunks of CHUNK_BYTES, each line parsed on its own (RecordingParser) and handed on.
 * The file is opened as src/host/host-file.ts opens what the host controls: non-blocking and
 * refused unless it is a regular file, so `report` given a FIFO, /dev/zero or a terminal says
 * so at once, as --netns does, instead of waiting for a writer or reading without end. A line
 * longer than MAX_LINE_BYTES is no recording's (a report line of a thousand namespaces is
 * about a megabyte) and ends the reading with an error naming it.
 */
import { open, stat } from 'node:fs/promises';
import { fileError, fileKind, READ_FLAGS } from '../host/host-file.js';
import { RecordingFormatError, RecordingParser, type ParsedLine } from './format.js';

export const MAX_LINE_BYTES = 16 << 20;
const CHUNK_BYTES = 1 << 20;
const NEWLINE = 0x0a;

/**
 * Reads the recording at `path` line by line into `each`; rejects with a RecordingFormatError
 * naming the line and field, or with the fs error (EINVAL for a file that is no regular one).
 */
export async function readRecording(path: string, each: (line: ParsedLine) => void): Promise<void> {
  const parser = new RecordingParser(path);
  await readLines(path, (text, n, last) => {
    const line = parser.line(text, n, last);
    if (line !== null) each(line);
  });
  parser.finish();
}

/** The lines of a regular file (without their newlines); `last`: the end came before a newline. */
async function readLines(path: string, each: (text: string, n: number, last: boolean) => void): Promise<void> {
  const file = await open(path, READ_FLAGS).catch(async (err: NodeJS.ErrnoException) => {
    // A socket cannot be opened at all: say what it is, as for a FIFO.
    const stats = err.code === 'ENXIO' ? await stat(path).catch(() => null) : null;
    throw stats ? fileError('EINVAL', 'open', path, `is ${fileKind(stats)}, not a recording`) : err;
  });
  try {
    const stats = await file.stat();
    if (!stats.isFile()) throw fileError('EINVAL', 'open', path, `is ${fileKind(stats)}, not a recording`);
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let partial: Buffer[] = []; // the start of a line that goes on in the next chunk
    let partialBytes = 0;
    let n = 0;
    const tooLong = () =>
      new RecordingFormatError(`${path}:${n + 1}: a line longer than ${MAX_LINE_BYTES >> 20} MiB: not a recording`);
    for (;;) {
      const { bytesRead } = await file.read(chunk, 0, CHUNK_BYTES, null);
      if (bytesRead === 0) break;
      let start = 0;
      for (let nl = chunk.indexOf(NEWLINE, 0); nl >= 0 && nl < bytesRead; nl = chunk.indexOf(NEWLINE, start)) {
        if (partialBytes + nl - start > MAX_LINE_BYTES) throw tooLong();
        const text = partialBytes
          ? Buffer.concat([...partial, chunk.subarray(start, nl)]).toString('utf8')
          : chunk.toString('utf8', start, nl);
        partial = [];
        partialBytes = 0;
        each(text, ++n, false);
        start = nl + 1;
      }
      if (start < bytesRead) {
        partialBytes += bytesRead - start;
        if (partialBytes > MAX_LINE_BYTES) throw tooLong();
        partial.push(Buffer.from(chunk.subarray(start, bytesRead))); // a copy: the chunk is read into again
      }
    }
    each(Buffer.concat(partial).toString('utf8'), ++n, true);
  } finally {
    await file.close();
  }
}
