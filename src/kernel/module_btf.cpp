// Kernel::module_types(): a loaded module's own BTF, read from guest memory.
//
// A module's .BTF section is not SHF_ALLOC: the loader parses it and then
// clears module->btf_data (do_init_module(), 607c543f939d "bpf: sanitize BTF
// data pointer after module is loaded"). The parsed copy lives on in
// kernel/bpf/btf.c: `btf_modules` is a list of struct btf_module {list,
// module, btf}, and struct btf keeps the raw blob in data/data_size.
#include <fmt/format.h>

#include <vector>

#include "kernel/kernel.h"
#include "kernel/walk.h"

namespace nfm {

namespace {

constexpr size_t kMaxBtfModules = 1 << 14;
constexpr uint64_t kMaxModuleBtfBytes = 16ULL << 20;

}  // namespace

Result<Types> Kernel::module_types(std::string_view module) {
  const Types& t = types();
  auto head = symbol("btf_modules");
  if (!head)
    return make_error(Errc::unsupported,
                      "the kernel keeps no module BTF (no btf_modules: before 5.11, or "
                      "built without CONFIG_DEBUG_INFO_BTF_MODULES)");
  NFM_ASSIGN(Field list, t.member("btf_module", "list"));
  NFM_ASSIGN(Field mod, t.member("btf_module", "module"));
  NFM_ASSIGN(Field btf, t.member("btf_module", "btf"));
  NFM_ASSIGN(Field data, t.member("btf", "data"));
  NFM_ASSIGN(Field data_size, t.member("btf", "data_size"));
  NFM_ASSIGN(Field name, t.member("module", "name"));

  uint64_t blob = 0, blob_size = 0;
  bool found = false;
  auto walk = walk_list(*space_, *head, kMaxBtfModules, [&](uint64_t node) {
    const uint64_t entry = node - list.offset;
    auto m = read_pointer(entry + mod.offset);
    if (!m || !*m) return true;
    auto n = read_string(*m + name.offset, name.size);
    if (!n || *n != module) return true;
    auto b = read_pointer(entry + btf.offset);
    if (!b || !*b) return true;
    auto d = read_pointer(*b + data.offset);
    auto s = read_value<uint32_t>(*b + data_size.offset);
    if (!d || !s) return true;
    blob = *d, blob_size = *s, found = true;
    return false;
  });
  if (!found) {
    if (!walk.ok())
      return make_error(Errc::fault, fmt::format("btf_modules walk ended early ({}) before "
                                                 "module {}",
                                                 walk_end_name(walk.end), module));
    return make_error(Errc::not_found,
                      fmt::format("module {} has no BTF (not loaded, or built without "
                                  "CONFIG_DEBUG_INFO_BTF_MODULES)",
                                  module));
  }
  if (blob_size == 0 || blob_size > kMaxModuleBtfBytes)
    return make_error(Errc::bad_format,
                      fmt::format("module {}: implausible BTF size {}", module, blob_size));

  if (auto it = module_types_.find(module);
      it != module_types_.end() && it->second.data == blob && it->second.size == blob_size)
    return it->second.types;
  std::vector<uint8_t> bytes(blob_size);
  NFM_TRY(read(blob, bytes.data(), bytes.size()));
  NFM_ASSIGN(Types parsed, Types::from_split_btf_bytes(bytes, t));
  module_types_.insert_or_assign(std::string(module), ModuleTypes{blob, blob_size, parsed});
  return parsed;
}

}  // namespace nfm
