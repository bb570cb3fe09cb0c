// ftrace_hook: a function hooked through ftrace keeps its code intact; the hook is
// an ftrace_ops on ftrace_ops_list whose filter names the function and whose
// handler moves the instruction pointer to the rootkit's code. The kernel's own
// users (tracers, kprobes on ftrace, live patches of its own) have handlers in the
// kernel; a handler in a module, or in memory no listed module owns, is a hook.
// kprobe: likewise, a kprobe (kprobe_table) whose handlers are not the kernel's.
#include <fmt/core.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "features/integrity/code_owners.h"
#include "features/integrity/integrity.h"
#include "kernel/kernel.h"
#include "kernel/object.h"

namespace nfm {
namespace {

constexpr size_t kMaxOps = 4096;
constexpr uint64_t kMaxHashBits = 12;

// The function names an ops' filter hash holds (func_hash->filter_hash).
std::vector<std::string> filtered_functions(Kernel& kernel, const ObjectContext& ctx,
                                            const Object& ops) {
  std::vector<std::string> out;
  auto hash = [&]() -> Result<Object> {
    NFM_ASSIGN(Object func_hash, ops.arrow("func_hash"));
    return func_hash.arrow("filter_hash");
  }();
  if (!hash) return out;
  auto bits = hash->member("size_bits");
  auto buckets = hash->member("buckets");
  if (!bits || !buckets) return out;
  auto size_bits = bits->as_unsigned();
  auto first = buckets->as_pointer();
  if (!size_bits || !first || !*first || *size_bits > kMaxHashBits) return out;
  auto head_type = kernel.types().find_struct("hlist_head");
  if (!head_type) return out;
  for (uint64_t i = 0; i < (1ull << *size_bits) && out.size() < kMaxOps; ++i) {
    Object head(ctx, *first + i * 8, *head_type);
    (void)for_each_hlist_entry(
        head, "ftrace_func_entry", "hlist", kMaxOps - out.size(), [&](const Object& e) {
          if (auto ip = e.member("ip"))
            if (auto v = ip->as_unsigned()) {
              auto n = kernel.symbols().nearest(*v);
              // fentry sits at the function's start (after an endbr64 with IBT).
              out.push_back(n && n->offset <= 16 ? std::string(n->symbol.name)
                                                 : schema::hex_address(*v));
            }
          return true;
        });
  }
  return out;
}

std::string owner_text(const std::string& owner) {
  return owner.empty() ? "memory no listed module owns" : "module " + owner;
}

}  // namespace

Result<size_t> for_each_ftrace_ops(Kernel& kernel, const ObjectContext& ctx,
                                   const std::function<Result<void>(const Object&)>& visit) {
  NFM_ASSIGN(uint64_t list, kernel.symbol("ftrace_ops_list"));
  NFM_ASSIGN(uint64_t end, kernel.symbol("ftrace_list_end"));
  NFM_ASSIGN(TypeRef ops_type, kernel.types().find_struct("ftrace_ops"));
  NFM_ASSIGN(uint64_t ops, ctx.space->read_value<uint64_t>(list));
  std::set<uint64_t> seen;
  while (ops != end && ops != 0) {
    if (!seen.insert(ops).second || seen.size() > kMaxOps)
      return make_error(Errc::limit, "ftrace_ops_list loops or is too long");
    Object o(ctx, ops, ops_type);
    NFM_TRY(visit(o));
    NFM_ASSIGN(Object next, o.member("next"));
    NFM_ASSIGN(ops, next.as_pointer());
  }
  return seen.size();
}

Result<size_t> ftrace_hooks(Kernel& kernel, const ObjectContext& ctx, const CodeOwners& owners,
                            std::vector<IntegrityFinding>& findings) {
  return for_each_ftrace_ops(kernel, ctx, [&](const Object& o) -> Result<void> {
    NFM_ASSIGN(Object func_field, o.member("func"));
    NFM_ASSIGN(uint64_t func, func_field.as_pointer());
    const std::string owner = owners.owner_of(func);
    if (owner == CodeOwners::kKernel) return {};
    const std::vector<std::string> functions = filtered_functions(kernel, ctx, o);
    const std::string handler = function_name(kernel, owners, func);
    std::string hooked;
    for (const std::string& f : functions) hooked += (hooked.empty() ? "" : ", ") + f;
    findings.push_back(IntegrityFinding{
        .kind = "ftrace_hook",
        .severity = "critical",
        .summary =
            fmt::format("ftrace hook on {} by {} in {}", hooked.empty() ? "every function" : hooked,
                        handler, owner_text(owner)),
        .evidence = {{"functions", functions},
                     {"ops", schema::hex_address(o.address())},
                     {"handler", handler},
                     {"address", schema::hex_address(func)},
                     {"module", owner}},
    });
    return {};
  });
}

Result<CheckOutcome> check_ftrace_hooks(Kernel& kernel, const IntegrityOptions& options,
                                        std::vector<IntegrityFinding>& findings) {
  const ObjectContext ctx = fresh_reading(kernel);
  NFM_ASSIGN(CodeOwners owners, CodeOwners::read(kernel, ctx, options.max_modules));
  NFM_ASSIGN(size_t count, ftrace_hooks(kernel, ctx, owners, findings));
  CheckOutcome outcome;
  outcome.detail = fmt::format("{} ftrace_ops registered", count);
  return outcome;
}

}  // namespace nfm
