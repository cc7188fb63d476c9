// npm run build:bpf — compiles the eBPF programs (native/ebpf/*.bpf.c) with clang and writes
// what the addon loads, so that installing the package needs no clang, libbpf or libelf:
//
//   native/ebpf/<name>.gen.cc   per program its instructions and map relocations, the maps'
//                               definitions (from their BTF), and the BTF with its function and
//                               line info (the verifier's log then names source lines)
//   native/ebpf/<name>.bpf.lst  a listing: every instruction under the source line it came from
//   native/ebpf/drop_program.lst the same for the drop program, which is assembled in C++
//                               (drop_program.cc) rather than compiled: a host tool prints it
//
// Both are committed; .ci/run runs this and fails if anything changed. The output is
// reproducible only with the same compiler, so the script insists on it (CLANG below: Debian
// bookworm's clang-14, which .ci/run installs with libbpf-dev for <bpf/bpf_helpers.h>).
//
// The object is read here (ELF sections, symbols, relocations, .BTF and .BTF.ext) rather than
// by libbpf at run time; what the loader does with the result is in native/ebpf/bpf_image.h.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const CLANG_VERSION = '14.0.6';
const CLANG = process.env.CTMON_BPF_CLANG ?? 'clang-14';
const OBJDUMP = process.env.CTMON_BPF_OBJDUMP ?? 'llvm-objdump-14';
const FLAGS = ['-target', 'bpf', '-O2', '-mcpu=v3', '-g', '-Wall', '-Werror', '-fdebug-compilation-dir=.'];

const root = join(import.meta.dirname, '..');
const ebpfDir = join(root, 'native', 'ebpf');

function run(cmd, args) {
  try {
    return execFileSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if (err.code === 'ENOENT') {
      throw new Error(`${cmd} is not installed (apt-get install clang-14 llvm-14 libbpf-dev)`);
    }
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${err.stderr || err.message}`);
  }
}

function checkCompiler() {
  const version = run(CLANG, ['--version']).split('\n')[0];
  if (!version.includes(`clang version ${CLANG_VERSION}`)) {
    throw new Error(
      `npm run build:bpf needs clang ${CLANG_VERSION} (Debian bookworm's clang-14): the committed output ` +
        `is what that version builds, and another would differ. Found: ${version}`,
    );
  }
  return version;
}

// ---- ELF (64-bit little endian, as clang -target bpf writes it) ----

function parseElf(buf) {
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) throw new Error('not a 64-bit LE ELF');
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  const shstrndx = buf.readUInt16LE(0x3e);
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    sections.push({
      index: i,
      nameOff: buf.readUInt32LE(o),
      type: buf.readUInt32LE(o + 4),
      offset: Number(buf.readBigUInt64LE(o + 24)),
      size: Number(buf.readBigUInt64LE(o + 32)),
      link: buf.readUInt32LE(o + 40),
      info: buf.readUInt32LE(o + 44),
    });
  }
  const cstr = (data, off) => data.toString('latin1', off, data.indexOf(0, off));
  const shstr = sections[shstrndx];
  for (const s of sections) {
    s.name = cstr(buf, shstr.offset + s.nameOff);
    s.data = buf.subarray(s.offset, s.offset + s.size);
  }
  const symtab = sections.find((s) => s.type === 2); // SHT_SYMTAB
  const strtab = sections[symtab.link];
  const symbols = [];
  for (let o = 0; o < symtab.size; o += 24) {
    const d = symtab.data;
    symbols.push({
      name: cstr(strtab.data, d.readUInt32LE(o)),
      type: d[o + 4] & 0xf,
      section: d.readUInt16LE(o + 6),
      value: Number(d.readBigUInt64LE(o + 8)),
      size: Number(d.readBigUInt64LE(o + 16)),
    });
  }
  const relocations = (section) => {
    const rel = sections.find((s) => s.type === 9 && s.info === section.index); // SHT_REL
    const out = [];
    for (let o = 0; rel && o < rel.size; o += 16) {
      const info = rel.data.readBigUInt64LE(o + 8);
      out.push({ offset: Number(rel.data.readBigUInt64LE(o)), symbol: symbols[Number(info >> 32n)] });
    }
    return out;
  };
  return { sections, symbols, relocations, section: (name) => sections.find((s) => s.name === name) };
}

// ---- BTF ----

const BTF_KIND = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
};

