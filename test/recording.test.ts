/**
 * The recording file: parseRecording on the real fixture, on a file cut off mid-write, on
 * `--json` output, and on hostile or broken lines (one-line errors naming line and field);
 * the writer leaves a readable file line by line, before close() and after it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRecording } from '../dist/index.js';
import { RecordingWriter } from '../dist/recording/writer.js';
import { recordingHeader } from '../dist/recording/header.js';
import { sample } from './helpers/sample';

const FIXTURE = readFileSync(join(__dirname, 'fixtures', 'recordings', 'table-full.ndjson'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'ctmon-recording-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseRecording', () => {
  it('reads the fixture: header, samples, notices, end', () => {
    const r = parseRecording(FIXTURE, 'table-full.ndjson');
    const lines = FIXTURE.trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(r.header).toEqual(lines[0]);
    expect(r.header!.format).toBe('conntrack-monitor-recording');
    expect(r.header!.command!.slice(0, 3)).toEqual(['ip', 'netns', 'exec']);
    expect(r.samples).toHaveLength(lines.filter((l) => l.type === 'sample').length);
    // Fields added to the sample after the fixture was recorded read as null, the event totals
    // by type from totals.insert/delete (which counted received events when it was recorded),
    // the event path as the socket's, with a reason saying it was not recorded, and no check of
    // entries past their deadline (the monitor made none then).
    const newer = { timeToFullSeconds: null };
    const recorded = Object.fromEntries(Object.entries(lines[2]).filter(([k]) => k !== 'type')) as {
      events: object;
      totals: { insert: number; delete: number };
    };
    expect(r.samples[0]).toEqual({
      ...newer,
      ...recorded,
      events: {
        ...recorded.events,
        path: 'netlink',
        pathReason: 'not recorded (a file older than events.path)',
        lostSince: null,
        newTotal: recorded.totals.insert,
        updateTotal: 0,
        destroyTotal: recorded.totals.delete,
        unverified: 0,
        walks: 0,
        lastWalkMs: null,
      },
    });
    expect(r.notices.map((n) => n.kind)).toEqual(['warning']);
    expect(r.end).toEqual(lines.at(-1));
    expect(r.end!.exit).toEqual({ code: 0, signal: null });
    expect(r.truncated).toBe(false);
  });

  it('a file cut off mid-line (a crash) keeps every whole line before it', () => {
    const lines = FIXTURE.split('\n');
    const cut = `${lines.slice(0, 6).join('\n')}\n${lines[6]!.slice(0, 100)}`;
    const r = parseRecording(cut);
    expect(r.truncated).toBe(true);
    expect(r.end).toBeNull();
    expect(r.samples).toHaveLength(4);
  });

  it('reads conntrack-monitor --json output (samples without a type or header)', () => {
    const json = [sample({ t: 1 }), sample({ t: 2 })].map((s) => JSON.stringify(s)).join('\n');
    const r = parseRecording(`${json}\n`);
    expect(r.header).toBeNull();
    expect(r.samples).toHaveLength(2);
  });

  it('skips line types it does not know (later versions may add some)', () => {
    const r = parseRecording(`${FIXTURE}{"type":"annotation","text":"deploy"}\n`);
    expect(r.samples.length).toBeGreaterThan(0);
  });

  it.each([
    [
      'a number that is a string',
      (s: Record<string, unknown>) => (s.entries = '<b>12</b>'),
      /:3: entries must be a number, got "<b>12<\/b>"/,
    ],
    ['a bad time', (s: Record<string, unknown>) => (s.time = 'yesterday'), /:3: time must be an ISO 8601 time/],
    [
      'a counter that is an object',
      (s: Record<string, unknown>) => ((s.counts as Record<string, unknown>).drop = { $gt: 1 }),
      /:3: counts\.drop must be a number/,
    ],
    [
      'an unknown source',
      (s: Record<string, unknown>) => (s.source = 'ebpf'),
      /:3: source must be "netlink" or "proc"/,
    ],
    [
      'a reason that is not text',
      (s: Record<string, unknown>) => (s.unavailable = { entries: 1 }),
      /:3: unavailable\.entries must be a string/,
    ],
  ])('rejects %s with one line naming the line and field', (_, spoil, message) => {
    const lines = FIXTURE.trim().split('\n');
    const s = JSON.parse(lines[2]!);
    spoil(s);
    lines[2] = JSON.stringify(s);
    expect(() => parseRecording(lines.join('\n'), 'bad.ndjson')).toThrow(message);
  });

  it('rejects what is not a recording, and broken JSON before the last line', () => {
    expect(() => parseRecording('{"hello":"world"}\n', 'x.json')).toThrow(/x\.json:1: a line without a type/);
    expect(() => parseRecording('\n', 'empty')).toThrow(/empty: no header, sample or namespaces line/);
    expect(() => parseRecording(`{"type":"sample"\n${FIXTURE}`, 'f')).toThrow(/f:1: not JSON/);
    const lines = FIXTURE.trim().split('\n');
    expect(() => parseRecording([lines[0], lines[2], lines[0]].join('\n'), 'f')).toThrow(
      /f:3: a header after the first line/,
    );
    expect(() => parseRecording('{"type":"header","format":"other"}\n', 'f')).toThrow(
      /f:1: format must be "conntrack-monitor-recording"/,
    );
  });
});

describe('RecordingWriter', () => {
  const header = () =>
    recordingHeader({ command: ['true'], netns: null, allNamespaces: false, intervalMs: 1000, backend: 'auto' });

  it('each line is in the file as soon as it is written, before close()', () => {
    const path = join(dir, 'live.ndjson');
    const w = new RecordingWriter(path, header());
    w.sample(sample({ t: 1 }));
    w.notice('warning', 'a warning');
    const early = parseRecording(readFileSync(path, 'utf8'));
    expect(early.samples).toHaveLength(1);
    expect(early.notices[0]!.message).toBe('a warning');
    expect(early.end).toBeNull(); // no end line yet: a crash here leaves this much
    w.sample(sample({ t: 2 }));
    w.close({ exit: { code: 3, signal: null }, reason: 'command exited' });
    w.close({ exit: null, reason: 'twice' }); // idempotent
    const done = parseRecording(readFileSync(path, 'utf8'));
    expect(done.samples).toHaveLength(2);
    expect(done.end).toMatchObject({ exit: { code: 3, signal: null }, reason: 'command exited' });
    expect(w.lines).toBe(5);
    expect(w.error).toBeNull();
  });

  it('the header describes this host from its own files', () => {
    const h = header();
    expect(h.kernel).toBe(readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim());
    expect(h.hostname).toBe(readFileSync('/proc/sys/kernel/hostname', 'utf8').trim());
    expect(h.conntrack.max).toBe(Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8')));
    expect(h.conntrack.buckets).toBe(Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_buckets', 'utf8')));
    expect(h.conntrack.timeouts.nf_conntrack_tcp_timeout_time_wait).toBe(
      Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait', 'utf8')),
    );
    expect(h.conntrack.timeouts.nf_conntrack_udp_timeout_stream).toBe(
      Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream', 'utf8')),
    );
    const other = recordingHeader({
      command: null,
      netns: '/var/run/netns/x',
      allNamespaces: false,
      intervalMs: 1000,
      backend: 'auto',
    });
    expect(other.conntrack.timeouts.nf_conntrack_tcp_timeout_time_wait).toBeNull();
    expect(other.unavailable['conntrack.timeouts']).toMatch(/not readable from outside/);
  });

  it('a write that fails is kept in `error`, not thrown into the monitor', () => {
    const w = new RecordingWriter('/dev/full', header());
    w.sample(sample({ t: 1 }));
    w.close({ exit: null, reason: 'SIGINT' });
    expect(w.error?.code).toBe('ENOSPC');
    expect(w.lines).toBe(0);
  });

  it('a file that cannot be synced (/dev/null, a pipe) is no error', () => {
    const w = new RecordingWriter('/dev/null', header());
    w.sample(sample({ t: 1 }));
    w.close({ exit: null, reason: 'SIGINT' });
    expect(w.error).toBeNull();
    expect(w.lines).toBe(3);
  });

  it('a file that cannot be created throws before anything runs', () => {
    expect(() => new RecordingWriter(join(dir, 'missing', 'x.ndjson'), header())).toThrow(/ENOENT/);
  });
});
