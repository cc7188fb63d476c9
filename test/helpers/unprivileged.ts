/**
 * What a test needs to run the package as user nobody, wherever the checkout is. A checkout
 * only root can read (a clone under /root, anything in a `mktemp -d`) cannot be loaded by nobody,
 * so these tests run a world-readable copy of what the package needs at run time: package.json,
 * dist/, the built addon and the runtime dependencies (node-gyp-build, and prom-client for serve).
 * Made once per run of the integration tests by test/helpers/integration-setup.ts, which
 * removes it at the end.
 */
import { join } from 'node:path';
import { inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    unprivilegedRoot: string;
  }
}

export interface UnprivilegedCopy {
  root: string;
  /** dist/cli.js of the copy. */
  cli: string;
  /** dist/index.js of the copy, for require(). */
  index: string;
}

export function unprivilegedCopy(): UnprivilegedCopy {
  const root = inject('unprivilegedRoot');
  return { root, cli: join(root, 'dist', 'cli.js'), index: join(root, 'dist', 'index.js') };
}