// The size of what follows a type's 12-byte header.
function trailing(kind, vlen) {
  switch (kind) {
    case BTF_KIND.INT:
    case BTF_KIND.VAR:
    case BTF_KIND.DECL_TAG:
      return 4;
    case BTF_KIND.ARRAY:
      return 12;
    case BTF_KIND.STRUCT:
    case BTF_KIND.UNION:
    case BTF_KIND.DATASEC:
    case BTF_KIND.ENUM64:
      return 12 * vlen;
    case BTF_KIND.ENUM:
    case BTF_KIND.FUNC_PROTO:
      return 8 * vlen;
    default:
      return 0;
  }
}

function parseBtf(data) {
  if (data.readUInt16LE(0) !== 0xeb9f) throw new Error('bad BTF magic');
  const hdrLen = data.readUInt32LE(4);
  const typeOff = hdrLen + data.readUInt32LE(8);
  const typeLen = data.readUInt32LE(12);
  const strOff = hdrLen + data.readUInt32LE(16);
  const strLen = data.readUInt32LE(20);
  const strings = data.subarray(strOff, strOff + strLen);
  const str = (off) => strings.toString('latin1', off, strings.indexOf(0, off));
  const types = [null]; // type id 0 is void
  for (let o = typeOff; o < typeOff + typeLen;) {
    const info = data.readUInt32LE(o + 4);
    const kind = (info >> 24) & 0x1f;
    const vlen = info & 0xffff;
    types.push({ offset: o, kind, vlen, name: str(data.readUInt32LE(o)), sizeOrType: data.readUInt32LE(o + 8) });
    o += 12 + trailing(kind, vlen);
  }
  return { data, types, str };
}

function btfSize(btf, id) {
  for (;;) {
    const t = btf.types[id];
    switch (t.kind) {
      case BTF_KIND.INT:
      case BTF_KIND.STRUCT:
      case BTF_KIND.UNION:
      case BTF_KIND.ENUM:
      case BTF_KIND.ENUM64:
      case BTF_KIND.DATASEC:
      case BTF_KIND.FLOAT:
        return t.sizeOrType;
      case BTF_KIND.PTR:
        return 8;
      case BTF_KIND.ARRAY:
        return btfSize(btf, btf.data.readUInt32LE(t.offset + 12)) * btf.data.readUInt32LE(t.offset + 20);
      case BTF_KIND.TYPEDEF:
      case BTF_KIND.VOLATILE:
      case BTF_KIND.CONST:
      case BTF_KIND.RESTRICT:
      case BTF_KIND.TYPE_TAG:
        id = t.sizeOrType;
        break;
      default:
        throw new Error(`no size for BTF kind ${t.kind}`);
    }
  }
}

// A BTF-defined map ({ __uint(type, ...); __type(value, ...); ... } name SEC(".maps")): its
// attributes, as libbpf reads them: __uint(x, n) is `int (*x)[n]`, __type(x, T) is `T *x`.
function mapDefinition(btf, varTypeId) {
  let id = btf.types[varTypeId].sizeOrType;
  while (btf.types[id].kind !== BTF_KIND.STRUCT) id = btf.types[id].sizeOrType;
  const struct = btf.types[id];
  const def = {};
  for (let i = 0; i < struct.vlen; i++) {
    const m = struct.offset + 12 + 12 * i;
    const name = btf.str(btf.data.readUInt32LE(m));
    const ptr = btf.types[btf.data.readUInt32LE(m + 4)];
    if (ptr.kind !== BTF_KIND.PTR) throw new Error(`map field ${name} is not a pointer`);
    const target = btf.types[ptr.sizeOrType];
    if (name === 'key' || name === 'value') def[name] = btfSize(btf, ptr.sizeOrType);
    else if (target.kind === BTF_KIND.ARRAY) def[name] = btf.data.readUInt32LE(target.offset + 20);
    else throw new Error(`map field ${name} is not __uint or __type`);
  }
  for (const k of ['type', 'key', 'value', 'max_entries']) {
    if (def[k] === undefined) throw new Error(`a map has no ${k}`);
  }
  return def;
}

// DATASEC sizes and variable offsets are left 0 by the compiler and filled by the loader from
// the ELF (as libbpf does); the kernel refuses a DATASEC of size 0.
function fixDatasecs(btf, elf) {
  const out = Buffer.from(btf.data);
  for (const t of btf.types) {
    if (!t || t.kind !== BTF_KIND.DATASEC) continue;
    const section = elf.section(t.name);
    if (!section) throw new Error(`no ELF section ${t.name}`);
    out.writeUInt32LE(section.size, t.offset + 8);
    for (let i = 0; i < t.vlen; i++) {
      const v = t.offset + 12 + 12 * i;
      const varName = btf.types[btf.data.readUInt32LE(v)].name;
      const sym = elf.symbols.find((s) => s.name === varName && s.section === section.index);
      if (!sym) throw new Error(`no symbol ${varName} in ${t.name}`);
      out.writeUInt32LE(sym.value, v + 4);
    }
  }
  return out;
}

