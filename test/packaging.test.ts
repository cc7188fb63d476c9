/**
 * The package as npm ships it: `npm pack` (which builds the prebuilt addon with prebuildify),
 * then an install into a clean project that works without running any install script, and
 * the source build that takes over when no prebuild fits; optional peers (prom-client,
 * @opentelemetry/api) that may be absent, at run time and in the types.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'ctmon-pack-'));
const app = join(work, 'app');
const esmApp = join(work, 'esm-app');
const bare = join(work, 'bare-app');
const noPeers = join(work, 'no-peers-app');
/** The copy of the checkout the tarball is packed from. */
const source = join(work, 'source');
let tarball = '';
let packOutput = '';
// npm and what it runs (prebuildify keeps its cache in $TMPDIR/prebuildify, node-gyp its
// files) write their temporary files in here too: removed with the rest at the end.
const npmEnv = { ...process.env, TMPDIR: work, JOBS: 'max' }; // JOBS: node-gyp compiles on every core
const npm = (args: string[], cwd: string) =>
  execFileSync('npm', args, {
    cwd,
    encoding: 'utf8',
    env: npmEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
/** `npm pack` in the source copy into `destination`: what it said (the prepack step's lines included). */
const packed = (destination: string) => {
  const r = spawnSync('npm', ['pack', '--pack-destination', destination], {
    cwd: source,
    encoding: 'utf8',
    env: npmEnv,
  });
  if (r.status !== 0) throw new Error(`npm pack failed: ${r.stderr}`);
  return `${r.stdout}${r.stderr}`;
};
const prebuildHash = (tgz: string) =>
  createHash('sha256')
    .update(execFileSync('tar', ['-xOzf', tgz, 'package/prebuilds/linux-x64/conntrack-monitor.glibc.node']))
    .digest('hex');
const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: app, encoding: 'utf8' });

