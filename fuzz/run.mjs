#!/usr/bin/env node
// Build and run the libFuzzer target with AddressSanitizer and UndefinedBehaviorSanitizer.
//
//   npm run fuzz -- [--seconds 60] [--jobs 1]     fuzz for a while (default 60 s)
//   npm run fuzz -- --replay                      run every seed and regression once, then exit
//
// Needs clang and compiler-rt (Debian: apt-get install clang libclang-rt-14-dev; .ci/run
// installs them). The seed corpus is built from the datagrams captured from the kernel in
// test/fixtures/netlink, wrapped in the target's record format (see ctnetlink_fuzzer.cc),
// plus every input in fuzz/regressions/. The working corpus lives in build/fuzz/corpus and
// grows across runs. A crash is written to build/fuzz/crash-*; copy it into fuzz/regressions/
// with a name that says what it found, so `npm test` replays it from then on.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const nativeSources = createRequire(import.meta.url)('../native/sources.js');

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const out = join(root, 'build', 'fuzz');
const usage = (message) => {
  console.error(`fuzz: ${message} (see npm run fuzz -- --help)`);
  process.exit(2);
};
let values;
try {
  ({ values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      jobs: { type: 'string', default: '1' },
      replay: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  usage(e.message);
}
if (values.help) {
  console.log(
    readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\n')
      .slice(1, 13)
      .map((l) => l.replace(/^\/\/ ?/, ''))
      .join('\n'),
  );
  process.exit(0);
}
const seconds = Number(values.seconds);
if (!/^\d+$/.test(values.seconds) || seconds < 1)
  usage(`--seconds must be a whole number of seconds >= 1, got ${JSON.stringify(values.seconds)}`);
if (!/^\d+$/.test(values.jobs) || Number(values.jobs) < 1)
  usage(`--jobs must be a whole number >= 1, got ${JSON.stringify(values.jobs)}`);

// Record ops, as in ctnetlink_fuzzer.cc.
const OP = {
  event: 0,
  beginDump: 1,
  dump: 2,
  endDump: 3,
  advanceClock: 5,
  stats: 6,
  procText: 7,
  compact: 8,
  btf: 9,
  kallsyms: 10,
  snapshotDump: 11,
  snapshotCompact: 12,
  snapshotTop: 13,
  wheel: 14,
};
const record = (op, payload) => {
  const head = Buffer.alloc(3);
  head[0] = op;
  head.writeUInt16LE(payload.length, 1);
  return Buffer.concat([head, payload]);
};

/** Datagrams of a captured fixture (hex, one datagram per line). */
const datagrams = (file) =>
  readFileSync(join(root, 'test', 'fixtures', 'netlink', file), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => Buffer.from(l.trim(), 'hex'));

function writeSeeds(dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const files = readdirSync(join(root, 'test', 'fixtures', 'netlink')).filter((f) => f.endsWith('.hex'));
  const all = [];
  for (const file of files) {
    const op = file.startsWith('stats') ? OP.stats : OP.event;
    const records = datagrams(file).map((d) => record(op, d));
    all.push(...records);
    writeFileSync(join(dir, file.replace('.hex', '.seed')), Buffer.concat(records));
  }
  // A life cycle in one input: events, a dump that lists some of them again, time passing.
  const events = files.filter((f) => !f.startsWith('stats')).flatMap((f) => datagrams(f));
  const news = files.filter((f) => f.endsWith('-new.hex')).flatMap((f) => datagrams(f));
  writeFileSync(
    join(dir, 'lifecycle.seed'),
    Buffer.concat([
      ...events.map((d) => record(OP.event, d)),
      record(OP.beginDump, Buffer.alloc(0)),
      ...news.map((d) => record(OP.dump, d)),
      record(OP.endDump, Buffer.alloc(0)),
      record(OP.advanceClock, Buffer.from([30, 0])),
      // Compact events: 40 TCP flows opened, half destroyed, some moved to TIME_WAIT (7).
      record(OP.compact, Buffer.concat(Array.from({ length: 40 }, (_, i) => Buffer.from([0, 0, 3, 3, i, 0, 120])))),
      record(
        OP.compact,
        Buffer.concat(Array.from({ length: 20 }, (_, i) => Buffer.from([i % 2 ? 2 : 1, 0, 7, 3, i, 0, 120]))),
      ),
      record(
        OP.procText,
        Buffer.from('sockets: used 5\nTCP: inuse 1 orphan 0 tw 12 alloc 2 mem 1\nUDP: inuse 0 mem 0\n'),
      ),
    ]),
  );
  // The snapshot grouping: the captured table dump, entries that share keys, and top N checks.
  writeFileSync(
    join(dir, 'snapshot.seed'),
    Buffer.concat([
      ...datagrams('table-dump/dump.hex').map((d) => record(OP.snapshotDump, d)),
      record(OP.snapshotTop, Buffer.from([3])),
      record(
        OP.snapshotCompact,
        Buffer.concat(Array.from({ length: 60 }, (_, i) => Buffer.from([i % 2, i % 8, i % 7, i % 5, 53, 0, i % 8, i]))),
      ),
      record(OP.snapshotTop, Buffer.from([5])),
      record(OP.snapshotTop, Buffer.from([255])),
    ]),
  );
  // The drop probe's inputs: kallsyms lines around nf_hook_slow, and a minimal BTF blob (header,
  // one INT type, strings) built here: the kernel's own file is megabytes, past -max_len.
  writeFileSync(
    join(dir, 'kallsyms.seed'),
    record(
      OP.kallsyms,
      Buffer.from(
        'ffffffff81f81b00 T nf_hook_entries_delete_raw\nffffffff81f81c50 T nf_hook_slow\nffffffff81f81d60 T nf_hook_slow_list\n',
      ),
    ),
  );
  const strings = Buffer.from('\0int\0');
  const types = Buffer.alloc(16);
  types.writeUInt32LE(1, 0); // name_off -> "int"
  types.writeUInt32LE(1 << 24, 4); // kind 1: INT
  types.writeUInt32LE(4, 8); // size
  types.writeUInt32LE(32, 12); // bits
  const header = Buffer.alloc(24);
  header.writeUInt16LE(0xeb9f, 0);
  header[2] = 1; // version
  header.writeUInt32LE(24, 4); // hdr_len
  header.writeUInt32LE(0, 8); // type_off
  header.writeUInt32LE(types.length, 12);
  header.writeUInt32LE(types.length, 16); // str_off
  header.writeUInt32LE(strings.length, 20);
  writeFileSync(join(dir, 'btf.seed'), record(OP.btf, Buffer.concat([header, types, strings])));
  // The event filter's flows: 60 flows of the four classes made, moved, some destroyed, time
  // passing in small and large steps (past the reader's lag limit), read after each step.
  const wheelOps = [];
  for (let i = 0; i < 60; i++) wheelOps.push([0, i, i % 4, 1 + (i % 40)], [5, 0, 0, 0]);
  for (let i = 0; i < 60; i += 3) wheelOps.push([1, i, 0, i % 7 === 0 ? 255 : 30 + i], [5, 0, 0, 0]);
  for (let i = 0; i < 60; i += 5) wheelOps.push([2, i, 0, 0], [3, 0, 0, 50], [5, 0, 0, 0]);
  wheelOps.push([4, 0, 0, 40], [5, 0, 0, 0], [3, 0, 0, 200], [5, 0, 0, 0], [1, 1, 0, 0], [5, 0, 0, 0]);
  writeFileSync(join(dir, 'wheel.seed'), record(OP.wheel, Buffer.from(wheelOps.flat())));
  return dir;
}

function build() {
  mkdirSync(out, { recursive: true });
  const binary = join(out, 'ctnetlink_fuzzer');
  const sources = ['fuzz/ctnetlink_fuzzer.cc', ...nativeSources.core];
  try {
    execFileSync(
      'clang++',
      [
        '-std=c++17',
        '-g',
        '-O1',
        '-fno-omit-frame-pointer',
        '-fsanitize=fuzzer,address,undefined',
        '-fno-sanitize-recover=all',
        '-I',
        join(root, 'native'),
        ...sources.map((s) => join(root, s)),
        '-o',
        binary,
      ],
      { stdio: 'inherit' },
    );
  } catch (e) {
    if (e.code === 'ENOENT') {
      console.error('fuzz: clang++ not found. Install clang and compiler-rt: apt-get install clang libclang-rt-14-dev');
      process.exit(2);
    }
    throw e;
  }
  return binary;
}

const binary = build();
const seeds = writeSeeds(join(out, 'seeds'));
const regressions = join(here, 'regressions');
const env = { ...process.env, UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1', ASAN_OPTIONS: 'detect_leaks=1' };

if (values.replay) {
  // Run each input once (libFuzzer runs the files it is given and exits).
  const inputs = [seeds, regressions].flatMap((d) => readdirSync(d).map((f) => join(d, f)));
  const r = spawnSync(binary, inputs, { env, encoding: 'utf8' });
  process.stderr.write(
    r.stderr
      .split('\n')
      .filter((l) => !/^(Running|Executed)/.test(l))
      .join('\n'),
  );
  console.log(`fuzz replay: ${inputs.length} inputs, exit ${r.status}`);
  process.exit(r.status ?? 1);
}

const corpus = join(out, 'corpus');
mkdirSync(corpus, { recursive: true });
const r = spawnSync(
  binary,
  [
    corpus,
    seeds,
    regressions,
    `-max_total_time=${seconds}`,
    // -jobs makes libFuzzer write fuzz-N.log files into the working directory: only when asked.
    ...(values.jobs === '1' ? [] : [`-jobs=${values.jobs}`, `-workers=${values.jobs}`]),
    '-max_len=8192',
    '-print_final_stats=1',
    `-artifact_prefix=${out}/`,
  ],
  { env, stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' },
);
const log = r.stderr;
const stat = (name) => Number(new RegExp(`stat::${name}:\\s+(\\d+)`).exec(log)?.[1] ?? NaN);
const crashed = r.status !== 0;
if (crashed) process.stderr.write(log);
console.log(
  JSON.stringify({
    seconds,
    executions: stat('number_of_executed_units'),
    execsPerSecond: stat('average_exec_per_sec'),
    peakRssMb: stat('peak_rss_mb'),
    newUnits: stat('new_units_added'),
    corpusFiles: readdirSync(corpus).length,
    crashed,
  }),
);
if (crashed) {
  console.error(
    `fuzz: the target failed (exit ${r.status}); the input is in ${out}/. Copy it to fuzz/regressions/ and fix the bug.`,
  );
  process.exit(1);
}