// .BTF.ext: per ELF section, func_info and line_info records whose insn_off is in bytes.
function parseBtfExt(data, btf) {
  const hdrLen = data.readUInt32LE(4);
  const read = (off, len, fields) => {
    const out = new Map();
    const start = hdrLen + off;
    const recSize = data.readUInt32LE(start);
    for (let o = start + 4; o < start + len;) {
      const section = btf.str(data.readUInt32LE(o));
      const n = data.readUInt32LE(o + 4);
      o += 8;
      const records = [];
      for (let i = 0; i < n; i++, o += recSize) records.push(fields.map((_, k) => data.readUInt32LE(o + 4 * k)));
      out.set(section, records);
    }
    return out;
  };
  return {
    funcInfo: read(data.readUInt32LE(8), data.readUInt32LE(12), ['insn_off', 'type_id']),
    lineInfo: read(data.readUInt32LE(16), data.readUInt32LE(20), ['insn_off', 'file_name_off', 'line_off', 'line_col']),
  };
}

// ---- the generated source ----

const MAP_TYPES = { 1: 'BPF_MAP_TYPE_HASH', 2: 'BPF_MAP_TYPE_ARRAY', 6: 'BPF_MAP_TYPE_PERCPU_ARRAY' };

function cArray(type, name, rows, perLine = 1) {
  const lines = [];
  for (let i = 0; i < rows.length; i += perLine) lines.push('    ' + rows.slice(i, i + perLine).join(' '));
  return `const ${type} ${name}[] = {\n${lines.join('\n')}\n};\n`;
}

function generate(name, source, object, compiler) {
  const elf = parseElf(object);
  const btf = parseBtf(elf.section('.BTF').data);
  const ext = parseBtfExt(elf.section('.BTF.ext').data, btf);
  const mapsSection = elf.section('.maps');
  const maps = elf.symbols
    .filter((s) => s.section === mapsSection.index && s.name)
    .sort((a, b) => a.value - b.value)
    .map((s) => {
      const varId = btf.types.findIndex((t) => t && t.kind === BTF_KIND.VAR && t.name === s.name);
      return { symbol: s.name, ...mapDefinition(btf, varId) };
    });
  const programs = elf.symbols
    .filter((s) => s.type === 2 && elf.sections[s.section].name !== '.text' && s.size > 0) // STT_FUNC
    .sort((a, b) => a.value - b.value)
    .map((s) => {
      const section = elf.sections[s.section];
      const start = s.value;
      const end = start + s.size;
      const insns = [];
      for (let o = start; o < end; o += 8) {
        const d = section.data;
        insns.push({ code: d[o], regs: d[o + 1], off: d.readInt16LE(o + 2), imm: d.readInt32LE(o + 4) });
      }
      const relocs = elf
        .relocations(section)
        .filter((r) => r.offset >= start && r.offset < end)
        .map((r) => {
          const map = maps.findIndex((m) => m.symbol === r.symbol.name);
          if (map < 0) throw new Error(`${s.name}: a relocation to ${r.symbol.name}, which is not a map`);
          const insn = (r.offset - start) / 8;
          if (insns[insn].code !== 0x18) throw new Error(`${s.name}: relocation at ${insn} is not ld_imm64`);
          return { insn, map };
        });
      const inProgram = (r) => r[0] >= start && r[0] < end;
      const funcInfo = (ext.funcInfo.get(section.name) ?? []).filter(inProgram).map((r) => [(r[0] - start) / 8, r[1]]);
      const lineInfo = (ext.lineInfo.get(section.name) ?? [])
        .filter(inProgram)
        .map((r) => [(r[0] - start) / 8, r[1], r[2], r[3]]);
      if (insns.some((i) => i.code === 0x85 && i.regs >> 4 === 1)) {
        throw new Error(`${s.name} calls a function that was not inlined: make it static __always_inline`);
      }
      return { name: s.name, section: section.name, insns, relocs, funcInfo, lineInfo };
    });
  const btfBytes = fixDatasecs(btf, elf);
  const hex = (n) => `0x${n.toString(16).padStart(2, '0')}`;

  let out = `// ${name}.gen.cc — GENERATED by scripts/build-bpf.mjs from ${relative(root, source)}: do not edit.
// Compiler: ${compiler}. Flags: ${FLAGS.join(' ')}.
// Regenerate with \`npm run build:bpf\` after changing the program; .ci/run fails when this file
// is not what the source builds to. How the loader uses it: native/ebpf/bpf_image.h.
// clang-format off
#include "ebpf/bpf_image.h"

namespace ctmon {
namespace {

`;
  out += cArray(
    'uint8_t',
    'kBtf',
    [...btfBytes].map((b) => `${hex(b)},`),
    16,
  );
  out += '\n';
  out += cArray(
    'BpfMapDefinition',
    'kMaps',
    maps.map(
      (m) =>
        `{"${m.symbol}", ${MAP_TYPES[m.type] ?? m.type}, ${m.key}, ${m.value}, ${m.max_entries}, ${m.map_flags ?? 0}},`,
    ),
  );
  for (const p of programs) {
    out += `\n// ${p.name}: ${p.insns.length} instructions.\n`;
    out += cArray(
      'bpf_insn',
      `k_${p.name}_insns`,
      p.insns.map((i) => `{${hex(i.code)}, ${i.regs & 0xf}, ${i.regs >> 4}, ${i.off}, ${i.imm}},`),
      2,
    );
    out += cArray(
      'BpfMapRelocation',
      `k_${p.name}_relocations`,
      p.relocs.map((r) => `{${r.insn}, ${r.map}},`),
      4,
    );
    out += cArray(
      'bpf_func_info',
      `k_${p.name}_func_info`,
      p.funcInfo.map((r) => `{${r.join(', ')}},`),
      4,
    );
    out += cArray(
      'bpf_line_info',
      `k_${p.name}_line_info`,
      p.lineInfo.map((r) => `{${r.join(', ')}},`),
      3,
    );
  }
  out += '\n';
  out += cArray(
    'BpfProgramImage',
    'kPrograms',
    programs.map(
      (p) => `{"${p.name}", k_${p.name}_insns, sizeof k_${p.name}_insns / sizeof(bpf_insn),
     k_${p.name}_relocations, sizeof k_${p.name}_relocations / sizeof(BpfMapRelocation),
     k_${p.name}_func_info, sizeof k_${p.name}_func_info / sizeof(bpf_func_info),
     k_${p.name}_line_info, sizeof k_${p.name}_line_info / sizeof(bpf_line_info)},`,
    ),
  );
  const symbol = `k${name
    .split(/[_-]/)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('')}Image`;
  out += `
}  // namespace

extern const BpfObjectImage ${symbol} = {
    "${relative(root, source)}", kBtf, sizeof kBtf, kMaps, sizeof kMaps / sizeof kMaps[0],
    kPrograms, sizeof kPrograms / sizeof kPrograms[0]};

}  // namespace ctmon
// clang-format on
`;
  return { text: out, programs, maps };
}

