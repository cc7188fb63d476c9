/**
 * What the kernel's verifier says of the project's eBPF programs: each is accepted well within
 * the kernel's limit of 1,000,000 processed instructions (a budget a change would have to exceed
 * by far before the kernel refused it), and a refusal names the source line — of
 * ct_events.bpf.c from the BTF line info loaded with the event programs, of drop_program.cc
 * from the line each assembled instruction was emitted by.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { binding } from './helpers/binding';
import { canRunIntegration } from './helpers/gate';

const KERNEL_LIMIT = 1_000_000;
const BUDGET = { 'event program, count-only': 10_000, 'event program, monitor': 100_000, 'drop program': 10_000 };

function verifierOf(program: keyof typeof BUDGET) {
  if (program === 'drop program') return binding._dropProgram().verifier;
  const variant = program.endsWith('monitor') ? 'monitor' : 'count-only';
  return binding._eventProgram([], { variant, verifierStats: true }).verifier!;
}

/** The message of what `load` throws while `faults` are injected. */
function refusal(faults: Parameters<typeof binding._injectFaults>[0], load: () => unknown): string {
  const previous = binding._injectFaults(faults);
  try {
    load();
  } catch (err) {
    return (err as Error).message;
  } finally {
    binding._injectFaults(previous);
  }
  throw new Error('the program was loaded');
}

/** The text of line `line` (1-based) of a file of the repository. */
function sourceLine(file: string, line: number): string {
  const lines = readFileSync(join(__dirname, '..', file), 'utf8').split('\n');
  return lines[line - 1]!.trim();
}

describe.skipIf(!canRunIntegration)('the eBPF programs, as the verifier sees them', () => {
  it.each(Object.keys(BUDGET) as (keyof typeof BUDGET)[])(
    '%s: verified in well under a tenth of the kernel limit of processed instructions',
    (program) => {
      const verifier = verifierOf(program);
      console.info(`${program}: ${verifier.summary.split('\n').pop()}`);
      expect(verifier.summary).toMatch(/processed \d+ insns \(limit 1000000\)/);
      expect(verifier.processedInsns).toBeGreaterThan(0);
      expect(verifier.processedInsns).toBeLessThanOrEqual(BUDGET[program]);
      expect(BUDGET[program]).toBeLessThanOrEqual(KERNEL_LIMIT / 10);
    },
  );

  it('a refused event program names the line of ct_events.bpf.c (and its text), the instruction and why', () => {
    // As an XDP program, a socket filter's access to the skb is refused where it first reads it.
    const message = refusal({ eventProgramType: 6 /* BPF_PROG_TYPE_XDP */ }, () =>
      binding._eventProgram([], { variant: 'monitor' }),
    );
    const m =
      /the verifier rejected ct_monitor at (native\/ebpf\/ct_events\.bpf\.c):(\d+) \((.+)\), instruction (\d+): (.+)/.exec(
        message,
      );
    expect(m, message).not.toBeNull();
    expect(sourceLine(m![1]!, Number(m![2]))).toBe(m![3]!.trim());
    expect(m![3]).toMatch(/skb|m->/);
  });

  it('a refused drop program names the drop_program.cc line that emitted the instruction, and why', () => {
    // sk_buff._nfct one byte off: the verifier refuses the load that reads it.
    const message = refusal({ dropProgramOffsetDelta: 1 }, () => binding._dropProgram());
    const m =
      /the verifier rejected ctmon_ct_drops at (native\/ebpf\/drop_program\.cc):(\d+), instruction (\d+): (.+)/.exec(
        message,
      );
    expect(m, message).not.toBeNull();
    expect(sourceLine(m![1]!, Number(m![2]))).toMatch(/skb_nfct/);
    expect(m![4]).toMatch(/_nfct/);
  });
});
