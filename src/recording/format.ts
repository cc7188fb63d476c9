/**
 * The recording file `conntrack-monitor record` writes: NDJSON, one self-describing object per
 * line, each with a `type`:
 *
 * - `header` (first line): the host and the run: kernel, nf_conntrack_max, buckets, the
 *   conntrack timeouts, CPUs, memory, hostname, start time, command, namespace;
 * - `sample`: one ConntrackSample, its fields at the top level next to `type`;
 * - `namespaces`: with --all-namespaces, one AllNamespacesMonitor report;
 * - `notice`: what the monitor said while recording (fallback to /proc, warnings, errors);
 * - `end` (last line): when and how the run ended. A file without it was cut short (a crash);
 *   every line before is still whole and readable.
 *
 * Readers skip types they do not know, so later versions can add some. parseRecording() also
 * reads `conntrack-monitor --json` output (bare samples, no header). Counters the sample gained
 * later (events.malformedTotal, samplesMissed) read as 0 from files that predate them. The file is input from
 * elsewhere: every field used is type-checked, and a bad one is an error naming the line.
 */
import { printable } from '../errors.js';
import { COUNTER_NAMES, PROTOCOL_NAMES, TCP_STATE_NAMES, type ConntrackSample } from '../types.js';
import type { AllNamespacesReport, NamespaceReport } from '../host/all-namespaces.js';

export const RECORDING_FORMAT = 'conntrack-monitor-recording';
export const RECORDING_VERSION = 1;

export interface RecordingHeader {
  type: 'header';
  format: typeof RECORDING_FORMAT;
  version: number;
  /** The conntrack-monitor version that wrote the file. */
  tool: string;
  /** When recording began (ISO 8601). */
  startTime: string;
  hostname: string;
  /** Kernel release (uname -r). */
  kernel: string;
  cpus: number;
  memoryBytes: number | null;
  /** The command run while recording (argv), or null when recording until a signal. */
  command: string[] | null;
  /** The monitored namespace (--netns), null for the recorder's own. */
  netns: string | null;
  allNamespaces: boolean;
  intervalMs: number;
  backend: string;
  conntrack: {
    max: number | null;
    buckets: number | null;
    /** Kernel memory per entry (the nf_conntrack slab's object size), for the advice. */
    entryBytes: number | null;
    /** The conntrack timeouts in seconds, by sysctl name (nf_conntrack_tcp_timeout_time_wait, ...). */
    timeouts: Record<string, number | null>;
  };
  /** Why a null above is unknown. */
  unavailable: Partial<Record<string, string>>;
}

export interface RecordingNotice {
  type: 'notice';
  time: string;
  kind: 'fallback' | 'warning' | 'error';
  message: string;
}

export interface RecordingEnd {
  type: 'end';
  endTime: string;
  /** The command's exit: its code, or the signal that ended it; null without a command. */
  exit: { code: number | null; signal: string | null } | null;
  /** Why recording stopped: 'command exited', 'SIGINT', 'SIGTERM', or an error. */
  reason: string;
}

export type RecordingLine =
  | RecordingHeader
  | ({ type: 'sample' } & ConntrackSample)
  | ({ type: 'namespaces' } & AllNamespacesReport)
  | RecordingNotice
  | RecordingEnd;

/**
 * A recorded --all-namespaces row, as read back: only the fields summaries use, so rows may
 * grow (and older recordings, from the per-namespace engine, may say `source: 'proc'`).
 */
export type RecordedNamespace = Pick<
  NamespaceReport,
  | 'inode'
  | 'name'
  | 'pid'
  | 'host'
  | 'entries'
  | 'max'
  | 'fill'
  | 'drops'
  | 'dropRate'
  | 'inserts'
  | 'insertRate'
  | 'totalDrops'
  | 'error'
> & { source: 'netlink' | 'proc' | null };

export interface RecordedReport extends Omit<AllNamespacesReport, 'namespaces'> {
  namespaces: RecordedNamespace[];
}

