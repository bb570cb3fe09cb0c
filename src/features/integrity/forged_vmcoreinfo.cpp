// forged_vmcoreinfo: VMCOREINFO is what crash tools (kdump, makedumpfile, crash,
// nfm itself) believe about a kernel: where its symbols are, its struct layouts, its
// release and KASLR shift. A rootkit that edits the kernel's own copy misleads every
// dump taken of the guest; any guest process can leave look-alike copies in RAM.
// The kernel's own copy (vmcoreinfo_data) is compared key by key with what nfm
// established independently (kallsyms, BTF, the located image, init_uts_ns), and
// every copy that attaching rejected is reported.
#include <fmt/core.h>

#include <string>
#include <vector>

#include "features/integrity/integrity.h"
#include "kernel/kernel.h"
#include "kernel/object.h"
#include "kernel/vmcoreinfo.h"

namespace nfm {
namespace {

constexpr size_t kMaxVmcoreinfoBytes = 4096;  // VMCOREINFO_BYTES: one page
constexpr size_t kMaxMismatches = 32;

// "OFFSET(list_head.next)" -> "list_head", "next"; false when `key` is not `kind(...)`.
bool split_key(const std::string& key, std::string_view kind, std::string* inner) {
  if (key.size() < kind.size() + 2 || key.compare(0, kind.size(), kind) != 0 ||
      key[kind.size()] != '(' || key.back() != ')')
    return false;
  *inner = key.substr(kind.size() + 1, key.size() - kind.size() - 2);
  return true;
}

// A struct's or typedef's size from BTF.
std::optional<uint64_t> type_size(const Types& types, const std::string& name) {
  if (auto s = types.size_of(name)) return *s;
  if (auto t = types.find_type(name))
    if (auto s = types.size_of(*t)) return *s;
  return std::nullopt;
}

struct Mismatch {
  std::string key, says, truth;
};

}  // namespace

Result<CheckOutcome> check_forged_vmcoreinfo(Kernel& kernel, const IntegrityOptions&,
                                             std::vector<IntegrityFinding>& findings) {
  // Copies attaching passed over: planted by a guest process, edited, or left by a
  // kernel that ran before a reboot. None of them describes this kernel.
  size_t rejected = 0;
  for (const std::string& w : kernel.identity().warnings) {
    if (w.rfind("rejected VMCOREINFO at ", 0) != 0) continue;
    ++rejected;
    const std::string what = w.substr(std::string("rejected ").size());
    const size_t colon = what.find(':');
    findings.push_back(IntegrityFinding{
        .kind = "forged_vmcoreinfo",
        .severity = "warning",
        .summary = fmt::format("a {} does not describe the running kernel", what.substr(0, colon)),
        .evidence = {{"copy", what.substr(std::string("VMCOREINFO at ").size(),
                                          colon - std::string("VMCOREINFO at ").size())},
                     {"reason", colon == what.npos ? "" : what.substr(colon + 2)}},
    });
  }

  // The kernel's own copy, where crash_save_vmcoreinfo_init put it.
  const ObjectContext ctx = fresh_reading(kernel);
  NFM_ASSIGN(uint64_t data_var, kernel.symbol("vmcoreinfo_data"));
  NFM_ASSIGN(uint64_t size_var, kernel.symbol("vmcoreinfo_size"));
  NFM_ASSIGN(uint64_t data, ctx.space->read_value<uint64_t>(data_var));
  NFM_ASSIGN(uint64_t size, ctx.space->read_value<uint64_t>(size_var));
  if (data == 0 || size == 0 || size > kMaxVmcoreinfoBytes)
    return make_error(
        Errc::bad_format,
        fmt::format("vmcoreinfo_data {:#x} of {} bytes is not a VMCOREINFO page", data, size));
  std::string text(size, '\0');
  NFM_TRY(ctx.space->read(data, text.data(), size));
  auto info = VmcoreInfo::parse(text);
  std::vector<Mismatch> wrong;
  size_t compared = 0;
  if (!info) {
    wrong.push_back({"(text)", info.error().message, "a VMCOREINFO text"});
  } else {
    auto compare = [&](const std::string& key, const std::string& says, const std::string& truth) {
      ++compared;
      if (says != truth) wrong.push_back({key, says, truth});
    };
    auto hex = [](uint64_t v) { return fmt::format("{:x}", v); };
    std::string inner;
    for (const auto& [key, value] : info->entries()) {
      if (key == "OSRELEASE") {
        NFM_ASSIGN(Object uts, var(ctx, "init_uts_ns", "uts_namespace"));
        NFM_ASSIGN(Object release, uts.member("name.release"));
        NFM_ASSIGN(std::string truth, release.as_string(65));
        compare(key, value, truth);
      } else if (key == "KERNELOFFSET") {
        compare(key, value, hex(kernel.location().kaslr_offset));
      } else if (key == "PAGESIZE") {
        compare(key, value, "4096");
      } else if (split_key(key, "SYMBOL", &inner)) {
        // Per-CPU and absolute symbols are not in every kallsyms; what is, must agree.
        // VMCOREINFO_SYMBOL_ARRAY of a pointer (mem_section with SPARSEMEM_EXTREME)
        // records the pointer's value, not its address.
        if (auto at = kernel.symbol(inner)) {
          auto points_to = ctx.space->read_value<uint64_t>(*at);
          compare(key, value, points_to && value == hex(*points_to) ? value : hex(*at));
        }
      } else if (split_key(key, "OFFSET", &inner)) {
        const size_t dot = inner.find('.');
        if (dot == inner.npos) continue;
        if (auto f = kernel.types().member(inner.substr(0, dot), inner.substr(dot + 1)))
          compare(key, value, std::to_string(f->offset));
      } else if (split_key(key, "SIZE", &inner)) {
        if (auto s = type_size(kernel.types(), inner)) compare(key, value, std::to_string(*s));
      }
    }
  }
  if (!wrong.empty()) {
    schema::json keys = schema::json::array();
    for (size_t i = 0; i < wrong.size() && i < kMaxMismatches; ++i)
      keys.push_back({{"key", wrong[i].key}, {"says", wrong[i].says}, {"truth", wrong[i].truth}});
    findings.push_back(IntegrityFinding{
        .kind = "forged_vmcoreinfo",
        .severity = "critical",
        .summary =
            fmt::format("the kernel's own VMCOREINFO says {}={}, the kernel has {}{}", wrong[0].key,
                        wrong[0].says, wrong[0].truth,
                        wrong.size() > 1 ? fmt::format(" ({} keys differ)", wrong.size()) : ""),
        .evidence = {{"address", schema::hex_address(data)}, {"keys", std::move(keys)}},
    });
  }
  CheckOutcome outcome;
  outcome.detail =
      fmt::format("{} keys of the kernel's VMCOREINFO against kallsyms and BTF{}", compared,
                  rejected ? fmt::format("; {} copies rejected", rejected) : "");
  return outcome;
}

}  // namespace nfm
