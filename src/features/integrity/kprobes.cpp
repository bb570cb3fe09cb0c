// kprobe: a kprobe leaves a function's code to the kernel (a breakpoint, or an
// ftrace call site) and runs its handlers first: a rootkit's pre_handler sees,
// and may rewrite, every call of a syscall. Every registered kprobe is on
// kprobe_table, a hash of hlists; several probes on one address hang, as `list`
// children, off one aggregate probe whose own handlers are the kernel's. A
// kretprobe's kprobe runs the kernel's pre_handler_kretprobe, which calls the
// kretprobe's handlers. The kernel's own users (perf, bpf: kprobe_dispatcher)
// have handlers in the kernel; one in a module, or in memory no listed module
// owns, is reported, more severely when it probes a syscall or a /proc reader.
#include <fmt/core.h>

#include <bit>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "features/integrity/code_owners.h"
#include "features/integrity/integrity.h"
#include "kernel/kernel.h"
#include "kernel/object.h"

namespace nfm {
namespace {

constexpr size_t kMaxProbes = 4096;   // every probe and aggregate child, all buckets
constexpr size_t kMaxBuckets = 4096;  // the kernel's is 64 (KPROBE_HASH_BITS 6)
constexpr int kReadings = 8;          // a reading torn by a (un)register is read again

// A handler of a probe that is not the kernel's.
struct Handler {
  std::string member;  // "pre_handler", "kretprobe.handler"
  uint64_t address = 0;
  std::string owner;  // module name, "" for nobody
};

struct Probe {
  uint64_t kprobe = 0;  // the probe the handler belongs to (a child of an aggregate)
  uint64_t address = 0;
  std::vector<Handler> foreign;
};

struct Reading {
  std::map<uint64_t, Probe> foreign;  // by struct kprobe address
  size_t probes = 0, kernel_owned = 0, buckets = 0;
  std::string problem;  // a walk that did not end cleanly
};

// The number of buckets: the array type when BTF describes the variable; else
// its extent to the next symbol (kallsyms has no sizes) rounded down to a power
// of two, as the hash's size is, for the padding after it is smaller.
Result<uint64_t> bucket_count(Kernel& kernel, const ObjectContext& ctx, uint64_t table,
                              uint64_t head_size) {
  if (auto v = var(ctx, "kprobe_table"))
    if (auto a = kernel.types().array(v->type())) return std::min<uint64_t>(a->count, kMaxBuckets);
  auto next = kernel.symbols().next_after(table);
  if (!next || head_size == 0) return make_error(Errc::not_found, "kprobe_table: no end found");
  const uint64_t extent = std::min<uint64_t>((next->address - table) / head_size, kMaxBuckets);
  return extent == 0 ? 0 : std::bit_floor(extent);
}

// A syscall's entry (what sys_call_table and the switch dispatch to) or a /proc
// reader's function: a hook there hides or grants, not just watches.
bool sensitive(std::string_view function) {
  for (std::string_view p : {"__x64_sys_", "__ia32_sys_", "__ia32_compat_sys_", "__x64_compat_sys_",
                             "__do_sys_", "__se_sys_", "__do_compat_sys_", "do_syscall_",
                             "x64_sys_call", "proc_", "filldir", "iterate_dir"})
    if (function.starts_with(p)) return true;
  for (std::string_view s : {"seq_show", "seq_start", "seq_next", "_readdir"})
    if (function.ends_with(s)) return true;
  return false;
}

class KprobeReader {
 public:
  KprobeReader(Kernel& kernel, const IntegrityOptions& options)
      : kernel_(kernel), options_(options) {}

  Result<Reading> read() {
    const ObjectContext ctx = fresh_reading(kernel_);
    NFM_ASSIGN(CodeOwners owners, CodeOwners::read(kernel_, ctx, options_.max_modules));
    owners_ = owners;
    NFM_ASSIGN(uint64_t table, kernel_.symbol("kprobe_table"));
    NFM_ASSIGN(TypeRef head_type, kernel_.types().find_struct("hlist_head"));
    NFM_ASSIGN(uint64_t head_size, kernel_.types().size_of(head_type));
    Reading r;
    NFM_ASSIGN(r.buckets, bucket_count(kernel_, ctx, table, head_size));
    NFM_ASSIGN(Field next_field, kernel_.types().member("kprobe", "hlist.next"));
    const uint64_t next_offset = next_field.offset;
    size_t budget = kMaxProbes;
    for (uint64_t i = 0; i < r.buckets && r.problem.empty(); ++i) {
      Object head(ctx, table + i * head_size, head_type);
      std::vector<Object> hashed;
      // Each node's pprev points back at the link that led to it: a chain that does
      // not is torn, or not a kprobe chain at all.
      uint64_t link = head.address();
      bool linked = true;
      NFM_ASSIGN(WalkResult w,
                 for_each_hlist_entry(head, "kprobe", "hlist", budget, [&](const Object& p) {
                   auto pprev = p.member("hlist.pprev");
                   auto back = pprev ? pprev->as_pointer() : Result<uint64_t>(0);
                   linked = back && *back == link;
                   if (!linked) return false;
                   link = p.address() + next_offset;
                   hashed.push_back(p);
                   return true;
                 }));
      budget -= std::min(budget, w.nodes);
      if (!w.ok() || !linked)
        r.problem = fmt::format("kprobe_table[{}] walk ended {}", i,
                                linked ? walk_end_name(w.end) : "torn");
      for (const Object& p : hashed) {
        probe(ctx, p, r);
        // An aggregate's children: the probes registered on its address.
        auto list = p.member("list");
        if (!list) continue;
        NFM_ASSIGN(WalkResult children,
                   for_each_entry(*list, "kprobe", "list", budget, [&](const Object& child) {
                     probe(ctx, child, r);
                     return true;
                   }));
        budget -= std::min(budget, children.nodes);
        if (!children.ok() && r.problem.empty())
          r.problem =
              fmt::format("aggregate kprobe's list walk ended {}", walk_end_name(children.end));
      }
    }
    return r;
  }

