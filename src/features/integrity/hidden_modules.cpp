// hidden_module: a loaded module is on the `modules` list (what /proc/modules and
// lsmod read), has a kobject in module_kset (/sys/module/NAME) and, where the
// kernel keeps one (CONFIG_MODULES_TREE_LOOKUP), its memory is in the module
// address tree that every exception and stack unwind looks code up in. A rootkit
// that hides itself unlinks the first two; it cannot leave the tree without
// breaking its own code's backtraces, and rarely tries.
#include <fmt/core.h>

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
  kModuleList = 1,   // the `modules` list
  kSysfs = 2,        // module_kset's kobjects (/sys/module)
  kAddressTree = 4,  // mod_tree: the latched rbtree of module memory
};
constexpr ViewName kModuleViews[] = {
    {kModuleList, "module_list"}, {kSysfs, "sysfs"}, {kAddressTree, "address_tree"}};
constexpr uint64_t kModuleStateLive = 0;  // MODULE_STATE_LIVE

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

  Kernel& kernel_;
  ObjectContext ctx_;
  const IntegrityOptions& options_;
};

struct ModuleFacts {
  std::string name;
  bool live = false;
};

Result<ModuleFacts> module_facts(Kernel& kernel, const ObjectContext& ctx, uint64_t address) {
  NFM_ASSIGN(TypeRef type, kernel.types().find_struct("module"));
  Object mod(ctx, address, type);
  ModuleFacts f;
  NFM_ASSIGN(Object name, mod.member("name"));
  NFM_ASSIGN(f.name, name.as_string());
  NFM_ASSIGN(Object state, mod.member("state"));
  NFM_ASSIGN(uint64_t st, state.as_unsigned());
  // Modules coming and going join and leave the views one at a time.
  f.live = st == kModuleStateLive;
  return f;
}

}  // namespace

Result<CheckOutcome> check_hidden_modules(Kernel& kernel, const IntegrityOptions& options,
                                          std::vector<IntegrityFinding>& findings) {
  ModuleViews views(kernel, options);
  const ObjectContext ctx = object_context(kernel);
  NFM_ASSIGN(Sighting first, views.read());
  if (first.incomplete) {
    NFM_ASSIGN(first, views.read());
  }
  auto missing_of = [](const Sighting& s, unsigned seen) {
    return s.available & ~seen & ~s.incomplete;
  };
  std::map<uint64_t, unsigned> candidates;
  for (auto [mod, seen] : first.seen)
    if (auto f = module_facts(kernel, ctx, mod); f && f->live)
      if (unsigned m = missing_of(first, seen)) candidates[mod] = m;
  CheckOutcome outcome;
  outcome.detail = fmt::format("{} modules in {} views", first.seen.size(),
                               view_names(first.available, kModuleViews).size());
  Sighting second;
  if (!candidates.empty()) {
    NFM_ASSIGN(second, views.read());
  }
  for (auto [mod, missing_before] : candidates) {
    auto it = second.seen.find(mod);
    if (it == second.seen.end()) continue;  // unloaded between the readings
    auto f = module_facts(kernel, ctx, mod);
    if (!f) {
      outcome.inconclusive = true;
      continue;
    }
    if (!f->live) continue;
    const unsigned missing = missing_of(second, it->second) & missing_before;
    if (!missing) continue;
    const auto missing_names = view_names(missing, kModuleViews);
    const auto seen_names = view_names(it->second, kModuleViews);
    findings.push_back(IntegrityFinding{
        .kind = "hidden_module",
        .severity = "critical",
        .summary = fmt::format("module {} is missing from the {}, seen in the {}", f->name,
                               join_views(missing_names), join_views(seen_names)),
        .evidence = {{"module", f->name},
                     {"address", schema::hex_address(mod)},
                     {"seen_in", seen_names},
                     {"missing_from", missing_names}},
    });
  }
  if (first.incomplete || (!candidates.empty() && second.incomplete)) {
    outcome.inconclusive = true;
    outcome.detail =
        fmt::format("could not read every view: {}",
                    (first.problems.empty() ? second.problems : first.problems).front());
  }
  return outcome;
}

}  // namespace nfm
