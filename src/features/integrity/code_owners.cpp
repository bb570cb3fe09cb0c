// Address ranges of the kernel image and of the listed modules.
#include "features/integrity/code_owners.h"

#include "kernel/kernel.h"
#include "kernel/module_symbols.h"
#include "schema/fields.h"

namespace nfm {

Result<CodeOwners> CodeOwners::read(Kernel& kernel, const ObjectContext& ctx, size_t max_modules) {
  CodeOwners o;
  NFM_ASSIGN(o.image_start_, kernel.symbol("_text"));
  NFM_ASSIGN(o.image_end_, kernel.symbol("_end"));
  NFM_ASSIGN(o.text_start_, kernel.symbol("_stext"));
  NFM_ASSIGN(o.text_end_, kernel.symbol("_etext"));
  NFM_ASSIGN(o.init_text_start_, kernel.symbol("_sinittext"));
  NFM_ASSIGN(o.init_text_end_, kernel.symbol("_einittext"));
  NFM_ASSIGN(Object head, var(ctx, "modules", "list_head"));
  const bool has_mem = kernel.types().has_member("module", "mem");
  auto add = [&](const Object& layout, const std::string& name) {
    auto base = layout.member("base");
    auto size = layout.member("size");
    if (!base || !size) return;
    auto b = base->as_pointer();
    auto s = size->as_unsigned();
    if (b && s && *b && *s && *s < (1ull << 32)) o.modules_.push_back({*b, *b + *s, name});
  };
  NFM_ASSIGN(WalkResult w,
             for_each_entry(head, "module", "list", max_modules, [&](const Object& m) {
               auto name_field = m.member("name");
               if (!name_field) return true;
               auto name = name_field->as_string();
               if (!name) return true;
               if (has_mem) {
                 for (uint64_t i = 0; i < 16; ++i) {
                   auto layout = m.member("mem[" + std::to_string(i) + "]");
                   if (!layout) break;
                   add(*layout, *name);
                 }
               } else {
                 for (const char* l : {"core_layout", "init_layout"})
                   if (auto layout = m.member(l)) add(*layout, *name);
               }
               return true;
             }));
  if (!w.ok())
    return make_error(Errc::limit, std::string("module list walk ended ") + walk_end_name(w.end));
  return o;
}

std::vector<CodeOwners::Range> CodeOwners::ranges() const {
  std::vector<Range> out{{image_start_, image_end_, kKernel}};
  out.insert(out.end(), modules_.begin(), modules_.end());
  return out;
}

std::string CodeOwners::owner_of(uint64_t address) const {
  if (address >= image_start_ && address < image_end_) return kKernel;
  for (const Range& r : modules_)
    if (address >= r.start && address < r.end) return r.module;
  return "";
}

std::string function_name(Kernel& kernel, const CodeOwners& owners, uint64_t address) {
  if (auto s = function_symbol_at(kernel, address)) return s->name;
  if (owners.owner_of(address) == CodeOwners::kKernel) return kernel.symbols().symbolize(address);
  return schema::hex_address(address);
}

}  // namespace nfm
