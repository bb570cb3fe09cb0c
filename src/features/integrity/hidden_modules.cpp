// hidden_module: a loaded module is on the `modules` list (what /proc/modules and
// lsmod read), has a kobject in module_kset (/sys/module/NAME) and, where the
// kernel keeps one (CONFIG_MODULES_TREE_LOOKUP), its memory is in the module
// address tree that every exception and stack unwind looks code up in. A rootkit
// that hides itself unlinks the first two; one that also leaves the tree still
// lies in module memory: its struct module is found there by its self-reference
// (mkobj.mod points back at it), whatever list it left.
#include <fmt/core.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "features/integrity/integrity.h"
#include "kernel/kernel.h"
#include "kernel/object.h"
#include "kernel/tree_walk.h"

namespace nfm {
namespace {

enum ModuleView : unsigned {
  kModuleList = 1,    // the `modules` list
  kSysfs = 2,         // module_kset's kobjects (/sys/module)
  kAddressTree = 4,   // mod_tree: the latched rbtree of module memory
  kModuleMemory = 8,  // struct modules found in the module area's writable pages
};
constexpr ViewName kModuleViews[] = {{kModuleList, "module_list"},
                                     {kSysfs, "sysfs"},
                                     {kAddressTree, "address_tree"},
                                     {kModuleMemory, "module_memory"}};
constexpr uint64_t kModuleStateLive = 0;  // MODULE_STATE_LIVE
constexpr uint64_t kModuleStateLast = 3;  // MODULE_STATE_UNFORMED
constexpr uint64_t kLargePage = 2 << 20;
// The x86-64 module area ends where the fixmap begins (MODULES_END,
// Documentation/arch/x86/x86_64/mm.rst); it starts after the kernel image.
constexpr uint64_t kModuleAreaEnd = 0xffffffffff000000;
constexpr uint64_t kMaxModuleMemory = uint64_t{64} << 20;  // writable bytes scanned

class ModuleViews {
 public:
  ModuleViews(Kernel& kernel, const IntegrityOptions& options)
      : kernel_(kernel), ctx_(object_context(kernel)), options_(options) {}

  Result<Sighting> read() {
    kernel_.forget_cached_pages();
    Sighting s;
    s.available = kModuleList | kSysfs;
    NFM_TRY(module_list(s));
    NFM_TRY(sysfs(s));
    address_tree(s);
    module_memory(s);
    return s;
  }

 private:
  Result<void> module_list(Sighting& s) {
    NFM_ASSIGN(Object head, var(ctx_, "modules", "list_head"));
    NFM_ASSIGN(WalkResult w,
               for_each_entry(head, "module", "list", options_.max_modules, [&](const Object& m) {
                 s.seen[m.address()] |= kModuleList;
                 return true;
               }));
    s.note(kModuleList, "module list", w);
    return {};
  }

  // Built-in modules have kobjects too (with no struct module): only loaded ones count.
  Result<void> sysfs(Sighting& s) {
    NFM_ASSIGN(Object kset_pointer, var(ctx_, "module_kset", "kset"));
    // module_kset is a `struct kset *`: the symbol holds the pointer.
    NFM_ASSIGN(uint64_t kset_address, ctx_.space->read_value<uint64_t>(kset_pointer.address()));
    NFM_ASSIGN(TypeRef kset_type, kernel_.types().find_struct("kset"));
    Object kset(ctx_, kset_address, kset_type);
    NFM_ASSIGN(Object list, kset.member("list"));
    NFM_ASSIGN(WalkResult w,
               for_each_entry(list, "kobject", "entry", options_.max_modules, [&](const Object& k) {
                 auto mk = container_of(ctx_, k.address(), "module_kobject", "kobj");
                 if (!mk) return true;
                 auto mod = mk->member("mod");
                 if (!mod) return true;
                 if (auto p = mod->as_pointer(); p && *p) s.seen[*p] |= kSysfs;
                 return true;
               }));
    s.note(kSysfs, "module_kset", w);
    return {};
  }

