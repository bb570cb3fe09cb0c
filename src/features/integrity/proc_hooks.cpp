// proc_hook: the operations behind what the guest's netstat, lsmod and ls read
// (/proc/net/tcp{,6}, /proc/net/udp{,6}, /proc/modules, the root directory's
// iterate_shared) are tables of function pointers. A rootkit points one entry at
// its own code (or the whole table at its own copy) to filter what they print.
// Every function of such a table belongs to whoever owns the table: the kernel's
// tables call kernel code. An entry that leads elsewhere is a hook.
#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "features/integrity/code_owners.h"
#include "features/integrity/integrity.h"
#include "kernel/kernel.h"
#include "kernel/object.h"
#include "kernel/tree_walk.h"

namespace nfm {
namespace {

// A table of operations to check: what reads through it, its type and the
// function-pointer members that matter.
struct OpsTable {
  std::string reader;  // "/proc/net/tcp"
  std::string type;    // "seq_operations"
  uint64_t address = 0;
  std::vector<const char*> functions;
  std::vector<std::string> expected_owners;  // who may own the table: "kernel", a module
};

const std::vector<const char*> kSeqFunctions{"start", "next", "stop", "show"};

// The children of a proc directory entry by name (its subdir rbtree).
Result<std::vector<std::pair<std::string, Object>>> proc_children(Kernel& kernel,
                                                                  const ObjectContext& ctx,
                                                                  const Object& dir) {
  NFM_ASSIGN(RbLayout rb, RbLayout::of(kernel.types()));
  NFM_ASSIGN(Object root, dir.member("subdir.rb_node"));
  NFM_ASSIGN(uint64_t top, root.as_pointer());
  std::vector<uint64_t> nodes;
  WalkResult w = walk_rbtree(*ctx.space, rb, top, 4096, [&](uint64_t n) {
    nodes.push_back(n);
    return true;
  });
  if (!w.ok())
    return make_error(Errc::limit,
                      fmt::format("proc directory walk ended {}", walk_end_name(w.end)));
  std::vector<std::pair<std::string, Object>> out;
  for (uint64_t n : nodes) {
    auto pde = container_of(ctx, n, "proc_dir_entry", "subdir_node");
    if (!pde) continue;
    auto name = pde->member("name");
    if (!name) continue;
    auto text = name->as_string(64);
    if (text) out.emplace_back(*text, *pde);
  }
  return out;
}

uint64_t pointer_of(const Object& o, const char* member) {
  auto m = o.member(member);
  if (!m) return 0;
  auto p = m->as_pointer();
  return p ? *p : 0;
}

// The seq_operations behind /proc/net/{tcp,tcp6,udp,udp6} of the initial network
// namespace, for the entries it has.
Result<std::vector<OpsTable>> proc_net_tables(Kernel& kernel, const ObjectContext& ctx) {
  std::vector<OpsTable> tables;
  NFM_ASSIGN(Object net, var(ctx, "init_net", "net"));
  NFM_ASSIGN(Object proc_net, net.arrow("proc_net"));
  NFM_ASSIGN(auto net_entries, proc_children(kernel, ctx, proc_net));
  for (const auto& [name, pde] : net_entries)
    if (name == "tcp" || name == "tcp6" || name == "udp" || name == "udp6")
      if (uint64_t ops = pointer_of(pde, "seq_ops"))
        // IPv6 may be a module of its own.
        tables.push_back({"/proc/net/" + name,
                          "seq_operations",
                          ops,
                          kSeqFunctions,
                          {CodeOwners::kKernel, "ipv6"}});
  return tables;
}

Result<std::vector<OpsTable>> tables_to_check(Kernel& kernel, const ObjectContext& ctx) {
  std::vector<OpsTable> tables;
  NFM_ASSIGN(tables, proc_net_tables(kernel, ctx));
  // /proc/modules: its proc_ops, and the seq_operations its open uses.
  NFM_ASSIGN(Object proc_root, var(ctx, "proc_root", "proc_dir_entry"));
  NFM_ASSIGN(auto root_entries, proc_children(kernel, ctx, proc_root));
  for (const auto& [name, pde] : root_entries)
    if (name == "modules")
      if (uint64_t ops = pointer_of(pde, "proc_ops"))
        tables.push_back(
            {"/proc/modules",
             "proc_ops",
             ops,
             {"proc_open", "proc_read", "proc_read_iter", "proc_lseek", "proc_release"},
             {CodeOwners::kKernel}});
  if (auto modules_op = kernel.symbol("modules_op"))
    tables.push_back(
        {"/proc/modules", "seq_operations", *modules_op, kSeqFunctions, {CodeOwners::kKernel}});
  // The root directory as init sees it: what ls and getdents64 list.
  NFM_ASSIGN(Object init, var(ctx, "init_task", "task_struct"));
  NFM_ASSIGN(Object fs, init.arrow("fs"));
  NFM_ASSIGN(Object root, fs.arrow("root.dentry"));
  NFM_ASSIGN(Object inode, root.arrow("d_inode"));
  // Its operations belong to its filesystem's code: the kernel's, or the module
  // that registered the filesystem type (ext4.ko).
  std::string fs_owner = CodeOwners::kKernel;
  auto owner_name = [&]() -> Result<std::string> {
    NFM_ASSIGN(Object sb, inode.arrow("i_sb"));
    NFM_ASSIGN(Object type, sb.arrow("s_type"));
    NFM_ASSIGN(Object owner_field, type.member("owner"));
    NFM_ASSIGN(uint64_t owner, owner_field.as_pointer());
    if (owner == 0) return std::string(CodeOwners::kKernel);  // built in
    NFM_ASSIGN(Object module, owner_field.deref());
    NFM_ASSIGN(Object name, module.member("name"));
    return name.as_string();
  };
  NFM_ASSIGN(fs_owner, owner_name());
  if (uint64_t fop = pointer_of(inode, "i_fop"))
    tables.push_back({"/ (root directory)",
                      "file_operations",
                      fop,
                      {"iterate_shared", "iterate", "open", "llseek", "read"},
                      {fs_owner}});
  return tables;
}

// The hooks of one table: it is not its expected owner's, or a function of it
// leads elsewhere than the table's owner.
Result<void> check_table(Kernel& kernel, const ObjectContext& ctx, const CodeOwners& owners,
                         const OpsTable& t, size_t& pointers,
                         std::vector<IntegrityFinding>& findings) {
  NFM_ASSIGN(TypeRef type, kernel.types().find_struct(t.type));
  Object ops(ctx, t.address, type);
  const std::string table_owner = owners.owner_of(t.address);
  auto name_of = [](const std::string& owner) {
    return owner.empty()                  ? std::string("nobody listed")
           : owner == CodeOwners::kKernel ? std::string("the kernel")
                                          : "module " + owner;
  };
  // The whole table swapped for a copy elsewhere.
  if (std::find(t.expected_owners.begin(), t.expected_owners.end(), table_owner) ==
      t.expected_owners.end()) {
    findings.push_back(IntegrityFinding{
        .kind = "proc_hook",
        .severity = "critical",
        .summary = fmt::format("{} reads through a {} that belongs to {}, not to {}", t.reader,
                               t.type, name_of(table_owner), name_of(t.expected_owners.front())),
        .evidence = {{"reader", t.reader},
                     {"table", t.type},
                     {"table_address", schema::hex_address(t.address)},
                     {"table_owner", table_owner},
                     {"expected_owner", t.expected_owners.front()}},
    });
  }
  for (const char* member : t.functions) {
    auto field = ops.member(member);
    if (!field) continue;  // not in this kernel's struct
    NFM_ASSIGN(uint64_t target, field->as_pointer());
    if (target == 0) continue;
    ++pointers;
    const std::string owner = owners.owner_of(target);
    if (!table_owner.empty() && owner == table_owner) continue;
    const std::string function = function_name(kernel, owners, target);
    findings.push_back(IntegrityFinding{
        .kind = "proc_hook",
        .severity = "critical",
        .summary = fmt::format("{}: {}.{} points to {} in {}, its table belongs to {}", t.reader,
                               t.type, member, function, name_of(owner), name_of(table_owner)),
        .evidence = {{"reader", t.reader},
                     {"table", t.type},
                     {"table_address", schema::hex_address(t.address)},
                     {"table_owner", table_owner},
                     {"member", member},
                     {"address", schema::hex_address(target)},
                     {"points_to", function},
                     {"module", owner == CodeOwners::kKernel ? "" : owner}},
    });
  }
  return {};
}

}  // namespace

Result<std::map<std::string, ProcNetReader>> proc_net_readers(Kernel& kernel,
                                                              const ObjectContext& ctx,
                                                              const CodeOwners& owners) {
  NFM_ASSIGN(std::vector<OpsTable> tables, proc_net_tables(kernel, ctx));
  std::map<std::string, ProcNetReader> out;
  for (const OpsTable& t : tables) {
    ProcNetReader& r = out[t.reader];
    r.present = true;
    r.ops = t.address;
    size_t pointers = 0;
    NFM_TRY(check_table(kernel, ctx, owners, t, pointers, r.hooks));
  }
  return out;
}

Result<CheckOutcome> check_proc_hooks(Kernel& kernel, const IntegrityOptions& options,
                                      std::vector<IntegrityFinding>& findings) {
  const ObjectContext ctx = fresh_reading(kernel);
  NFM_ASSIGN(CodeOwners owners, CodeOwners::read(kernel, ctx, options.max_modules));
  NFM_ASSIGN(std::vector<OpsTable> tables, tables_to_check(kernel, ctx));
  size_t pointers = 0;
  for (const OpsTable& t : tables) NFM_TRY(check_table(kernel, ctx, owners, t, pointers, findings));
  CheckOutcome outcome;
  outcome.detail = fmt::format("{} pointers in {} tables", pointers, tables.size());
  return outcome;
}

}  // namespace nfm
