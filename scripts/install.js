#!/usr/bin/env node
// Install step: use the prebuilt addon shipped in prebuilds/ when one fits this platform
// (linux-x64 glibc, any Node >= 20: it is Node-API), else build from source with node-gyp,
// saying so, and why, in one line first. npm_config_build_from_source=true forces the build.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const forced = /^(true|1|conntrack-monitor)$/.test(process.env.npm_config_build_from_source || '');

if (!forced) {
  try {
    // Resolves prebuilds/<platform>-<arch>/ by tags (libc included), or an existing build.
    require('node-gyp-build').path(root);
    process.exit(0);
  } catch {
    // No prebuild fits: build below.
  }
}

const target = `${process.platform}-${process.arch}${process.platform === 'linux' ? ` (${libc()})` : ''}, Node ${process.version}`;
console.error(
  forced
    ? `conntrack-monitor: building the native addon from source (npm_config_build_from_source) for ${target}`
    : `conntrack-monitor: no prebuilt addon for ${target}; building from source with node-gyp (needs python3, make and a C++17 compiler)`,
);
const nodeGyp = process.env.npm_config_node_gyp;
const result = nodeGyp
  ? spawnSync(process.execPath, [nodeGyp, 'rebuild'], { cwd: root, stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error(
    'conntrack-monitor: the native addon could not be built. Install python3, make and g++, then run ' +
      "`npm rebuild conntrack-monitor`; until then backend 'auto' falls back to /proc and backend 'netlink' " +
      'fails with ERR_ADDON.',
  );
  process.exit(result.status ?? 1);
}

function libc() {
  const report = process.report?.getReport?.();
  return report?.header?.glibcVersionRuntime ? 'glibc' : 'musl';
}
