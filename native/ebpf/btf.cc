// btf.cc — see btf.h. Layout reference: the kernel's Documentation/bpf/btf.rst and
// include/uapi/linux/btf.h (which this file includes, so the record sizes are the kernel's).
#include "ebpf/btf.h"

#include <fcntl.h>
#include <linux/btf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/read_file.h"

#ifndef BTF_KIND_ENUM64
#define BTF_KIND_ENUM64 19
#endif

namespace ctmon {

namespace {

constexpr int kMaxDepth = 32;  // typedef chains and anonymous nesting; also stops cycles

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint32_t kind_of(uint32_t info) { return (info >> 24) & 0x1f; }
uint32_t vlen_of(uint32_t info) { return info & 0xffff; }
bool kflag_of(uint32_t info) { return (info >> 31) != 0; }

// Bytes of kind-specific data after the 12-byte btf_type, or -1 for a kind we do not know
// (we cannot skip what we cannot size, so the whole file is refused).
long extra_bytes(uint32_t kind, uint32_t vlen) {
  switch (kind) {
    case BTF_KIND_INT:
      return 4;
    case BTF_KIND_PTR:
    case BTF_KIND_FWD:
    case BTF_KIND_TYPEDEF:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_CONST:
    case BTF_KIND_RESTRICT:
    case BTF_KIND_FUNC:
    case BTF_KIND_FLOAT:
    case BTF_KIND_TYPE_TAG:
      return 0;
    case BTF_KIND_ARRAY:
      return 12;
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION:
      return 12L * vlen;
    case BTF_KIND_ENUM:
      return 8L * vlen;
    case BTF_KIND_FUNC_PROTO:
      return 8L * vlen;
    case BTF_KIND_VAR:
      return 4;
    case BTF_KIND_DATASEC:
      return 12L * vlen;
    case BTF_KIND_DECL_TAG:
      return 4;
    case BTF_KIND_ENUM64:
      return 12L * vlen;
    default:
      return -1;
  }
}

bool is_modifier(uint32_t kind) {
  return kind == BTF_KIND_TYPEDEF || kind == BTF_KIND_VOLATILE || kind == BTF_KIND_CONST ||
         kind == BTF_KIND_RESTRICT || kind == BTF_KIND_TYPE_TAG;
}

bool is_composite(uint32_t kind) { return kind == BTF_KIND_STRUCT || kind == BTF_KIND_UNION; }

}  // namespace

Status Btf::load(const char* path) {
  std::vector<uint8_t> data;
  if (Status st = read_whole_file(path, data); !st.ok()) return st;
  Status st = parse(std::move(data));
  if (!st.ok()) st.message = std::string(path) + ": " + st.message;
  return st;
}

Status Btf::parse(std::vector<uint8_t> data) {
  data_ = std::move(data);
  types_.clear();
  type_section_ = nullptr;
  strings_ = nullptr;
  type_len_ = str_len_ = 0;
  if (data_.size() < sizeof(btf_header)) return Status::failure("shorter than a BTF header");
  btf_header h;
  std::memcpy(&h, data_.data(), sizeof h);
  if (h.magic != BTF_MAGIC) return Status::failure("not BTF (bad magic, or the other byte order)");
  if (h.version != BTF_VERSION)
    return Status::failure("unsupported BTF version " + std::to_string(h.version));
  const uint64_t size = data_.size();
  if (h.hdr_len < sizeof(btf_header) || h.hdr_len > size)
    return Status::failure("bad header length");
  if (uint64_t{h.hdr_len} + h.type_off + h.type_len > size)
    return Status::failure("type section out of bounds");
  if (uint64_t{h.hdr_len} + h.str_off + h.str_len > size)
    return Status::failure("string section out of bounds");
  if (h.str_len == 0 || data_[size_t{h.hdr_len} + h.str_off + h.str_len - 1] != 0)
    return Status::failure("string section is not NUL-terminated");
  type_section_ = data_.data() + h.hdr_len + h.type_off;
  type_len_ = h.type_len;
  strings_ = reinterpret_cast<const char*>(data_.data() + h.hdr_len + h.str_off);
  str_len_ = h.str_len;

  types_.push_back(Entry{Type{0, 0, 0}, 0});  // id 0 is "void"
  size_t pos = 0;
  while (pos < type_len_) {
    if (type_len_ - pos < sizeof(btf_type))
      return Status::failure("truncated type at offset " + std::to_string(pos));
    const uint32_t info = load_u32(type_section_ + pos + 4);
    const long extra = extra_bytes(kind_of(info), vlen_of(info));
    if (extra < 0) return Status::failure("unknown BTF kind " + std::to_string(kind_of(info)));
    if (type_len_ - pos - sizeof(btf_type) < static_cast<size_t>(extra))
      return Status::failure("truncated type at offset " + std::to_string(pos));
    Entry entry;
    std::memcpy(&entry.header, type_section_ + pos, sizeof entry.header);
    entry.offset = static_cast<uint32_t>(pos);
    types_.push_back(entry);
    pos += sizeof(btf_type) + static_cast<size_t>(extra);
  }
  return Status{};
}

const Btf::Type* Btf::type(uint32_t id) const {
  if (id == 0 || id >= types_.size()) return nullptr;
  return &types_[id].header;
}

const uint8_t* Btf::extra(uint32_t id) const {
  return type_section_ + types_[id].offset + sizeof(btf_type);
}

const char* Btf::name(uint32_t name_off) const {
  return name_off < str_len_ ? strings_ + name_off : "";
}

uint32_t Btf::skip_modifiers(uint32_t id) const {
  for (int hops = 0; hops < kMaxDepth; ++hops) {
    const Type* t = type(id);
    if (t == nullptr || !is_modifier(kind_of(t->info))) return id;
    id = t->size_or_type;
  }
  return 0;
}

bool Btf::type_size(uint32_t id, uint32_t& size, int depth) const {
  if (depth > kMaxDepth) return false;
  id = skip_modifiers(id);
  const Type* t = type(id);
  if (t == nullptr) return false;
  switch (kind_of(t->info)) {
    case BTF_KIND_INT:
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION:
    case BTF_KIND_ENUM:
    case BTF_KIND_ENUM64:
    case BTF_KIND_FLOAT:
      size = t->size_or_type;
      return true;
    case BTF_KIND_PTR:
      size = 8;
      return true;
    case BTF_KIND_ARRAY: {
      uint32_t element = 0;
      if (!type_size(load_u32(extra(id)), element, depth + 1)) return false;
      const uint64_t total = uint64_t{element} * load_u32(extra(id) + 8);
      if (total > UINT32_MAX) return false;
      size = static_cast<uint32_t>(total);
      return true;
    }
    default:
      return false;
  }
}

uint32_t Btf::find_named(uint32_t kind_mask, const char* type_name) const {
  for (uint32_t id = 1; id < types_.size(); ++id) {
    const Type* t = type(id);
    if ((kind_mask & (1u << kind_of(t->info))) && std::strcmp(name(t->name_off), type_name) == 0)
      return id;
  }
  return 0;
}

bool Btf::find_member(uint32_t id, const char* member_name, uint32_t base_bits,
                      uint32_t& bit_offset, uint32_t& member_type, uint32_t& bitfield_size,
                      int depth, uint32_t& budget) const {
  if (depth > kMaxDepth) return false;
  const Type* t = type(id);
  if (t == nullptr || !is_composite(kind_of(t->info))) return false;
  const bool kflag = kflag_of(t->info);
  const uint8_t* m = extra(id);
  for (uint32_t i = 0; i < vlen_of(t->info); ++i, m += sizeof(btf_member)) {
    if (budget == 0) return false;
    --budget;
    const uint32_t m_name = load_u32(m);
    const uint32_t m_type = load_u32(m + 4);
    const uint32_t m_offset = load_u32(m + 8);
    const uint32_t bits = kflag ? BTF_MEMBER_BIT_OFFSET(m_offset) : m_offset;
    const uint32_t bitfield = kflag ? BTF_MEMBER_BITFIELD_SIZE(m_offset) : 0;
    const char* n = name(m_name);
    if (std::strcmp(n, member_name) == 0) {
      bit_offset = base_bits + bits;
      member_type = m_type;
      bitfield_size = bitfield;
      return true;
    }
    if (n[0] == '\0') {  // anonymous struct/union: its members belong to this scope
      const uint32_t inner = skip_modifiers(m_type);
      if (find_member(inner, member_name, base_bits + bits, bit_offset, member_type, bitfield_size,
                      depth + 1, budget))
        return true;
    }
  }
  return false;
}

Status Btf::member(const char* struct_name, const char* path, BtfMember& out) const {
  const uint32_t root = find_named((1u << BTF_KIND_STRUCT) | (1u << BTF_KIND_UNION), struct_name);
  if (root == 0) return Status::failure(std::string("BTF has no struct ") + struct_name);
  uint32_t current = root;
  uint32_t bits = 0;
  uint32_t member_type = 0;
  std::string walked = struct_name;
  const char* p = path;
  for (;;) {
    const char* dot = std::strchr(p, '.');
    const std::string component = dot ? std::string(p, dot) : std::string(p);
    const Type* t = type(current);
    if (t == nullptr || !is_composite(kind_of(t->info)))
      return Status::failure(walked + " is not a struct or union, so it has no member " +
                             component);
    uint32_t bitfield = 0;
    uint32_t budget = 1u << 16;  // sk_buff's members, anonymous ones included, are a few hundred
    if (!find_member(current, component.c_str(), bits, bits, member_type, bitfield, 0, budget))
      return Status::failure("struct " + walked + " has no member " + component);
    walked += "." + component;
    if (bitfield != 0) return Status::failure(walked + " is a bitfield");
    current = skip_modifiers(member_type);
    if (dot == nullptr) break;
    p = dot + 1;
  }
  if (bits % 8 != 0) return Status::failure(walked + " is not byte-aligned");
  const Type* t = type(current);
  if (t == nullptr) return Status::failure(walked + " has type void");
  BtfMember result;
  result.offset = bits / 8;
  result.type_id = current;
  result.pointer = kind_of(t->info) == BTF_KIND_PTR;
  if (!type_size(current, result.size))
    return Status::failure(walked + " has a type without a size");
  out = result;
  return Status{};
}

Status Btf::enumerator(const char* enum_name, int64_t& value) const {
  for (uint32_t id = 1; id < types_.size(); ++id) {
    const Type* t = type(id);
    const uint32_t kind = kind_of(t->info);
    if (kind != BTF_KIND_ENUM && kind != BTF_KIND_ENUM64) continue;
    const size_t stride = kind == BTF_KIND_ENUM ? 8 : 12;
    const uint8_t* e = extra(id);
    for (uint32_t i = 0; i < vlen_of(t->info); ++i, e += stride) {
      if (std::strcmp(name(load_u32(e)), enum_name) != 0) continue;
      if (kind == BTF_KIND_ENUM) {
        const uint32_t raw = load_u32(e + 4);
        // kind_flag marks a signed enum; an unsigned one keeps values above INT32_MAX positive.
        value = kflag_of(t->info) ? int64_t{static_cast<int32_t>(raw)} : int64_t{raw};
      } else {
        value = static_cast<int64_t>((uint64_t{load_u32(e + 8)} << 32) | load_u32(e + 4));
      }
      return Status{};
    }
  }
  return Status::failure(std::string("BTF has no enumerator ") + enum_name);
}

Status Btf::typedef_id(const char* typedef_name, uint32_t& id) const {
  const uint32_t found = find_named(1u << BTF_KIND_TYPEDEF, typedef_name);
  if (found == 0) return Status::failure(std::string("BTF has no typedef ") + typedef_name);
  id = found;
  return Status{};
}

Status Btf::function_params(uint32_t typedef_id, std::vector<Param>& params) const {
  const Type* td = type(typedef_id);
  if (td == nullptr || kind_of(td->info) != BTF_KIND_TYPEDEF)
    return Status::failure("not a typedef id");
  const uint32_t ptr = skip_modifiers(td->size_or_type);
  const Type* p = type(ptr);
  if (p == nullptr || kind_of(p->info) != BTF_KIND_PTR)
    return Status::failure(std::string(name(td->name_off)) + " is not a function pointer");
  const uint32_t proto = skip_modifiers(p->size_or_type);
  const Type* f = type(proto);
  if (f == nullptr || kind_of(f->info) != BTF_KIND_FUNC_PROTO)
    return Status::failure(std::string(name(td->name_off)) + " is not a function pointer");
  params.clear();
  const uint8_t* param = extra(proto);
  for (uint32_t i = 0; i < vlen_of(f->info); ++i, param += sizeof(btf_param)) {
    const uint32_t param_type = load_u32(param + 4);
    params.push_back(Param{name(load_u32(param)), param_type, describe(param_type)});
  }
  return Status{};
}

std::string Btf::describe(uint32_t id) const {
  std::string suffix;
  for (int hops = 0; hops < kMaxDepth; ++hops) {
    if (id == 0) return "void" + suffix;
    const Type* t = type(id);
    if (t == nullptr) return "?";
    const uint32_t kind = kind_of(t->info);
    const char* n = name(t->name_off);
    switch (kind) {
      case BTF_KIND_PTR:
        suffix = " *" + suffix;
        id = t->size_or_type;
        continue;
      case BTF_KIND_CONST:
      case BTF_KIND_VOLATILE:
      case BTF_KIND_RESTRICT:
      case BTF_KIND_TYPE_TAG:
        id = t->size_or_type;
        continue;
      case BTF_KIND_STRUCT:
        return std::string("struct ") + n + suffix;
      case BTF_KIND_UNION:
        return std::string("union ") + n + suffix;
      case BTF_KIND_ENUM:
      case BTF_KIND_ENUM64:
        return std::string("enum ") + n + suffix;
      case BTF_KIND_FWD:
        return std::string(kflag_of(t->info) ? "union " : "struct ") + n + suffix;
      case BTF_KIND_FUNC_PROTO:
        return "fn" + suffix;
      default:
        return (n[0] ? std::string(n) : std::string("?")) + suffix;  // int, typedef, float
    }
  }
  return "?";
}

}  // namespace ctmon
