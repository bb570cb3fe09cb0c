// text_modified: the running kernel's text and read-only data against its own image
// (--kernel DIR / --vmlinux FILE), relocated as the guest runs it. The kernel
// rewrites itself in known places (kernel/kernel_image.h lists them from the image's
// own tables); a byte that differs anywhere else was written by someone else: an
// inline hook, a patched check, a rewritten table. The places a hook is most useful
// (function entries, which ftrace rewrites, and jump labels) are not excused
// wholesale: they may hold only what ftrace or the jump label would write there.
#include <fmt/core.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "features/integrity/code_owners.h"
#include "features/integrity/integrity.h"
#include "kernel/kernel.h"
#include "kernel/kernel_image.h"
#include "kernel/object.h"

namespace nfm {
namespace {

constexpr size_t kChunk = size_t{64} * 1024;
constexpr size_t kMaxRuns = 256;  // reported; a guest rewriting more is summarised
constexpr int kRereads = 3;

// The 5-byte NOPs x86 kernels write at a site they disable (x86_nops / ideal_nops).
bool is_nop(std::span<const uint8_t> b) {
  static const std::vector<std::vector<uint8_t>> nops{
      {0x0f, 0x1f, 0x44, 0x00, 0x00},  // P6 5-byte
      {0x66, 0x66, 0x90, 0x66, 0x90},  // K8 5-byte
      {0x66, 0x66, 0x66, 0x66, 0x90},  // K8 5-byte, atomic (5.10's ftrace nop)
      {0x8d, 0x74, 0x26, 0x00, 0x90},  // K7 5-byte
      {0x3e, 0x8d, 0x74, 0x26, 0x00},  // generic 5-byte
  };
  return std::any_of(nops.begin(), nops.end(), [&](const std::vector<uint8_t>& n) {
    return b.size() >= n.size() && std::equal(n.begin(), n.end(), b.begin());
  });
}

// Where a jmp/call at `va` goes: e8/e9 rel32, eb rel8.
std::optional<uint64_t> branch_target(std::span<const uint8_t> b, uint64_t va) {
  if (b.size() >= 5 && (b[0] == 0xe8 || b[0] == 0xe9)) {
    int32_t rel;
    std::memcpy(&rel, b.data() + 1, 4);
    return va + 5 + static_cast<uint64_t>(int64_t{rel});
  }
  if (b.size() >= 2 && b[0] == 0xeb) return va + 2 + static_cast<uint64_t>(int64_t{int8_t(b[1])});
  return std::nullopt;
}

// What ftrace may call from a function's entry: its callers, and the trampolines
// and direct calls of the ftrace_ops it has registered.
std::set<uint64_t> ftrace_call_targets(Kernel& kernel, const ObjectContext& ctx) {
  std::set<uint64_t> targets;
  for (const char* name : {"ftrace_caller", "ftrace_regs_caller"})
    if (auto a = kernel.symbol(name)) targets.insert(*a);
  // A list that cannot be read leaves only ftrace's own callers: calls to a
  // trampoline are then reported, never excused.
  (void)for_each_ftrace_ops(kernel, ctx, [&](const Object& o) -> Result<void> {
    for (const char* field : {"trampoline", "direct_call"})
      if (auto f = o.member(field))
        if (auto v = f->as_unsigned(); v && *v) targets.insert(*v);
    return {};
  });
  return targets;
}

// The first index in [from, n) where a and b differ, or n: a word at a time, for most
// of a chunk is equal (the differences are patch sites a few bytes long).
size_t first_difference(const uint8_t* a, const uint8_t* b, size_t from, size_t n) {
  while (from + 8 <= n) {
    uint64_t x, y;
    std::memcpy(&x, a + from, 8);
    std::memcpy(&y, b + from, 8);
    if (x != y) return from + static_cast<size_t>(std::countr_zero(x ^ y) / 8);
    from += 8;
  }
  while (from < n && a[from] == b[from]) ++from;
  return from;
}

// A run of bytes that differ from the image where the kernel does not write.
struct Run {
  uint64_t va = 0;
  std::vector<uint8_t> found, expected;
};

class TextComparison {
 public:
  TextComparison(Kernel& kernel, const KernelImage& image, std::set<uint64_t> ftrace_targets)
      : kernel_(kernel), image_(image), ftrace_targets_(std::move(ftrace_targets)) {}

