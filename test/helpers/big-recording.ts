/**
 * Recordings of a given size, as `record` writes them, for tests of a reader's memory: the
 * header and sample lines of the real fixture recording, the samples repeated with their time,
 * counts and entries following a pattern whose summary is known without the code under test
 * (the `truth` returned); and --all-namespaces recordings of many namespaces per report line,
 * with rows shaped as AllNamespacesMonitor writes them.
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const FIXTURE = join(__dirname, '..', 'fixtures', 'recordings', 'table-full.ndjson');
const fixtureLines = () =>
  readFileSync(FIXTURE, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const T0 = Date.parse('2026-12-01T00:00:00.000Z');

/** Writes lines made by `line(i)` until the file has `bytes`; returns how many there were. */
function writeUntil(path: string, first: string, bytes: number, line: (i: number) => string, last: string): number {
  const fd = openSync(path, 'w');
  let written = 0;
  let batch: string[] = [first];
  let batchBytes = first.length;
  let i = 0;
  try {
    while (written + batchBytes < bytes) {
      const l = line(i++);
      batch.push(l);
      batchBytes += l.length;
      if (batchBytes > 8 << 20) {
        written += writeSync(fd, batch.join(''));
        batch = [];
        batchBytes = 0;
      }
    }
    batch.push(last);
    writeSync(fd, batch.join(''));
  } finally {
    closeSync(fd);
  }
  return i;
}

export interface BigRecordingTruth {
  samples: number;
  totals: { insert: number; delete: number; drop: number };
  peak: { entries: number; insertRate: number; dropRate: number };
  p50: { insertRate: number };
  p99: { insertRate: number };
  durationSeconds: number;
  firstDropSeconds: number;
}

/**
 * One namespace's recording of about `bytes` (1 s samples): insert i % 100 a second, delete
 * i % 10, 3 drops every 50,000th second, entries (7 i) % 1000 of 1000.
 */
export function bigRecording(path: string, bytes: number): BigRecordingTruth {
  const lines = fixtureLines();
  const header = { ...lines[0]!, startTime: new Date(T0).toISOString(), intervalMs: 1000 };
  const template = lines.find((l) => l.type === 'sample')!;
  const insert = (i: number) => i % 100;
  const del = (i: number) => i % 10;
  const drop = (i: number) => (i % 50_000 === 49_999 ? 3 : 0);
  const entries = (i: number) => (i * 7) % 1000;
  const counts = template.counts as Record<string, number>;
  const n = writeUntil(
    path,
    `${JSON.stringify(header)}\n`,
    bytes,
    (i) => {
      const c = { ...counts, insert: insert(i), delete: del(i), drop: drop(i), earlyDrop: 0, insertFailed: 0 };
      return `${JSON.stringify({
        ...template,
        time: new Date(T0 + (i + 1) * 1000).toISOString(),
        intervalMs: 1000,
        entries: entries(i),
        max: 1000,
        fill: entries(i) / 1000,
        counts: c,
        rates: c,
      })}\n`;
    },
    `${JSON.stringify({ type: 'end', endTime: new Date(T0).toISOString(), exit: null, reason: 'SIGTERM' })}\n`,
  );
  // The truth, counted here from the pattern.
  const histogram = new Array<number>(100).fill(0);
  const truth: BigRecordingTruth = {
    samples: n,
    totals: { insert: 0, delete: 0, drop: 0 },
    peak: { entries: 0, insertRate: 0, dropRate: 0 },
    p50: { insertRate: 0 },
    p99: { insertRate: 0 },
    durationSeconds: n,
    firstDropSeconds: 50_000,
  };
  for (let i = 0; i < n; i++) {
    histogram[insert(i)]!++;
    truth.totals.insert += insert(i);
    truth.totals.delete += del(i);
    truth.totals.drop += drop(i);
    truth.peak.entries = Math.max(truth.peak.entries, entries(i));
    truth.peak.insertRate = Math.max(truth.peak.insertRate, insert(i));
    truth.peak.dropRate = Math.max(truth.peak.dropRate, drop(i));
  }
  const rank = (p: number) => {
    const want = Math.ceil((p / 100) * n);
    let seen = 0;
    for (let v = 0; v < 100; v++) if ((seen += histogram[v]!) >= want) return v;
    return 99;
  };
  truth.p50.insertRate = rank(50);
  truth.p99.insertRate = rank(99);
  return truth;
}

/**
 * An --all-namespaces recording of about `bytes`: one report a second of `namespaces` rows,
 * with counts that vary as a busy node's do (namespace k, report i: entries and inserts from a
 * hash of both, a drop every 1000th report in namespace 0), so that a reader keeps as many
 * distinct values as it would of a real one.
 */
export function bigNamespacesRecording(path: string, bytes: number, namespaces: number): { reports: number } {
  const header = { ...fixtureLines()[0]!, allNamespaces: true, netns: null, command: null, intervalMs: 1000 };
  const zero = {
    insert: 0,
    delete: 0,
    drop: 0,
    earlyDrop: 0,
    insertFailed: 0,
    invalid: 0,
    icmpError: 0,
    clashResolve: 0,
    chainTooLong: 0,
    searchRestart: 0,
  };
  const row = (k: number, i: number) => {
    const drops = k === 0 && i % 1000 === 999 ? 1 : 0;
    const inserts = (k * 7919 + i * 104729) % 5000;
    const counts = { ...zero, insert: inserts, delete: inserts, drop: drops };
    return {
      inode: 4026532000 + k,
      name: k === 0 ? null : `cni-${k.toString(16).padStart(8, '0')}-8d2b-4e7f-a5c1-9b0d2e4f6a81`,
      pid: 1000 + k,
      host: k === 0,
      pod:
        k === 0 ? null : { namespace: 'shop', name: `web-7d9f8b6c5-${k}`, uid: '0c9e4d7a-1b2c-4d5e-8f90-a1b2c3d4e5f6' },
      intervalMs: 1000,
      entries: inserts * 3,
      max: 262144,
      fill: (inserts * 3) / 262144,
      counts,
      rates: counts,
      totals: { ...zero, insert: k * (i + 1), delete: k * (i + 1) },
      events: {
        counting: 'ebpf',
        countingFallback: null,
        received: 2 * k,
        lost: 0,
        lostTotal: 0,
        lostSince: null,
        newTotal: k * (i + 1),
        destroyTotal: k * (i + 1),
        malformedTotal: 0,
        receiveBufferBytes: 33554432,
      },
      timeWait: null,
      tcpStates: null,
      protocols: null,
      drops,
      dropRate: drops,
      inserts,
      insertRate: inserts,
      totalDrops: 0,
      source: 'netlink',
      error: null,
      unavailable: { timeWait: 'TIME_WAIT and state counts need the table dumps of a full monitor' },
    };
  };
  const reports = writeUntil(
    path,
    `${JSON.stringify(header)}\n`,
    bytes,
    (i) =>
      `${JSON.stringify({
        type: 'namespaces',
        time: new Date(T0 + (i + 1) * 1000).toISOString(),
        intervalMs: 1000,
        final: false,
        namespaces: Array.from({ length: namespaces }, (_, k) => row(k, i)),
      })}\n`,
    `${JSON.stringify({ type: 'end', endTime: new Date(T0).toISOString(), exit: null, reason: 'SIGTERM' })}\n`,
  );
  return { reports };
}
