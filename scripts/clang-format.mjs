// clang-format over the native sources: --check fails on any difference (CI), --fix rewrites.
// Uses Debian's clang-format (apt-get install clang-format); the style is .clang-format.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const mode = process.argv[2];
if (mode !== '--check' && mode !== '--fix') {
  console.error('usage: node scripts/clang-format.mjs --check|--fix');
  process.exit(2);
}
const files = ['native', 'fuzz', 'benchmarks/native']
  .flatMap((dir) => readdirSync(join(root, dir), { recursive: true, withFileTypes: true }))
  // Generated sources (*.gen.cc, npm run build:bpf) are left as the generator writes them.
  .filter(
    (e) => e.isFile() && /\.(cc|h|c)$/.test(e.name) && !e.name.endsWith('.gen.cc') && !e.parentPath.includes('/build'),
  )
  .map((e) => join(e.parentPath, e.name));
const args = mode === '--check' ? ['--dry-run', '--Werror'] : ['-i'];
try {
  execFileSync('clang-format', [...args, ...files], { stdio: 'inherit' });
} catch (err) {
  if (err.code === 'ENOENT') console.error('clang-format is not installed: apt-get install clang-format');
  process.exit(1);
}