// The listing: llvm-objdump's disassembly with the source lines interleaved, one program after
// the other, paths relative to the repository.
function listing(objectPath, programs) {
  const text = run(OBJDUMP, ['-d', '-S', '-l', '--no-show-raw-insn', objectPath]);
  const body = text.slice(text.indexOf('\nDisassembly')).trimStart();
  const counts = programs.map((p) => `${p.name}: ${p.insns.length} instructions`).join(', ');
  return (
    `Listing of the eBPF programs (${counts}), written by npm run build:bpf.\n` +
    `An instruction's number is its index in the program: the verifier's log numbers them the same.\n\n${body}`
  );
}

// ---- the assembled drop program's listing ----

const HELPERS = { 1: 'map_lookup_elem', 2: 'map_update_elem', 5: 'ktime_get_ns', 113: 'probe_read_kernel' };
const SIZES = { 0x00: 'u32', 0x08: 'u16', 0x10: 'u8', 0x18: 'u64' };
const ALU = {
  0x00: '+=',
  0x10: '-=',
  0x20: '*=',
  0x30: '/=',
  0x40: '|=',
  0x50: '&=',
  0x60: '<<=',
  0x70: '>>=',
  0x90: '%=',
  0xa0: '^=',
  0xb0: '=',
  0xc0: 's>>=',
};
const JMP = {
  0x10: '==',
  0x20: '>',
  0x30: '>=',
  0x40: '&',
  0x50: '!=',
  0x60: 's>',
  0x70: 's>=',
  0xa0: '<',
  0xb0: '<=',
  0xc0: 's<',
  0xd0: 's<=',
};

