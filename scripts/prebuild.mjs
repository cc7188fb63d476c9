// The prebuilt addon `npm pack` puts in the tarball (prepack runs this):
// prebuilds/<platform>-<arch>/conntrack-monitor.<libc>.node, built with prebuildify (node-gyp,
// then strip: about 2 minutes on 2 cores), unless the one there was built from the same
// native sources. "The same" is a SHA-256 of what the build reads (every file under native/,
// binding.gyp, node-addon-api's version and prebuildify's flags) recorded with the prebuild's
// own SHA-256 in .prebuild-stamp.json after each build; a prebuild replaced or changed since is
// built again. The compiler is not in the hash: after upgrading it, pass --force.
//
//   node scripts/prebuild.mjs            build unless current
//   node scripts/prebuild.mjs --check    say whether it is current (exit 0) or not (exit 1)
//   node scripts/prebuild.mjs --force    build whatever the stamp says
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FLAGS = ['--napi', '--strip', '--tag-libc'];
const STAMP = join(ROOT, '.prebuild-stamp.json');
const require = createRequire(import.meta.url);

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

/** Every file under `dir`, sorted, as paths relative to the root. */
function files(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
}

/** What the build reads, hashed. */
function sourcesHash() {
  const hash = createHash('sha256');
  hash.update(`prebuildify ${FLAGS.join(' ')}\0`);
  hash.update(`node-addon-api ${require(join(ROOT, 'node_modules', 'node-addon-api', 'package.json')).version}\0`);
  for (const file of [join(ROOT, 'binding.gyp'), ...files(join(ROOT, 'native'))]) {
    hash
      .update(`${relative(ROOT, file)}\0`)
      .update(readFileSync(file))
      .update('\0');
  }
  return hash.digest('hex');
}

/** Where prebuildify writes the addon for this machine (its own choice of libc tag). */
function prebuildPath() {
  const libc = process.env.PREBUILD_LIBC || (existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
  return join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`, `conntrack-monitor.${libc}.node`);
}

/** Null when the prebuild is current, else why not. */
function staleness(sources, prebuild) {
  if (!existsSync(prebuild)) return `there is no ${relative(ROOT, prebuild)}`;
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(STAMP, 'utf8'));
  } catch {
    return `${relative(ROOT, STAMP)} does not say what it was built from`;
  }
  if (stamp.sources !== sources) return 'the native sources changed since it was built';
  if (stamp.prebuild !== sha256(readFileSync(prebuild))) return 'it changed since it was built';
  return null;
}

const sources = sourcesHash();
const prebuild = prebuildPath();
const name = relative(ROOT, prebuild);
const why = process.argv.includes('--force') ? 'asked to (--force)' : staleness(sources, prebuild);
if (process.argv.includes('--check')) {
  console.log(why === null ? `${name} is current` : `${name} would be built: ${why}`);
  process.exit(why === null ? 0 : 1);
}
if (why === null) {
  console.error(`conntrack-monitor: ${name} was built from these native sources: not built again`);
} else {
  console.error(`conntrack-monitor: building ${name} with prebuildify (about 2 minutes): ${why}`);
  const bin = join(ROOT, 'node_modules', 'prebuildify', 'bin.js');
  execFileSync(process.execPath, [bin, ...FLAGS], { cwd: ROOT, stdio: 'inherit' });
  writeFileSync(
    STAMP,
    `${JSON.stringify({ sources, prebuild: sha256(readFileSync(prebuild)), builtAt: statSync(prebuild).mtime }, null, 2)}\n`,
  );
}
