/**
 * Root integration tests run only where they can: as root, with ip, nft and conntrack.
 * Under CI=true a test that cannot run is a failure, not a skip.
 */
import { execFileSync } from 'node:child_process';

function missingPrerequisite(): string | null {
  if (process.getuid?.() !== 0) return 'not running as root';
  for (const [tool, flag] of [
    ['ip', '-V'],
    ['nft', '--version'],
    ['conntrack', '--version'],
  ] as const) {
    try {
      execFileSync(tool, [flag], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed (apt-get install iproute2 nftables conntrack)`;
    }
  }
  return null;
}

const reason = missingPrerequisite();
if (reason && process.env.CI === 'true') {
  throw new Error(`root integration tests must run under CI=true, but: ${reason}`);
}
if (reason) console.warn(`skipping root integration tests: ${reason}`);

/** True when root integration tests can run here. */
export const canRunIntegration = reason === null;