export interface Recording {
  /** Null for files without one (`--json` output). */
  header: RecordingHeader | null;
  samples: ConntrackSample[];
  /** --all-namespaces reports. */
  reports: RecordedReport[];
  notices: RecordingNotice[];
  /** Null when the file has no end line: the recording was cut short. */
  end: RecordingEnd | null;
  /** The last line was cut off mid-write (and left out). */
  truncated: boolean;
}

/** A recording that cannot be read; the message names the line and field, its echo of the file escaped. */
export class RecordingFormatError extends Error {
  override name = 'RecordingFormatError';
  constructor(message: string) {
    super(printable(message));
  }
}

/** One NDJSON line (with its newline) for a sample or a report; header, notice and end as they are. */
export function recordingLine(line: RecordingLine): string {
  return `${JSON.stringify(line)}\n`;
}

export function sampleLine(sample: ConntrackSample): string {
  return recordingLine({ type: 'sample', ...sample });
}

export function reportLine(report: AllNamespacesReport): string {
  return recordingLine({ type: 'namespaces', ...report });
}

/**
 * Parses a recording. `name` (the file's) goes into error messages. A last line without its
 * newline that does not parse is a cut-off write: left out, and `truncated` says so.
 */
export function parseRecording(text: string, name = 'recording'): Recording {
  const out: Recording = { header: null, samples: [], reports: [], notices: [], end: null, truncated: false };
  const parser = new RecordingParser(name);
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    const parsed = parser.line(line, i + 1, i === lines.length - 1);
    if (parsed === null) return;
    if (parsed.type === 'header') out.header = parsed.header;
    else if (parsed.type === 'sample') out.samples.push(parsed.sample);
    else if (parsed.type === 'namespaces') out.reports.push(parsed.report);
    else if (parsed.type === 'notice') out.notices.push(parsed.notice);
    else if (parsed.type === 'end') out.end = parsed.end;
    else out.truncated = true;
  });
  parser.finish();
  return out;
}

/** A line as read back (a report in the fields summaries use); `truncated`: a cut-off last line. */
export type ParsedLine =
  | { type: 'header'; header: RecordingHeader }
  | { type: 'sample'; sample: ConntrackSample }
  | { type: 'namespaces'; report: RecordedReport }
  | { type: 'notice'; notice: RecordingNotice }
  | { type: 'end'; end: RecordingEnd }
  | { type: 'truncated' };

/**
 * Reads a recording one line at a time (parseRecording for a whole text, readRecording for a
 * file of any size): each line is checked and typed on its own, so nothing but the line in
 * hand is held.
 */
export class RecordingParser {
  private sawHeader = false;
  private sawData = false;

  constructor(private readonly name: string) {}

