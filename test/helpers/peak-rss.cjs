// Preloaded into a child (node -r peak-rss.cjs ...): at exit, writes the process's peak
// resident set (VmHWM, kB) to the file named by CTMON_PEAK_RSS_FILE, for tests of memory bounds.
const { readFileSync, writeFileSync } = require('node:fs');

process.on('exit', () => {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  if (process.env.CTMON_PEAK_RSS_FILE && match) writeFileSync(process.env.CTMON_PEAK_RSS_FILE, match[1]);
});
