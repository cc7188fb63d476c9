/** `ctmon-<label>-<pid>-<8 random hex digits>`: unique per run, even between PID namespaces. */
export declare function uniqueName(label: string): string;