  // mod_tree.root.tree[0]: each node is a mod_tree_node's latch_tree_node.node[0].
  void address_tree(Sighting& s) {
    const Types& t = kernel_.types();
    auto sym = kernel_.symbol("mod_tree");
    auto root_type = t.find_struct("mod_tree_root");
    auto rb = RbLayout::of(t);
    auto node_in_latch = t.member("latch_tree_node", "node[0]");
    auto latch_in_mtn = t.member("mod_tree_node", "node");
    auto mod_in_mtn = t.member("mod_tree_node", "mod");
    if (!sym || !root_type || !rb || !node_in_latch || !latch_in_mtn || !mod_in_mtn) return;
    Object root(ctx_, *sym, *root_type);
    auto first = root.member("root.tree[0].rb_node");
    if (!first) return;
    auto top = first->as_pointer();
    if (!top) return;
    s.available |= kAddressTree;
    std::vector<uint64_t> nodes;
    // Up to a few nodes per module (core, init, data).
    WalkResult w = walk_rbtree(*ctx_.space, *rb, *top, 4 * options_.max_modules, [&](uint64_t n) {
      nodes.push_back(n);
      return true;
    });
    s.note(kAddressTree, "module address tree", w);
    for (uint64_t n : nodes) {
      const uint64_t mtn = n - node_in_latch->offset - latch_in_mtn->offset;
      auto mod = ctx_.space->read_value<uint64_t>(mtn + mod_in_mtn->offset);
      if (mod && plausible_kernel_pointer(*mod)) s.seen[*mod] |= kAddressTree;
    }
  }

  // Every struct module in the module area's writable pages: a word that points at
  // itself minus the offset of mkobj.mod is such a struct's back-reference, if the
  // struct around it has a name and a module state. Only ever adds sightings: a
  // module is not expected here (its struct may lie in a page this scan skips).
  void module_memory(Sighting& s) {
    auto self = kernel_.types().member("module", "mkobj.mod");
    auto type = kernel_.types().find_struct("module");
    auto image_end = kernel_.symbol("_end");
    if (!self || !type || !image_end) return;
    const uint64_t start = (*image_end + kLargePage - 1) & ~(kLargePage - 1);
    std::vector<uint8_t> page(4096);
    uint64_t scanned = 0;
    bool capped = false;
    auto walked =
        kernel_.space().for_each_mapping(start, kModuleAreaEnd, [&](const PageMapping& m) {
          if (!m.writable()) return true;
          for (uint64_t va = m.va; va < m.va + m.size; va += page.size()) {
            if ((scanned += page.size()) > kMaxModuleMemory) {
              capped = true;
              return false;
            }
            if (!ctx_.space->read(va, page.data(), page.size())) continue;
            for (size_t off = 0; off + 8 <= page.size(); off += 8) {
              uint64_t word;
              std::memcpy(&word, page.data() + off, 8);
              if (word + self->offset != va + off) continue;
              Object mod(ctx_, word, *type);
              auto name = mod.member("name");
              auto state = mod.member("state");
              if (!name || !state) continue;
              auto text = name->as_string(64);
              auto st = state->as_unsigned();
              if (text && !text->empty() && st && *st <= kModuleStateLast)
                s.seen[word] |= kModuleMemory;
            }
          }
          return true;
        });
    if (!walked || capped) {
      s.problems.push_back(walked ? "module memory scan stopped at its bound"
                                  : "module area page tables: " + walked.error().message);
      s.incomplete |= kModuleMemory;
    }
    s.available |= kModuleMemory;
  }

  Kernel& kernel_;
  ObjectContext ctx_;
  const IntegrityOptions& options_;
};

// A module is compared while MODULE_STATE_LIVE (coming and going, it joins and
// leaves the views one at a time) and belongs in every view this kernel has.
Result<Subject> module_subject(const ObjectContext& ctx, TypeRef module_type, uint64_t address) {
  Object mod(ctx, address, module_type);
  NFM_ASSIGN(Object name_field, mod.member("name"));
  NFM_ASSIGN(std::string name, name_field.as_string());
  NFM_ASSIGN(Object state, mod.member("state"));
  NFM_ASSIGN(uint64_t st, state.as_unsigned());
  Subject s;
  s.live = st == kModuleStateLive;
  s.expected = kModuleList | kSysfs | kAddressTree;
  s.identity = name;
  s.label = "module " + name;
  s.evidence = {{"module", name}, {"address", schema::hex_address(address)}};
  return s;
}

}  // namespace

Result<CheckOutcome> check_hidden_modules(Kernel& kernel, const IntegrityOptions& options,
                                          std::vector<IntegrityFinding>& findings) {
  ModuleViews views(kernel, options);
  const ObjectContext ctx = object_context(kernel);
  NFM_ASSIGN(TypeRef module_type, kernel.types().find_struct("module"));
  return compare_views({.kind = "hidden_module",
                        .objects = "modules",
                        .views = kModuleViews,
                        .read = [&] { return views.read(); },
                        .subject = [&](uint64_t a) { return module_subject(ctx, module_type, a); },
                        .kernel = &kernel},
                       findings);
}

}  // namespace nfm
