/**
 * The numbers of native/ebpf/ct_events.h — the header the event program and user space share —
 * read from the header itself, so that the tests never hold a copy that could drift.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const header = readFileSync(join(__dirname, '../../native/ebpf/ct_events.h'), 'utf8');

/** The constants of `enum <name> { ... }`, by name, as C numbers them. */
function enumValues(name: string): Record<string, number> {
  const body = new RegExp(`enum ${name} \\{([^}]*)\\}`).exec(header)?.[1];
  if (!body) throw new Error(`ct_events.h has no enum ${name}`);
  const out: Record<string, number> = {};
  let next = 0;
  for (const item of body.replace(/\/\*[\s\S]*?\*\//g, '').split(',')) {
    const m = /^\s*([A-Z0-9_]+)\s*(?:=\s*(\d+))?\s*$/.exec(item);
    if (!m) continue;
    next = m[2] === undefined ? next : Number(m[2]);
    out[m[1]!] = next++;
  }
  return out;
}

/** `#define NAME value` of the header. */
function define(name: string): number {
  const m = new RegExp(`#define ${name} \\(?(\\d+)`).exec(header);
  if (!m) throw new Error(`ct_events.h defines no ${name}`);
  return Number(m[1]);
}

const diagnostics = enumValues('ct_diagnostic');
/** CT_DIAG_*, by the name after the prefix in lower camel case: DIAG.unknownLayout. */
export const DIAG: Record<string, number> = Object.fromEntries(
  Object.entries(diagnostics)
    .filter(([k]) => k !== 'CT_DIAG_COUNT')
    .map(([k, v]) => [
      k
        .slice('CT_DIAG_'.length)
        .toLowerCase()
        .replace(/_(.)/g, (_, c: string) => c.toUpperCase()),
      v,
    ]),
);
/** enum ct_kind and enum ct_class in order, as the counters map lays them out. */
export const KINDS = Object.keys(enumValues('ct_kind'))
  .filter((k) => k !== 'CT_KIND_COUNT')
  .map((k) => k.slice('CT_KIND_'.length).toLowerCase());
export const CLASSES = Object.keys(enumValues('ct_class'))
  .filter((k) => k !== 'CT_CLASS_COUNT')
  .map((k) => k.slice('CT_CLASS_'.length).toLowerCase());
export const WHEEL_SLOTS = define('CT_WHEEL_SLOTS');
export const WHEEL_MAX_TIMEOUT_S = define('CT_WHEEL_MAX_TIMEOUT_S');
export const SLOTS_PER_BUCKET = define('CT_SLOTS_PER_BUCKET');
