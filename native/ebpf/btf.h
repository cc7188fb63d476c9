// btf.h — a minimal reader of raw BTF (/sys/kernel/btf/vmlinux): just the lookups the drop
// probe needs to build its program for the running kernel instead of hard-coding offsets.
//
// No Node-API, no libbpf. The whole file is bounds-checked at load() (it is untrusted input
// as far as this parser is concerned); lookups then only follow ids that load() validated.
// Errors are strings that name what was missing ("struct sk_buff has no member _nfct").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace ctmon {

// Where a (possibly nested) member lives inside a struct.
struct BtfMember {
  uint32_t offset = 0;   // bytes from the start of the outer struct
  uint32_t size = 0;     // bytes; pointers are 8 (BTF does not record it; 64-bit kernels)
  uint32_t type_id = 0;  // the member's type, typedefs and qualifiers resolved
  bool pointer = false;
};

class Btf {
 public:
  Btf() = default;
  // The index points into data_: a copy would point into the original's memory.
  Btf(const Btf&) = delete;
  Btf& operator=(const Btf&) = delete;

  // Reads and indexes a raw BTF file; the failure says why it could not.
  Status load(const char* path = "/sys/kernel/btf/vmlinux");
  // Same, from bytes already in memory (tests, fuzzing).
  Status parse(std::vector<uint8_t> data);

  // Byte offset of `path` ("dev", "nd_net.net", "__sk_common.skc_net.net") in struct
  // `struct_name`. Each component is searched for through anonymous structs and unions, the
  // way C resolves sk_buff.dev (inside two anonymous unions) or sk_buff.network_header (inside
  // a struct_group). Bitfields are refused: a BPF load cannot address them.
  Status member(const char* struct_name, const char* path, BtfMember& out) const;

  // Value of an enumerator (ENUM or ENUM64) by name, e.g. SKB_DROP_REASON_NETFILTER_DROP.
  Status enumerator(const char* name, int64_t& value) const;

  // Type id of a typedef by name, e.g. btf_trace_kfree_skb (the tp_btf attach target).
  Status typedef_id(const char* name, uint32_t& id) const;

  // Parameters of the function a typedef points to (typedef -> pointer -> FUNC_PROTO). For
  // btf_trace_<tp> the first is `void *__data`. vmlinux BTF leaves these names empty, so the
  // probe identifies arguments by `type` ("struct sk_buff *", "enum skb_drop_reason").
  struct Param {
    std::string name;
    uint32_t type_id;
    std::string type;  // describe(type_id)
  };
  Status function_params(uint32_t typedef_id, std::vector<Param>& params) const;

  // A C-like spelling of a type, qualifiers and typedefs kept by name: "struct sk_buff *",
  // "void *", "enum skb_drop_reason", "u32". "?" for what it cannot spell.
  std::string describe(uint32_t id) const;

  size_t type_count() const { return types_.empty() ? 0 : types_.size() - 1; }

 private:
  struct Type {
    uint32_t name_off;
    uint32_t info;
    uint32_t size_or_type;
  };
  const Type* type(uint32_t id) const;         // nullptr for id 0 or out of range
  const uint8_t* extra(uint32_t id) const;     // the kind-specific data after the header
  const char* name(uint32_t name_off) const;   // "" when out of range
  uint32_t skip_modifiers(uint32_t id) const;  // through typedef/const/volatile/restrict/type_tag
  bool type_size(uint32_t id, uint32_t& size, int depth = 0) const;
  uint32_t find_named(uint32_t kind_mask, const char* type_name) const;
  // Searches members of struct/union `id` (and its anonymous members) for `member_name`.
  // `budget` bounds the members visited: a crafted BTF whose anonymous members refer back to
  // their struct would otherwise take exponential time within the depth limit.
  bool find_member(uint32_t id, const char* member_name, uint32_t base_bits, uint32_t& bit_offset,
                   uint32_t& member_type, uint32_t& bitfield_size, int depth,
                   uint32_t& budget) const;

  std::vector<uint8_t> data_;
  const uint8_t* type_section_ = nullptr;
  size_t type_len_ = 0;
  const char* strings_ = nullptr;
  size_t str_len_ = 0;
  struct Entry {
    Type header;      // copied out, so reads need no alignment or aliasing assumptions
    uint32_t offset;  // of the header in the type section
  };
  std::vector<Entry> types_;  // indexed by type id; [0] is void
};

}  // namespace ctmon