  /**
   * Line `n` (1-based, without its newline); `last`: no newline follows it, so a line that
   * does not parse was cut off mid-write. Null for a blank line or a type this version does
   * not know; throws a RecordingFormatError naming the line and field.
   */
  line(line: string, n: number, last: boolean): ParsedLine | null {
    if (line.trim() === '') return null;
    const where = `${this.name}:${n}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      if (last) return { type: 'truncated' }; // no newline after it: the write was cut off
      throw new RecordingFormatError(`${where}: not JSON: ${(err as Error).message}`);
    }
    const check = new Checker(where);
    const obj = check.object(value, 'line');
    const type = obj.type ?? (obj.counts !== undefined && obj.time !== undefined ? 'sample' : undefined);
    if (type === 'header') {
      if (this.sawHeader || this.sawData) throw new RecordingFormatError(`${where}: a header after the first line`);
      this.sawHeader = true;
      return { type, header: check.header(obj) };
    }
    if (type === 'sample') {
      this.sawData = true;
      return { type, sample: check.sample(obj) };
    }
    if (type === 'namespaces') {
      this.sawData = true;
      return { type, report: check.report(obj) };
    }
    if (type === 'notice') return { type, notice: check.notice(obj) };
    if (type === 'end') return { type, end: check.end(obj) };
    if (typeof type !== 'string') throw new RecordingFormatError(`${where}: a line without a type`);
    return null;
  }

  /** Throws unless what was read is a recording (a header, a sample or a report). */
  finish(): void {
    if (!this.sawHeader && !this.sawData) {
      throw new RecordingFormatError(
        `${this.name}: no header, sample or namespaces line: not a conntrack-monitor recording`,
      );
    }
  }
}

type Obj = Record<string, unknown>;

/** Type checks with one-line errors naming the line and the field. */
class Checker {
  constructor(private readonly where: string) {}

  private fail(field: string, expected: string, value: unknown): never {
    const shown = JSON.stringify(value);
    throw new RecordingFormatError(
      `${this.where}: ${field} must be ${expected}, got ${shown === undefined ? 'nothing' : shown.slice(0, 40)}`,
    );
  }

  object(v: unknown, field: string): Obj {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, 'an object', v);
    return v as Obj;
  }

  number(v: unknown, field: string): number {
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, 'a number', v);
    return v as number;
  }

  numberOrNull(v: unknown, field: string): number | null {
    return v === null ? null : this.number(v, field);
  }

  string(v: unknown, field: string): string {
    if (typeof v !== 'string') this.fail(field, 'a string', v);
    return v as string;
  }

  stringOrNull(v: unknown, field: string): string | null {
    return v === null ? null : this.string(v, field);
  }

  time(v: unknown, field: string): string {
    const text = this.string(v, field);
    if (!Number.isFinite(Date.parse(text))) this.fail(field, 'an ISO 8601 time', v);
    return text;
  }

  boolean(v: unknown, field: string): boolean {
    if (typeof v !== 'boolean') this.fail(field, 'true or false', v);
    return v as boolean;
  }

  /** A record of numbers (or null) with exactly the given keys; missing keys are null. */
  numbers<K extends string>(
    v: unknown,
    field: string,
    keys: readonly K[],
    nullable: boolean,
  ): Record<K, number | null> {
    const obj = this.object(v, field);
    const out = {} as Record<K, number | null>;
    for (const k of keys) {
      out[k] = nullable
        ? this.numberOrNull(obj[k] ?? null, `${field}.${k}`)
        : this.number(obj[k] ?? 0, `${field}.${k}`);
    }
    return out;
  }

  reasons(v: unknown, field: string): Partial<Record<string, string>> {
    const obj = this.object(v ?? {}, field);
    const out: Partial<Record<string, string>> = {};
    for (const [k, r] of Object.entries(obj)) out[k] = this.string(r, `${field}.${k}`);
    return out;
  }

  header(o: Obj): RecordingHeader {
    if (o.format !== RECORDING_FORMAT) this.fail('format', JSON.stringify(RECORDING_FORMAT), o.format);
    const c = this.object(o.conntrack, 'conntrack');
    const timeouts = this.object(c.timeouts ?? {}, 'conntrack.timeouts');
    let command: string[] | null = null;
    if (o.command !== null && o.command !== undefined) {
      if (!Array.isArray(o.command)) this.fail('command', 'a list of strings or null', o.command);
      command = (o.command as unknown[]).map((a, i) => this.string(a, `command[${i}]`));
    }
    return {
      type: 'header',
      format: RECORDING_FORMAT,
      version: this.number(o.version, 'version'),
      tool: this.string(o.tool, 'tool'),
      startTime: this.time(o.startTime, 'startTime'),
      hostname: this.string(o.hostname, 'hostname'),
      kernel: this.string(o.kernel, 'kernel'),
      cpus: this.number(o.cpus, 'cpus'),
      memoryBytes: this.numberOrNull(o.memoryBytes ?? null, 'memoryBytes'),
      command,
      netns: this.stringOrNull(o.netns ?? null, 'netns'),
      allNamespaces: this.boolean(o.allNamespaces ?? false, 'allNamespaces'),
      intervalMs: this.number(o.intervalMs, 'intervalMs'),
      backend: this.string(o.backend, 'backend'),
      conntrack: {
        max: this.numberOrNull(c.max ?? null, 'conntrack.max'),
        buckets: this.numberOrNull(c.buckets ?? null, 'conntrack.buckets'),
        entryBytes: this.numberOrNull(c.entryBytes ?? null, 'conntrack.entryBytes'),
        timeouts: Object.fromEntries(
          Object.entries(timeouts).map(([k, v]) => [k, this.numberOrNull(v, `conntrack.timeouts.${k}`)]),
        ),
      },
      unavailable: this.reasons(o.unavailable, 'unavailable'),
    };
  }

  private eventsPath(v: unknown): 'ebpf' | 'netlink' {
    if (v !== 'ebpf' && v !== 'netlink') this.fail('events.path', '"ebpf" or "netlink"', v);
    return v;
  }

  sample(o: Obj): ConntrackSample {
    const source = o.source;
    if (source !== 'netlink' && source !== 'proc') this.fail('source', '"netlink" or "proc"', source);
    const tw = this.object(o.timeWait, 'timeWait');
    const ev = o.events === null || o.events === undefined ? null : this.object(o.events, 'events');
    const mode = o.eventsMode ?? null;
    if (mode !== null && mode !== 0 && mode !== 1 && mode !== 2) this.fail('eventsMode', '0, 1, 2 or null', mode);
    return {
      time: this.time(o.time, 'time'),
      intervalMs: this.number(o.intervalMs, 'intervalMs'),
      source: source as 'netlink' | 'proc',
      netns: this.stringOrNull(o.netns ?? null, 'netns'),
      entries: this.numberOrNull(o.entries ?? null, 'entries'),
      max: this.numberOrNull(o.max ?? null, 'max'),
      fill: this.numberOrNull(o.fill ?? null, 'fill'),
      buckets: this.numberOrNull(o.buckets ?? null, 'buckets'),
      counts: this.numbers(o.counts, 'counts', COUNTER_NAMES, true),
      rates: this.numbers(o.rates, 'rates', COUNTER_NAMES, true),
      totals: this.numbers(o.totals ?? {}, 'totals', COUNTER_NAMES, true),
      events:
        ev === null
          ? null
          : {
              // Files that predate the eBPF event path read events from the socket.
              path: this.eventsPath(ev.path ?? 'netlink'),
              pathReason:
                ev.path === undefined
                  ? 'not recorded (a file older than events.path)'
                  : this.stringOrNull(ev.pathReason ?? null, 'events.pathReason'),
              received: this.number(ev.received ?? 0, 'events.received'),
              updates: this.number(ev.updates ?? 0, 'events.updates'),
              lost: this.number(ev.lost, 'events.lost'),
              lostTotal: this.number(ev.lostTotal ?? 0, 'events.lostTotal'),
              lostSince:
                ev.lostSince === undefined || ev.lostSince === null
                  ? null
                  : this.time(ev.lostSince, 'events.lostSince'),
              // Files that predate these counted received events in totals.insert/delete.
              newTotal: this.number(ev.newTotal ?? (o.totals as Obj | undefined)?.insert ?? 0, 'events.newTotal'),
              updateTotal: this.number(ev.updateTotal ?? 0, 'events.updateTotal'),
              destroyTotal: this.number(
                ev.destroyTotal ?? (o.totals as Obj | undefined)?.delete ?? 0,
                'events.destroyTotal',
              ),
              receiveBufferBytes: this.number(ev.receiveBufferBytes ?? 0, 'events.receiveBufferBytes'),
              resyncs: this.number(ev.resyncs ?? 0, 'events.resyncs'),
              lastResyncMs: this.numberOrNull(ev.lastResyncMs ?? null, 'events.lastResyncMs'),
              malformedTotal: this.number(ev.malformedTotal ?? 0, 'events.malformedTotal'),
            },
      socketTimeWait: this.numberOrNull(o.socketTimeWait ?? null, 'socketTimeWait'),
      timeToFullSeconds: this.numberOrNull(o.timeToFullSeconds ?? null, 'timeToFullSeconds'),
      timeWait: {
        entries: this.numberOrNull(tw.entries ?? null, 'timeWait.entries'),
        timeoutSeconds: this.numberOrNull(tw.timeoutSeconds ?? null, 'timeWait.timeoutSeconds'),
        share: this.numberOrNull(tw.share ?? null, 'timeWait.share'),
      },
      tcpStates:
        o.tcpStates === null || o.tcpStates === undefined
          ? null
          : (this.numbers(o.tcpStates, 'tcpStates', TCP_STATE_NAMES, false) as ConntrackSample['tcpStates']),
      protocols:
        o.protocols === null || o.protocols === undefined
          ? null
          : (this.numbers(o.protocols, 'protocols', PROTOCOL_NAMES, false) as ConntrackSample['protocols']),
      eventsMode: mode as ConntrackSample['eventsMode'],
      final: this.boolean(o.final ?? false, 'final'),
      samplesMissed: this.number(o.samplesMissed ?? 0, 'samplesMissed'),
      unavailable: this.reasons(o.unavailable, 'unavailable'),
    };
  }

  /** Only the report fields the summary uses, so the rows may grow without breaking reports. */
  report(o: Obj): RecordedReport {
    if (!Array.isArray(o.namespaces)) this.fail('namespaces', 'a list', o.namespaces);
    return {
      time: this.time(o.time, 'time'),
      intervalMs: this.number(o.intervalMs, 'intervalMs'),
      final: this.boolean(o.final ?? false, 'final'),
      namespaces: (o.namespaces as unknown[]).map((v, i) => {
        const n = this.object(v, `namespaces[${i}]`);
        const f = (k: string) => `namespaces[${i}].${k}`;
        const source = n.source ?? null;
        if (source !== null && source !== 'netlink' && source !== 'proc') this.fail(f('source'), 'a backend', source);
        return {
          inode: this.number(n.inode, f('inode')),
          name: this.stringOrNull(n.name ?? null, f('name')),
          pid: this.numberOrNull(n.pid ?? null, f('pid')),
          host: this.boolean(n.host ?? false, f('host')),
          entries: this.numberOrNull(n.entries ?? null, f('entries')),
          max: this.numberOrNull(n.max ?? null, f('max')),
          fill: this.numberOrNull(n.fill ?? null, f('fill')),
          drops: this.numberOrNull(n.drops ?? null, f('drops')),
          dropRate: this.numberOrNull(n.dropRate ?? null, f('dropRate')),
          inserts: this.numberOrNull(n.inserts ?? null, f('inserts')),
          insertRate: this.numberOrNull(n.insertRate ?? null, f('insertRate')),
          totalDrops: this.numberOrNull(n.totalDrops ?? null, f('totalDrops')),
          source: source as 'netlink' | 'proc' | null,
          error: this.stringOrNull(n.error ?? null, f('error')),
        };
      }),
    };
  }

  notice(o: Obj): RecordingNotice {
    const kind = o.kind;
    if (kind !== 'fallback' && kind !== 'warning' && kind !== 'error')
      this.fail('kind', 'fallback, warning or error', kind);
    return {
      type: 'notice',
      time: this.time(o.time, 'time'),
      kind: kind as RecordingNotice['kind'],
      message: this.string(o.message, 'message'),
    };
  }

  end(o: Obj): RecordingEnd {
    let exit: RecordingEnd['exit'] = null;
    if (o.exit !== null && o.exit !== undefined) {
      const e = this.object(o.exit, 'exit');
      exit = {
        code: this.numberOrNull(e.code ?? null, 'exit.code'),
        signal: this.stringOrNull(e.signal ?? null, 'exit.signal'),
      };
    }
    return {
      type: 'end',
      endTime: this.time(o.endTime, 'endTime'),
      exit,
      reason: this.string(o.reason ?? '', 'reason'),
    };
  }
}