// One instruction as llvm-objdump writes BPF (the subset the assembler emits).
function disassemble(insns, i) {
  const [code, dst, src, off, imm] = insns[i];
  const cls = code & 0x07;
  const r = (n) => `r${n}`;
  const signed = (n) => (n >= 0 ? `+ ${n}` : `- ${-n}`);
  if (code === 0x18) {
    const value = (BigInt(insns[i + 1][4] >>> 0) << 32n) | BigInt(imm >>> 0);
    return src === 1 ? `${r(dst)} = map[${imm}] ll` : `${r(dst)} = 0x${value.toString(16)} ll`;
  }
  if (cls === 0x07 || cls === 0x04) {
    const w = cls === 0x04 ? 'w' : 'r';
    const op = code & 0xf0;
    if (op === 0xd0) return `${r(dst)} = be${imm} ${r(dst)}`;
    const rhs = code & 0x08 ? `${w}${src}` : `${imm}`;
    return `${w}${dst} ${ALU[op] ?? `alu(${op})`} ${rhs}`;
  }
  if (cls === 0x01) return `${r(dst)} = *(${SIZES[code & 0x18]} *)(${r(src)} ${signed(off)})`;
  if (cls === 0x03 && (code & 0xe0) === 0xc0) {
    const ops = { 0x00: '+=', 0xe1: 'xchg', 0xf1: 'cmpxchg' };
    return `lock *(${SIZES[code & 0x18]} *)(${r(dst)} ${signed(off)}) ${ops[imm] ?? `atomic(${imm})`} ${r(src)}`;
  }
  if (cls === 0x03) return `*(${SIZES[code & 0x18]} *)(${r(dst)} ${signed(off)}) = ${r(src)}`;
  if (cls === 0x02) return `*(${SIZES[code & 0x18]} *)(${r(dst)} ${signed(off)}) = ${imm}`;
  if (cls === 0x05 || cls === 0x06) {
    const op = code & 0xf0;
    if (op === 0x80) return `call ${HELPERS[imm] ?? imm}`;
    if (op === 0x90) return 'exit';
    const target = `goto ${off >= 0 ? '+' : ''}${off} <${i + 1 + off}>`;
    if (op === 0x00) return target;
    const w = cls === 0x06 ? 'w' : 'r';
    return `if ${w}${dst} ${JMP[op] ?? `jmp(${op})`} ${code & 0x08 ? `${w}${src}` : imm} ${target}`;
  }
  return `.insn 0x${code.toString(16)}`;
}

function dropProgramListing(tmp) {
  const tool = join(tmp, 'drop_program_listing');
  run('g++', [
    '-std=c++17',
    '-Inative',
    'scripts/bpf/drop_program_listing.cc',
    'native/ebpf/drop_program.cc',
    '-o',
    tool,
  ]);
  const insns = JSON.parse(run(tool, []));
  const source = readFileSync(join(ebpfDir, 'drop_program.cc'), 'utf8').split('\n');
  const out = [
    `Listing of the drop program (${insns.length} instructions), written by npm run build:bpf from`,
    'native/ebpf/drop_program.cc with the layout of scripts/bpf/drop_program_listing.cc.',
    "An instruction's number is its index in the program, as the verifier's log numbers them; a",
    'refusal names the drop_program.cc line that emitted it. Map operands are placeholders.',
    '',
  ];
  let line = -1;
  for (let i = 0; i < insns.length; i++) {
    if (insns[i][5] !== line) {
      line = insns[i][5];
      out.push(`; ${source[line - 1].trim()} @ drop_program.cc:${line}`);
    }
    out.push(`${String(i).padStart(5)}:\t${disassemble(insns, i)}`);
    if (insns[i][0] === 0x18) i++; // the second half of a 64-bit immediate
  }
  writeFileSync(join(ebpfDir, 'drop_program.lst'), out.join('\n') + '\n');
  return insns.length;
}

function main() {
  const compiler = checkCompiler();
  const sources = readdirSync(ebpfDir).filter((f) => f.endsWith('.bpf.c'));
  const multiarch = run('gcc', ['-print-multiarch']).trim();
  const tmp = mkdtempSync(join(tmpdir(), 'ctmon-bpf-'));
  try {
    for (const file of sources) {
      const name = file.slice(0, -'.bpf.c'.length);
      const source = join(ebpfDir, file);
      const objectPath = join(tmp, `${name}.o`);
      run(CLANG, [...FLAGS, '-Inative', `-I/usr/include/${multiarch}`, '-c', relative(root, source), '-o', objectPath]);
      const { text, programs } = generate(name, source, readFileSync(objectPath), compiler);
      writeFileSync(join(ebpfDir, `${name}.gen.cc`), text);
      writeFileSync(join(ebpfDir, `${name}.bpf.lst`), listing(objectPath, programs));
      console.log(`${file}: ${programs.map((p) => `${p.name} ${p.insns.length} instructions`).join(', ')}`);
    }
    console.log(`drop_program.cc: ${dropProgramListing(tmp)} instructions`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main();