  const CodeOwners& owners() const { return owners_; }

 private:
  // One probe's handlers, and a kretprobe's behind the kernel's pre_handler.
  void probe(const ObjectContext& ctx, const Object& p, Reading& r) {
    ++r.probes;
    Probe found{.kprobe = p.address()};
    if (auto addr = p.member("addr"))
      if (auto a = addr->as_pointer()) found.address = *a;
    auto check = [&](const Object& o, const char* member, const char* label) -> uint64_t {
      auto field = o.member(member);
      if (!field) return 0;  // not in this kernel's struct
      auto target = field->as_pointer();
      if (!target || *target == 0) return 0;
      const std::string owner = owners_.owner_of(*target);
      if (owner != CodeOwners::kKernel) found.foreign.push_back({label, *target, owner});
      return *target;
    };
    const uint64_t pre = check(p, "pre_handler", "pre_handler");
    check(p, "post_handler", "post_handler");
    check(p, "fault_handler", "fault_handler");  // before 5.14
    if (owners_.owner_of(pre) == CodeOwners::kKernel)
      if (auto s = kernel_.symbols().nearest(pre);
          s && s->offset == 0 && s->symbol.name == "pre_handler_kretprobe")
        if (auto rp = container_of(ctx, p.address(), "kretprobe", "kp")) {
          check(*rp, "handler", "kretprobe.handler");
          check(*rp, "entry_handler", "kretprobe.entry_handler");
        }
    if (found.foreign.empty())
      ++r.kernel_owned;
    else
      r.foreign[p.address()] = std::move(found);
  }

  Kernel& kernel_;
  const IntegrityOptions& options_;
  CodeOwners owners_;
};

}  // namespace

Result<CheckOutcome> check_kprobes(Kernel& kernel, const IntegrityOptions& options,
                                   std::vector<IntegrityFinding>& findings) {
  KprobeReader reader(kernel, options);
  auto settled = [&]() -> Result<Reading> {
    NFM_ASSIGN(Reading r, reader.read());
    for (int again = 1; !r.problem.empty() && again < kReadings; ++again) {
      NFM_ASSIGN(r, reader.read());
    }
    return r;
  };
  NFM_ASSIGN(Reading first, settled());
  CheckOutcome outcome;
  outcome.detail =
      fmt::format("kprobe_table of {} buckets: {} probes, {} with the kernel's handlers",
                  first.buckets, first.probes, first.kernel_owned);
  if (!first.problem.empty()) {
    outcome.inconclusive = true;
    outcome.detail = "could not read every kprobe: " + first.problem;
  }
  if (first.foreign.empty()) return outcome;
  // Reported when a second reading finds the same probe with the same handlers: a
  // probe unregistered (and its memory reused) between them is not.
  NFM_ASSIGN(Reading second, settled());
  const CodeOwners& owners = reader.owners();
  for (const auto& [address, probe] : first.foreign) {
    auto it = second.foreign.find(address);
    if (it == second.foreign.end() || it->second.address != probe.address) continue;
    const Probe& p = it->second;
    bool same = p.foreign.size() == probe.foreign.size();
    for (size_t i = 0; same && i < p.foreign.size(); ++i)
      same = p.foreign[i].address == probe.foreign[i].address;
    if (!same) continue;
    const auto at = kernel.symbols().nearest(p.address);
    const std::string owner_at = owners.owner_of(p.address);
    const std::string function = owner_at == CodeOwners::kKernel && at
                                     ? std::string(at->symbol.name)
                                     : function_name(kernel, owners, p.address);
    std::string module;
    schema::json handlers = schema::json::array();
    std::string handler_text;
    for (const Handler& h : p.foreign) {
      const std::string name = function_name(kernel, owners, h.address);
      if (module.empty()) module = h.owner;
      handlers.push_back({{"member", h.member},
                          {"address", schema::hex_address(h.address)},
                          {"points_to", name},
                          {"module", h.owner}});
      if (handler_text.empty())
        handler_text =
            fmt::format("{} {} in {}", h.member, name,
                        h.owner.empty() ? "memory no listed module owns" : "module " + h.owner);
    }
    findings.push_back(IntegrityFinding{
        .kind = "kprobe",
        .severity = sensitive(function) ? "critical" : "warning",
        .summary = fmt::format("kprobe on {}: {}", function, handler_text),
        .evidence = {{"address", schema::hex_address(p.address)},
                     {"function", function},
                     {"offset", at && owner_at == CodeOwners::kKernel ? at->offset : 0},
                     {"kprobe", schema::hex_address(address)},
                     {"handlers", handlers},
                     {"module", module}},
    });
  }
  if (!second.problem.empty()) {
    outcome.inconclusive = true;
    outcome.detail = "could not read every kprobe: " + second.problem;
  }
  return outcome;
}

}  // namespace nfm
