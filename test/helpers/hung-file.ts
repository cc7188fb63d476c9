/**
 * A file that hangs every read, on a real FUSE mount (./fuse-hang.py): the "hung file" a
 * reader of host paths must not wait on for ever. Root only. release() ends the server, which
 * makes every waiting read fail (ENOTCONN), and unmounts.
 */
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';

export interface HungFile {
  release(): Promise<void>;
}

/** Mounts the hanging file over `path` (an existing regular file). */
export async function hangReadsOf(path: string): Promise<HungFile> {
  const server = spawn('python3', [join(__dirname, 'fuse-hang.py'), path], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    server.stdout.on('data', (d) => String(d).includes('mounted') && resolve());
    server.on('exit', (code) => reject(new Error(`fuse-hang.py exited (${code}) before mounting`)));
  });
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      const exited = new Promise((r) => server.on('exit', r));
      server.kill('SIGKILL');
      await exited;
      execFileSync('umount', ['-l', path]);
    },
  };
}
