// The native sources, found rather than listed, so that the addon (binding.gyp), the fuzzer
// (fuzz/run.mjs) and the benchmark tools (benchmarks/native/binding.gyp) build the same files:
//   core     every .cc under native/ but binding/: no Node-API
//   binding  native/binding/*.cc: the addon's Node-API layer
// Paths are relative to the repository; `node -p "require('./native/sources.js').gyp('core')"`
// prints them space-separated for gyp's <!@(...), prefixed for a binding.gyp elsewhere.
'use strict';
const { readdirSync } = require('node:fs');
const { join, relative } = require('node:path');

const root = join(__dirname, '..');

function find(dir) {
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.cc'))
    .map((e) => relative(root, join(e.parentPath ?? e.path, e.name)))
    .sort();
}

const binding = find('native/binding');
const core = find('native').filter((f) => !f.startsWith('native/binding/'));

module.exports = { core, binding, gyp: (set, prefix = '') => module.exports[set].map((f) => prefix + f).join(' ') };