  // Compares one region; appends what no site explains to `runs`.
  Result<void> compare(const ImageRegion& region, std::vector<Run>& runs) {
    std::vector<uint8_t> live(kChunk);
    for (size_t off = 0; off < region.bytes.size(); off += kChunk) {
      const size_t n = std::min(kChunk, region.bytes.size() - off);
      const uint64_t chunk_va = region.va + off;
      NFM_TRY(kernel_.fresh_space().read(chunk_va, live.data(), n));
      bytes_ += n;
      const uint8_t* want = region.bytes.data() + off;
      if (std::memcmp(live.data(), want, n) == 0) continue;
      const std::span<const uint8_t> chunk(live.data(), n);
      for (size_t i = 0; (i = first_difference(live.data(), want, i, n)) < n; ++i) {
        const uint64_t va = chunk_va + i;
        if (uint64_t end = explained_until(region, chunk, chunk_va, va)) {
          // The site explains its other bytes too.
          i = static_cast<size_t>(std::min<uint64_t>(end - chunk_va, n) - 1);
          continue;
        }
        // Bytes a few apart are one change (an instruction, a patched call).
        if (!runs.empty()) {
          Run& r = runs.back();
          const uint64_t end = r.va + r.found.size();
          if (end >= chunk_va && end <= va && va - end <= 8) {
            for (uint64_t a = end; a <= va; ++a) {
              r.found.push_back(live[a - chunk_va]);
              r.expected.push_back(want[a - chunk_va]);
            }
            continue;
          }
        }
        runs.push_back({va, {live[i]}, {want[i]}});
      }
    }
    return {};
  }

  uint64_t bytes_compared() const { return bytes_; }
  size_t sites_checked() const { return checked_; }

 private:
  static constexpr uint8_t kUnknown = 0xff;

  // Where the bytes a site the kernel writes explains end (0: none covers `va` with
  // what the kernel may write there).
  uint64_t explained_until(const ImageRegion& region, std::span<const uint8_t> chunk,
                           uint64_t chunk_va, uint64_t va) {
    uint64_t end = 0;
    image_.sites.any_covering(va, [&](const PatchSite& s, size_t index) {
      if (s.kind != PatchSiteKind::ftrace && s.kind != PatchSiteKind::jump_label) {
        end = s.va + s.len;
        return true;
      }
      if (valid_.empty()) valid_.assign(image_.sites.all().size(), kUnknown);
      if (valid_[index] == kUnknown) {
        valid_[index] = static_cast<uint8_t>(valid_length(region, chunk, chunk_va, s));
        ++checked_;
      }
      if (va - s.va >= valid_[index]) return false;
      end = s.va + valid_[index];
      return true;
    });
    return end;
  }

  // How many bytes of an ftrace or jump label site hold what the kernel writes
  // there (0: something else). A jump label built as a 2-byte jump is 2 bytes long:
  // what follows is the next instruction, compared on its own.
  uint32_t valid_length(const ImageRegion& region, std::span<const uint8_t> chunk,
                        uint64_t chunk_va, const PatchSite& s) {
    uint8_t live[5];
    if (s.va < region.va || s.va + 5 > region.va + region.bytes.size()) return 0;
    if (s.va >= chunk_va && s.va + 5 <= chunk_va + chunk.size())
      std::memcpy(live, chunk.data() + (s.va - chunk_va), 5);
    else if (!kernel_.fresh_space().read(s.va, live, 5))
      return 0;
    const uint8_t* image = region.bytes.data() + (s.va - region.va);
    const bool short_site = s.kind == PatchSiteKind::jump_label &&
                            ((image[0] == 0x66 && image[1] == 0x90) || image[0] == 0xeb);
    const uint32_t len = short_site ? 2 : 5;
    if (std::equal(image, image + len, live)) return len;
    if (short_site ? live[0] == 0x66 && live[1] == 0x90 : is_nop(live)) return len;
    auto target = branch_target(std::span<const uint8_t>(live, len), s.va);
    if (!target) return 0;
    if (s.kind == PatchSiteKind::jump_label) return *target == s.target ? len : 0;
    return live[0] == 0xe8 && ftrace_targets_.count(*target) > 0 ? len : 0;
  }

