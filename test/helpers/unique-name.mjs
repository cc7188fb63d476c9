// Names of test namespaces (and other host-wide things tests make: tmux sessions, files under
// /tmp and /root) that no other run can hold: the label, this process's pid and a random
// suffix. Pids alone repeat: two runs in separate PID namespaces (containers, CI jobs) can both
// be pid 1. Plain JavaScript so that child processes can use it too.
import { randomBytes } from 'node:crypto';

export function uniqueName(label) {
  return `ctmon-${label}-${process.pid}-${randomBytes(4).toString('hex')}`;
}
