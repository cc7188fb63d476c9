/** The lock the benchmarks take too: `flock /tmp/ctmon-kernel.lock ...`. */
export declare const KERNEL_LOCK: string;
/** Global settings changed under the lock and not restored yet: `{ [path]: { original, set, pid } }`. */
export declare const KERNEL_STATE: string;
/** How long a caller waits for another holder before it fails (CTMON_KERNEL_LOCK_WAIT, default 120). */
export declare const LOCK_WAIT_SECONDS: number;
/** /proc/sys/net/netfilter/nf_conntrack_max: global, writable in the initial namespace only. */
export declare const CONNTRACK_MAX: string;

/**
 * Holds the kernel lock shared (after waiting up to LOCK_WAIT_SECONDS for it) until
 * releaseKernelLockShared(): others may hold it shared too, no one exclusive, so no one changes
 * a global setting meanwhile. Every root integration test holds it so while it runs
 * (test/helpers/integration-each.ts). Does nothing when this process holds it already.
 */
export declare function holdKernelLockShared(): Promise<void>;

/** Lets the shared hold go (nothing when there is none). */
export declare function releaseKernelLockShared(): Promise<void>;

/**
 * Runs `body` holding the kernel lock exclusive (after waiting up to LOCK_WAIT_SECONDS for it):
 * to change a global setting, or to flood. A shared hold of this process is let go first and
 * taken again after. Nested calls in one process share the hold. Whatever holds it must not
 * start a process that waits for the same lock.
 */
export declare function withKernelLock<T>(body: () => Promise<T>): Promise<T>;

/**
 * Puts back what a holder that died left: a setting still at the value it set gets the value
 * from before; one changed since by someone else is left alone. Runs under the lock, at every
 * acquisition; returns what it restored.
 */
export declare function restoreAbandoned(): string[];

/**
 * Runs `body` with the global sysctl at `path` set to `value`, under the kernel lock, and
 * restores the old value in finally (or, after a crash, at the next acquisition). Only tests
 * change one; the library never writes a sysctl.
 */
export declare function withGlobalSetting<T>(path: string, value: string, body: () => Promise<T>): Promise<T>;

/** Runs `body` with the global nf_conntrack_max lowered to `max` (see withGlobalSetting). */
export declare function withConntrackMax<T>(max: number, body: () => Promise<T>): Promise<T>;