  Kernel& kernel_;
  const KernelImage& image_;
  std::set<uint64_t> ftrace_targets_;
  std::vector<uint8_t> valid_;  // by site index: valid_length, or kUnknown
  size_t checked_ = 0;
  uint64_t bytes_ = 0;
};

std::string hex_bytes(const std::vector<uint8_t>& b, size_t max = 16) {
  std::string out;
  for (size_t i = 0; i < b.size() && i < max; ++i) out += fmt::format("{:02x}", b[i]);
  if (b.size() > max) out += "...";
  return out;
}

}  // namespace

Result<CheckOutcome> check_text_modified(Kernel& kernel, const IntegrityOptions& options,
                                         std::vector<IntegrityFinding>& findings) {
  auto loaded = kernel.image();
  if (!loaded && loaded.error().code == Errc::not_found)
    return CheckOutcome{.skipped = true, .detail = loaded.error().message};
  if (!loaded) return loaded.error();
  const KernelImage& image = **loaded;
  const ObjectContext ctx = fresh_reading(kernel);
  NFM_ASSIGN(CodeOwners owners, CodeOwners::read(kernel, ctx, options.max_modules));
  TextComparison comparison(kernel, image, ftrace_call_targets(kernel, ctx));
  std::vector<Run> runs;
  for (const auto* regions : {&image.text, &image.rodata})
    for (const ImageRegion& region : *regions) NFM_TRY(comparison.compare(region, runs));

  // A run must read the same again: a patch the kernel was making while we read
  // (text_poke_bp's int3 stage) settles; a change that does not is undecided.
  CheckOutcome outcome;
  size_t unsettled = 0;
  std::map<std::string, std::vector<const Run*>> by_function;
  for (const Run& r : runs) {
    std::vector<uint8_t> again(r.found.size());
    bool settled = false;
    for (int i = 0; i < kRereads && !settled; ++i) {
      kernel.forget_cached_pages();
      settled = kernel.fresh_space().read(r.va, again.data(), again.size()) && again == r.found;
    }
    if (!settled) {
      ++unsettled;
      continue;
    }
    auto n = kernel.symbols().nearest(r.va);
    by_function[n ? std::string(n->symbol.name) : schema::hex_address(r.va)].push_back(&r);
  }
  const uint64_t text_start = image.text.empty() ? 0 : image.text.front().va;
  const uint64_t text_end =
      image.text.empty() ? 0 : image.text.back().va + image.text.back().bytes.size();
  for (const auto& [function, changes] : by_function) {
    if (findings.size() >= kMaxRuns) break;
    const Run& first = *changes.front();
    auto n = kernel.symbols().nearest(first.va);
    const bool in_text = first.va >= text_start && first.va < text_end;
    size_t total = 0;
    for (const Run* r : changes) total += r->found.size();
    std::string what = fmt::format("{} bytes", total);
    schema::json evidence = {{"function", function},
                             {"address", schema::hex_address(first.va)},
                             {"offset", n ? n->offset : 0},
                             {"bytes", total},
                             {"expected", hex_bytes(first.expected)},
                             {"found", hex_bytes(first.found)},
                             {"section", in_text ? "text" : "rodata"}};
    if (auto to = branch_target(first.found, first.va); to && in_text) {
      const std::string owner = owners.owner_of(*to);
      evidence["target"] = schema::hex_address(*to);
      evidence["target_name"] = function_name(kernel, owners, *to);
      evidence["module"] = owner;
      what += fmt::format(", a {} to {} ({})", first.found[0] == 0xe8 ? "call" : "jump",
                          function_name(kernel, owners, *to),
                          owner.empty()                  ? "memory no listed module owns"
                          : owner == CodeOwners::kKernel ? "the kernel"
                                                         : "module " + owner);
    }
    findings.push_back(IntegrityFinding{
        .kind = "text_modified",
        .severity = "critical",
        .summary = fmt::format("{} of {} modified at +{:#x}: {}",
                               in_text ? "kernel text" : "read-only data", function,
                               n ? n->offset : 0, what),
        .evidence = std::move(evidence),
    });
  }
  outcome.inconclusive = unsettled > 0;
  outcome.detail = fmt::format(
      "{} MiB of text and read-only data against {}; {} patch sites known, {} checked{}",
      comparison.bytes_compared() >> 20, image.path, image.sites.all().size(),
      comparison.sites_checked(),
      unsettled ? fmt::format("; {} changes did not settle", unsettled) : "");
  return outcome;
}

}  // namespace nfm