beforeAll(() => {
  // Pack from a copy: prebuildify (run by prepack) rebuilds and clears build/, which must not
  // happen to the working tree the other tests load the addon from.
  cpSync(ROOT, source, {
    recursive: true,
    filter: (f) => !/\/(node_modules|build|prebuilds|\.git|\.prebuild-stamp\.json)$/.test(f),
  });
  symlinkSync(join(ROOT, 'node_modules'), join(source, 'node_modules'));
  packOutput = packed(work);
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  tarball = join(work, `conntrack-monitor-${version}.tgz`);
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  const peers = ['prom-client@15', '@opentelemetry/api@1.9', '@opentelemetry/sdk-metrics@2.12.0'];
  npm(['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, ...peers], app);
  // An empty ECMAScript-module project beside the CommonJS one above.
  execFileSync('mkdir', ['-p', esmApp]);
  writeFileSync(
    join(esmApp, 'package.json'),
    JSON.stringify({ name: 'esm-app', version: '1.0.0', private: true, type: 'module' }),
  );
  npm(['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, ...peers], esmApp);
  // A project with none of the optional peers: neither prom-client nor @opentelemetry/api.
  execFileSync('mkdir', ['-p', noPeers]);
  writeFileSync(
    join(noPeers, 'package.json'),
    JSON.stringify({ name: 'no-peers-app', version: '1.0.0', private: true }),
  );
  npm(['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], noPeers);
  // A project where npm ran no install script (--ignore-scripts; npm >= 12 does the same for
  // a dependency not in allowScripts) and no prebuild fits (removed: as on another platform).
  execFileSync('mkdir', ['-p', bare]);
  writeFileSync(join(bare, 'package.json'), JSON.stringify({ name: 'bare-app', version: '1.0.0', private: true }));
  npm(['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', tarball], bare);
  rmSync(join(bare, 'node_modules', 'conntrack-monitor', 'prebuilds'), { recursive: true, force: true });
}, 240_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('npm package', () => {
  it('ships only what users need, with a prebuilt linux-x64 glibc addon and the docs pages the README links', () => {
    const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((f) => f.replace(/^package\//, ''));
    for (const f of files)
      expect(f).toMatch(
        /^(package\.json|README\.md|LICENSE|binding\.gyp|dist\/.+\.(js|d\.ts)|esm\/index\.(mjs|d\.mts)|native\/(base|binding|ctnetlink|ebpf)\/[a-z_]+\.(cc|h)|native\/ebpf\/[a-z_]+\.(gen\.cc|bpf\.c)|native\/sources\.js|prebuilds\/linux-x64\/conntrack-monitor\.glibc\.node|scripts\/install\.js|docs\/[a-z-]+\.md)$/,
      );
    expect(files).toContain('prebuilds/linux-x64/conntrack-monitor.glibc.node');
    expect(files).toContain('dist/cli.js');
    // The README links its reference pages: every docs/*.md, and none of docs/'s images or demo.
    const pages = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md'));
    expect(pages.length).toBeGreaterThanOrEqual(10);
    expect(files).toContain('README.md');
    expect(files.filter((f) => f.startsWith('docs/')).sort()).toEqual(pages.map((f) => `docs/${f}`).sort());
    expect(files.some((f) => f.startsWith('test/') || f.startsWith('src/') || f.startsWith('build/'))).toBe(false);
  });

  it('npm pack builds the prebuilt addon once, then reuses it while the native sources are the same', () => {
    expect(packOutput).toMatch(
      /conntrack-monitor: building prebuilds\/linux-x64\/conntrack-monitor\.glibc\.node with prebuildify \(about 2 minutes\): there is no prebuilds/,
    );
    const again = join(work, 'again');
    execFileSync('mkdir', ['-p', again]);
    const started = performance.now();
    const output = packed(again);
    const seconds = (performance.now() - started) / 1000;
    console.info(
      `a second npm pack: ${seconds.toFixed(1)} s: ${output.split('\n').find((l) => l.startsWith('conntrack-monitor:'))}`,
    );
    expect(output).toMatch(
      /^conntrack-monitor: prebuilds\/linux-x64\/conntrack-monitor\.glibc\.node was built from these native sources: not built again$/m,
    );
    expect(prebuildHash(join(again, basename(tarball)))).toBe(prebuildHash(tarball));
    expect(seconds).toBeLessThan(60); // tsc (prepare) only
    // A native source changed, or the prebuild: built again.
    const check = () =>
      spawnSync(process.execPath, ['scripts/prebuild.mjs', '--check'], { cwd: source, encoding: 'utf8' });
    expect(check()).toMatchObject({
      status: 0,
      stdout: 'prebuilds/linux-x64/conntrack-monitor.glibc.node is current\n',
    });
    const header = join(source, 'native', 'base', 'hash.h');
    const text = readFileSync(header, 'utf8');
    writeFileSync(header, `${text}// changed\n`);
    expect(check()).toMatchObject({
      status: 1,
      stdout:
        'prebuilds/linux-x64/conntrack-monitor.glibc.node would be built: the native sources changed since it was built\n',
    });
    writeFileSync(header, text);
    expect(check().status).toBe(0);
  });

  it('installs into a clean project and works there from the prebuild, with no install script run', () => {
    const installed = join(app, 'node_modules', 'conntrack-monitor');
    expect(existsSync(join(installed, 'build'))).toBe(false); // nothing was compiled
    expect(node(['-e', 'console.log(require("node-gyp-build").path(process.argv[1]))', installed]).trim()).toBe(
      join(installed, 'prebuilds', 'linux-x64', 'conntrack-monitor.glibc.node'),
    );
    expect(
      node([
        '-e',
        'const m = require("conntrack-monitor"); console.log(typeof m.ConntrackMonitor, typeof m.registerConntrackMetrics)',
      ]).trim(),
    ).toBe('function function');
    expect(
      node([
        '--input-type=module',
        '-e',
        'import { ConntrackMonitor } from "conntrack-monitor"; console.log(new ConntrackMonitor().options.intervalMs)',
      ]).trim(),
    ).toBe('1000');
    const check = execFileSync(join(app, 'node_modules', '.bin', 'conntrack-monitor'), ['check', '--observe', '0.3'], {
      encoding: 'utf8',
    });
    expect(check).toMatch(/^CONNTRACK OK - /);
    const help = execFileSync(join(app, 'node_modules', '.bin', 'conntrack-monitor'), ['serve', '--help'], {
      encoding: 'utf8',
    });
    expect(help).toMatch(/^Usage: conntrack-monitor serve/);
  });

  it('exposes the same names through import (ESM project) and require (CommonJS project), every one usable', () => {
    // Uses each export the way its kind is used: classes constructed, functions called, constants read.
    const use = `
      const { Registry } = prom;
      const { MeterProvider } = otel;
      const out = {};
      for (const [name, value] of Object.entries(m).sort()) {
        if (name === 'default') continue;
        let how = typeof value;
        if (name === 'ConntrackMonitor' || name === 'AllNamespacesMonitor' || name === 'DropMonitor') {
          how = new value({ intervalMs: 1000 }).constructor.name;
        } else if (name === 'ConntrackError') {
          how = new value('x', { code: 'EPERM' }).code;
        } else if (name === 'listNamespaces') {
          how = Array.isArray(await value()) ? 'namespaces' : 'not an array';
        } else if (name === 'registerConntrackMetrics') {
          how = value(new m.ConntrackMonitor(), { registry: new Registry() }).length + ' metrics';
        } else if (name === 'registerAllNamespacesMetrics') {
          how = value(new m.AllNamespacesMonitor(), { registry: new Registry() }).length + ' metrics';
        } else if (name === 'adviseTuning') {
          const env = { max: 1000, buckets: 1000, timeWaitTimeout: 120, entryBytes: 320, memoryBytes: 2 ** 30 };
          how = value([], env).notes.join(' ');
        } else if (name === 'tuningEnvironment') {
          how = typeof value({ max: 1000, buckets: 1000, timeWait: { timeoutSeconds: 120 } }).max;
        } else if (name === 'registerOpenTelemetryMetrics') {
          how = value(new MeterProvider().getMeter('x'), new m.ConntrackMonitor()).length + ' instruments';
        } else if (name === 'registerAllNamespacesOpenTelemetryMetrics') {
          how = value(new MeterProvider().getMeter('x'), new m.AllNamespacesMonitor()).length + ' instruments';
        } else if (name === 'registerDropMetrics') {
          how = value(new m.DropMonitor(), { registry: new Registry() }).length + ' metrics';
        } else if (name === 'RecordingFormatError') {
          how = new value('x').name;
        } else if (name === 'parseRecording' || name === 'runsOf') {
          const line = { time: new Date(0).toISOString(), intervalMs: 1000, source: 'proc', counts: {}, rates: {}, timeWait: {} };
          const recording = m.parseRecording(JSON.stringify(line));
          how = name === 'runsOf' ? value(recording, 'x.ndjson')[0].label : recording.samples.length + ' sample';
        } else if (name === 'summarize') {
          how = value([]).samples + ' samples';
        } else if (name === 'renderReport') {
          how = value([{ label: 'x', samples: [] }]).slice(0, 15);
        } else if (name === 'record') {
          how = (await value(() => 'done', { backend: 'proc' })).result;
        } else if (name === 'registerTopMetrics') {
          how = value(new m.ConntrackMonitor({ snapshotOnPressure: {} }), { registry: new Registry() }).length + ' metrics';
        } else if (name === 'topEntries') {
          how = await value({ signal: AbortSignal.abort() }).then(() => 'resolved', (e) => e.code);
        } else if (name === 'evictableVerdict') {
          how = value({ entries: 4, evictable: 3 }).mostly;
        } else if (Array.isArray(value)) {
          how = 'array of ' + value.length;
        } else if (typeof value === 'function') {
          throw new Error('export ' + name + ' has no usage check in this test: add one');
        }
        out[name] = how;
      }
      console.log(JSON.stringify(out));`;
    writeFileSync(
      join(esmApp, 'use.js'),
      `import * as m from 'conntrack-monitor'; import prom from 'prom-client'; import * as otel from '@opentelemetry/sdk-metrics';\n${use}`,
    );
    writeFileSync(
      join(app, 'use.js'),
      `const m = require('conntrack-monitor'); const prom = require('prom-client'); const otel = require('@opentelemetry/sdk-metrics');\n(async () => {${use}})();`,
    );
    const run = (cwd: string) => JSON.parse(execFileSync(process.execPath, ['use.js'], { cwd, encoding: 'utf8' }));
    const esm = run(esmApp);
    const cjs = run(app);
    expect(Object.keys(esm)).toEqual(Object.keys(cjs));
    expect(esm).toEqual(cjs);
    expect(esm).toMatchObject({
      ConntrackMonitor: 'ConntrackMonitor',
      DropMonitor: 'DropMonitor',
      ConntrackError: 'EPERM',
    });
    expect(esm.adviseTuning).toMatch(/Nothing to change/);
    expect(esm.tuningEnvironment).toBe('number');
    expect(esm.registerOpenTelemetryMetrics).toBe('21 instruments');
    expect(esm.registerAllNamespacesOpenTelemetryMetrics).toBe('16 instruments');
    expect(Object.keys(esm).length).toBeGreaterThanOrEqual(13);
  });

  /**
   * Type-checks `consumer` as an ES module and as CommonJS in `dir`, strict, Node16, library d.ts
   * included, beside a misuse in each module system, which is an error only if the types really
   * resolved (not to any). Returns tsc's errors: those two, when the consumer compiles.
   */
  const typecheck = (dir: string, consumer: string) => {
    writeFileSync(join(dir, 'a.mts'), consumer);
    writeFileSync(join(dir, 'b.cts'), consumer);
    const misuse =
      'import type { ConntrackSample } from "conntrack-monitor";\n' +
      'export const drop = (s: ConntrackSample): string => s.rates.drop;\n';
    writeFileSync(join(dir, 'misuse.mts'), misuse);
    writeFileSync(join(dir, 'misuse.cts'), misuse);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          module: 'Node16',
          moduleResolution: 'Node16',
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules/@types')],
        },
        files: ['a.mts', 'b.cts', 'misuse.mts', 'misuse.cts'],
      }),
    );
    const tsc = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.', '--pretty', 'false'],
      {
        cwd: dir,
        encoding: 'utf8',
      },
    );
    console.info(`tsc in ${dir}: exit ${tsc.status}\n${tsc.stdout}${tsc.stderr}`);
    expect(tsc.status).toBe(2); // errors found
    return tsc.stdout.split('\n').filter((l) => / error TS/.test(l));
  };
  const MISUSE_ONLY = [
    "misuse.cts(2,53): error TS2322: Type 'number | null' is not assignable to type 'string'.",
    "misuse.mts(2,53): error TS2322: Type 'number | null' is not assignable to type 'string'.",
  ];
  const consumer =
    'import { ConntrackMonitor, registerConntrackMetrics, adviseTuning, tuningEnvironment, type ConntrackSample,\n' +
    '  type TuningAdvice, type TuningEnvironment, type Recommendation } from "conntrack-monitor";\n' +
    'const m = new ConntrackMonitor(); m.on("sample", (s: ConntrackSample) => s.rates.drop); void registerConntrackMetrics;\n' +
    'const samples: ConntrackSample[] = [];\n' +
    'const env: TuningEnvironment | null = samples.length ? tuningEnvironment(samples[0]!) : null;\n' +
    'const advice: TuningAdvice | null = env && adviseTuning(samples, env);\n' +
    'const first: Recommendation | undefined = advice?.recommendations[0];\n' +
    'const max: number | undefined = first?.recommended; void max;\nexport {};\n';

  it('has types that resolve for import and require in the installed copy; a real Meter is a MeterLike', () => {
    const errors = typecheck(
      app,
      consumer +
        'import { registerOpenTelemetryMetrics, registerAllNamespacesOpenTelemetryMetrics, AllNamespacesMonitor } from "conntrack-monitor";\n' +
        'import { MeterProvider } from "@opentelemetry/sdk-metrics";\nimport { metrics } from "@opentelemetry/api";\n' +
        'const names: string[] = registerOpenTelemetryMetrics(new MeterProvider().getMeter("x"), m); void names;\n' +
        'registerAllNamespacesOpenTelemetryMetrics(metrics.getMeter("x"), new AllNamespacesMonitor(), { attributes: { "service.instance.id": "a" } });\n',
    );
    expect(errors).toEqual(MISUSE_ONLY);
  });

  it('without the optional peers (prom-client, @opentelemetry/api): imports, runs, type-checks, and takes a Meter from elsewhere', () => {
    const run = (args: string[]) => execFileSync(process.execPath, args, { cwd: noPeers, encoding: 'utf8' });
    for (const peer of ['prom-client', '@opentelemetry/api'])
      expect(existsSync(join(noPeers, 'node_modules', peer)), peer).toBe(false);
    // The library loads and works; nothing of OpenTelemetry is loaded by it.
    const loaded = JSON.parse(
      run([
        '-e',
        `const m = require('conntrack-monitor');
        const env = { max: 1000, buckets: 1000, timeWaitTimeout: 120, entryBytes: 320, memoryBytes: 2 ** 30 };
        let prom = '';
        try { m.registerConntrackMetrics(new m.ConntrackMonitor(), { registry: { registerMetric() {} } }); } catch (e) { prom = e.message; }
        console.log(JSON.stringify({
          otel: Object.keys(require.cache).filter((f) => f.includes('@opentelemetry')).length,
          interval: new m.ConntrackMonitor({ intervalMs: 500 }).options.intervalMs,
          advice: m.adviseTuning([], env).notes.length > 0,
          prom,
        }));`,
      ]),
    );
    expect(loaded).toEqual({
      otel: 0,
      interval: 500,
      advice: true,
      prom: 'registerConntrackMetrics needs prom-client: npm install prom-client',
    });
    expect(
      run([
        '--input-type=module',
        '-e',
        'import { registerOpenTelemetryMetrics, ConntrackMonitor } from "conntrack-monitor"; console.log(typeof registerOpenTelemetryMetrics, new ConntrackMonitor().options.intervalMs)',
      ]).trim(),
    ).toBe('function 1000');
    // Given a Meter (here from the SDK of another project: none can be resolved from this
    // one), the instruments are created through it alone.
    const sdk = join(app, 'node_modules', '@opentelemetry', 'sdk-metrics');
    expect(
      run([
        '-e',
        `const m = require('conntrack-monitor'); const { MeterProvider } = require(${JSON.stringify(sdk)});
        console.log(m.registerOpenTelemetryMetrics(new MeterProvider().getMeter('x'), new m.ConntrackMonitor()).length);`,
      ]).trim(),
    ).toBe('21');
    // The declarations compile with neither peer's types present (skipLibCheck false).
    expect(
      typecheck(
        noPeers,
        consumer +
          'import { registerOpenTelemetryMetrics, type MeterLike } from "conntrack-monitor";\n' +
          'declare const meter: MeterLike; registerOpenTelemetryMetrics(meter, m);\n',
      ),
    ).toEqual(MISUSE_ONLY);
  });

  it("compiles the README's library example with TypeScript 5, 6 and the latest: strict, nodenext, `types` unset", () => {
    // TypeScript 6 and later include no @types package unless `types` names it: the package's
    // declarations reference Node's types themselves, and @types/node comes as its peer.
    const project = join(work, 'ts-app');
    execFileSync('mkdir', ['-p', project]);
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'ts-app', version: '1.0.0', private: true, type: 'module' }),
    );
    npm(
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        tarball,
        'ts6@npm:typescript@6',
        'ts-latest@npm:typescript@latest',
      ],
      project,
    );
    expect(existsSync(join(project, 'node_modules', '@types', 'node', 'index.d.ts'))).toBe(true); // the peer
    const example = /## Library\n\n```ts\n([\s\S]*?)```/.exec(readFileSync(join(ROOT, 'README.md'), 'utf8'))![1]!;
    writeFileSync(join(project, 'example.ts'), example);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', noEmit: true }, files: ['example.ts'] }),
    );
    const compilers = [
      join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      join(project, 'node_modules', 'ts6', 'bin', 'tsc'),
      join(project, 'node_modules', 'ts-latest', 'bin', 'tsc'),
    ];
    const majors: number[] = [];
    for (const tsc of compilers) {
      const version = execFileSync(process.execPath, [tsc, '--version'], { encoding: 'utf8' }).trim();
      const r = spawnSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8' });
      console.info(`README example with ${version}: exit ${r.status}${r.stdout ? `\n${r.stdout}` : ''}`);
      expect(r.stdout).toBe('');
      expect(r.status).toBe(0);
      majors.push(Number(/Version (\d+)\./.exec(version)![1]));
    }
    expect(majors[0]).toBe(5);
    expect(majors[1]).toBe(6);
    expect(majors[2]).toBeGreaterThanOrEqual(6);
  }, 240_000);

  it("says what this machine's npm asks before the install script runs, as the README does", () => {
    const project = join(work, 'approve-app');
    execFileSync('mkdir', ['-p', project]);
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'approve-app', version: '1.0.0', private: true }),
    );
    const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], {
      cwd: project,
      encoding: 'utf8',
    });
    expect(install.status).toBe(0);
    const version = execFileSync('npm', ['--version'], { encoding: 'utf8' }).trim();
    const [major, minor] = version.split('.').map(Number) as [number, number];
    const asks = /`(npm (?:install-scripts approve|approve-scripts)) <pkg>`/.exec(install.stderr)?.[1] ?? null;
    console.info(
      `npm ${version} after installing the tarball: ${asks === null ? 'asks nothing' : `suggests ${asks} <pkg>`}`,
    );
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8').replace(/\s+/g, ' ');
    if (major < 11 || (major === 11 && minor < 16)) {
      expect(asks).toBeNull();
      expect(readme).toContain('npm 10, and npm 11 before 11.16: it runs; nothing to approve.');
      return;
    }
    expect(asks).not.toBeNull();
    expect(readme).toContain(`\`${asks} conntrack-monitor\``);
    // What the README says to run, then nothing is left to review.
    const approve = spawnSync('npm', [...asks!.split(' ').slice(1), 'conntrack-monitor'], {
      cwd: project,
      encoding: 'utf8',
    });
    expect(approve.status).toBe(0);
    expect(JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')).allowScripts).toEqual({
      [`file:${tarball}`]: true,
    });
    const again = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], {
      cwd: project,
      encoding: 'utf8',
    });
    expect(again.status).toBe(0);
    expect(again.stderr).not.toMatch(/not yet covered by allowScripts/);
  }, 120_000);

  it('without install scripts and with no prebuild that fits: the fallback says what to run, and that works', () => {
    const cli = join(bare, 'node_modules', '.bin', 'conntrack-monitor');
    const installed = join(bare, 'node_modules', 'conntrack-monitor');
    const watch = () =>
      spawnSync(cli, ['--json', '--duration', '0.3', '--interval', '100'], { cwd: bare, encoding: 'utf8' });
    expect(existsSync(join(installed, 'build'))).toBe(false);
    const before = watch();
    console.info(`no addon: ${before.stderr.trim()}`);
    expect(before.status).toBe(0);
    expect(before.stderr.trim().split('\n')).toHaveLength(1);
    expect(before.stderr).toMatch(
      /^conntrack-monitor: using \/proc instead of ctnetlink: the native addon could not be loaded: No native build was found for platform=linux arch=x64 .*\(no prebuilt addon fits and none was built \(npm ran no install script: .*\): run `npm rebuild conntrack-monitor` /,
    );
    expect(JSON.parse(before.stdout.trim().split('\n')[0]!).source).toBe('proc');
    // What the message says to run.
    const rebuild = spawnSync('npm', ['rebuild', 'conntrack-monitor', '--foreground-scripts'], {
      cwd: bare,
      encoding: 'utf8',
      env: npmEnv,
    });
    expect(rebuild.status).toBe(0);
    expect(`${rebuild.stdout}${rebuild.stderr}`).toMatch(
      /conntrack-monitor: no prebuilt addon for linux-x64 \(glibc\), Node v[\d.]+; building from source with node-gyp/,
    );
    expect(existsSync(join(installed, 'build', 'Release', 'conntrack_monitor.node'))).toBe(true);
    const after = watch();
    console.info(
      `after npm rebuild conntrack-monitor: exit ${after.status}, source ${JSON.parse(after.stdout.split('\n')[0]!).source}`,
    );
    expect(after).toMatchObject({ status: 0, stderr: '' });
    expect(JSON.parse(after.stdout.trim().split('\n').at(-1)!)).toMatchObject({ source: 'netlink', final: true });
  }, 240_000);

  it('installs globally from the tarball as deploy/kubernetes/Dockerfile does, and serves metrics', async () => {
    const dockerfile = readFileSync(join(ROOT, 'deploy', 'kubernetes', 'Dockerfile'), 'utf8');
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    // The image packs this repository and installs that tarball (the package is not on npm).
    expect(dockerfile).toMatch(/^RUN .*npm ci && npm pack --pack-destination \/tmp$/m);
    const install = /^RUN (npm install --global \/tmp\/(conntrack-monitor-[\d.]+\.tgz) prom-client@15)/m.exec(
      dockerfile,
    )!;
    expect(install[2]).toBe(`conntrack-monitor-${version}.tgz`);
    const prefix = join(work, 'global');
    const [, ...args] = install[1]!.replace(`/tmp/${install[2]}`, tarball).split(' ');
    npm([...args, '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline'], work);
    const bin = join(prefix, 'bin', 'conntrack-monitor');
    const serve = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--backend', 'proc', '--interval', '100']);
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = '';
        serve.stderr.on('data', (d) => {
          err += d;
          const m = /serving (http:\/\/\S+)/.exec(err);
          if (m) resolve(m[1]!);
        });
        serve.on('exit', () => reject(new Error(`serve exited: ${err}`)));
      });
      await new Promise((r) => setTimeout(r, 300));
      const text = await (await fetch(url)).text();
      console.info(
        `global install as in the Dockerfile: ${bin} serves ${text.split('\n').find((l) => l.startsWith('nf_conntrack_entries '))}`,
      );
      expect(text).toMatch(/^nf_conntrack_entries \d+$/m);
      expect(text).toMatch(/^nf_conntrack_entries_limit \d+$/m);
    } finally {
      serve.kill('SIGTERM');
    }
  });

  it('builds from source, saying so, when asked to or when no prebuild fits', () => {
    const manifest = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8'));
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ ...manifest, allowScripts: { [`file:${tarball}`]: true } }),
    );
    const run = spawnSync('npm', ['rebuild', 'conntrack-monitor', '--foreground-scripts'], {
      cwd: app,
      encoding: 'utf8',
      env: { ...npmEnv, npm_config_build_from_source: 'true' },
    });
    expect(run.status).toBe(0);
    expect(`${run.stdout}${run.stderr}`).toMatch(
      /conntrack-monitor: building the native addon from source \(npm_config_build_from_source\) for linux-x64 \(glibc\), Node v/,
    );
    const installed = join(app, 'node_modules', 'conntrack-monitor');
    expect(existsSync(join(installed, 'build', 'Release', 'conntrack_monitor.node'))).toBe(true);
    expect(node(['-e', 'const m = require("conntrack-monitor"); console.log(typeof m.ConntrackMonitor)']).trim()).toBe(
      'function',
    );
  }, 180_000);
});
