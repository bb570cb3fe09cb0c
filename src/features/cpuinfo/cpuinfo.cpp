#include "features/cpuinfo/cpuinfo.h"

#include <algorithm>

#include "kernel/object.h"

namespace nfm {

std::vector<std::string> decode_flags(const std::vector<uint32_t>& words,
                                      const std::vector<std::string>& names) {
  std::vector<std::string> flags;
  for (size_t bit = 0; bit < names.size() && bit / 32 < words.size(); ++bit)
    if ((words[bit / 32] >> (bit % 32) & 1) && !names[bit].empty()) flags.push_back(names[bit]);
  return flags;
}

namespace {

constexpr size_t kFlagNameMax = 64;

// x86_cap_flags[NCAPINTS * 32] (generated arch/x86/kernel/cpu/capflags.c) is a
// table of string pointers, NULL for unnamed bits. NCAPINTS is a macro, not in
// BTF: the table ends where the next symbol begins (arrays of pointers need no
// more than 8-byte padding before a 32-byte-aligned neighbour, so floor() of
// the gap in 32-pointer words is exact), capped by x86_capability's length.
Result<std::vector<std::string>> flag_names(Kernel& kernel, uint64_t max_words) {
  NFM_ASSIGN(uint64_t table, kernel.symbol("x86_cap_flags"));
  uint64_t words = max_words;
  if (auto next = kernel.symbols().next_after(table))
    words = std::min<uint64_t>(words, (next->address - table) / (32 * 8));
  if (words == 0)
    return make_error(Errc::mismatch, "x86_cap_flags has no room before the next symbol");
  std::vector<uint64_t> pointers(words * 32);
  NFM_TRY(kernel.read(table, pointers.data(), pointers.size() * 8));
  std::vector<std::string> names(pointers.size());
  for (size_t i = 0; i < pointers.size(); ++i) {
    if (!pointers[i]) continue;
    NFM_ASSIGN(names[i], kernel.read_string(pointers[i], kFlagNameMax));
  }
  return names;
}

Result<uint64_t> unsigned_member(const Object& o, const char* path) {
  NFM_ASSIGN(Object m, o.member(path));
  return m.as_unsigned();
}

}  // namespace

Result<std::vector<CpuRow>> read_cpuinfo(Kernel& kernel) {
  ObjectContext ctx = object_context(kernel);
  const Types& t = kernel.types();
  // cpu_data(cpu) is the per-cpu cpu_info (SMP kernels).
  NFM_ASSIGN(uint64_t cpu_info, kernel.symbol("cpu_info"));
  NFM_ASSIGN(TypeRef type, t.find_struct("cpuinfo_x86"));
  NFM_ASSIGN(Field caps, t.member("cpuinfo_x86", "x86_capability"));
  NFM_ASSIGN(ArrayInfo caps_array, t.array(caps.type));
  NFM_ASSIGN(std::vector<std::string> names, flag_names(kernel, caps_array.count));
  // 6.10 ("x86/cpu: Add a new VFM macro" series) overlays x86/x86_model/x86_vendor with x86_vfm in
  // an anonymous union: the member names still resolve. x86_stepping was x86_mask before 4.16.
  const char* stepping = t.has_member(type, "x86_stepping") ? "x86_stepping" : "x86_mask";
  NFM_ASSIGN(uint64_t cpu_khz_address, kernel.symbol("cpu_khz"));
  NFM_ASSIGN(uint32_t cpu_khz, kernel.read_value<uint32_t>(cpu_khz_address));

  std::vector<CpuRow> rows;
  for (uint64_t offset : kernel.percpu_offsets()) {
    const Object c(ctx, cpu_info + offset, type);
    CpuRow row;
    NFM_ASSIGN(uint64_t index, unsigned_member(c, "cpu_index"));
    row.processor = static_cast<uint32_t>(index);
    NFM_ASSIGN(Object vendor, c.member("x86_vendor_id"));
    NFM_ASSIGN(row.vendor, vendor.as_string());
    if (row.vendor.empty()) row.vendor = "unknown";
    NFM_ASSIGN(uint64_t family, unsigned_member(c, "x86"));
    NFM_ASSIGN(uint64_t model, unsigned_member(c, "x86_model"));
    NFM_ASSIGN(uint64_t step, unsigned_member(c, stepping));
    row.family = static_cast<uint32_t>(family);
    row.model = static_cast<uint32_t>(model);
    row.stepping = static_cast<uint32_t>(step);
    NFM_ASSIGN(Object model_id, c.member("x86_model_id"));
    NFM_ASSIGN(row.model_name, model_id.as_string());
    if (row.model_name.empty()) row.model_name = "unknown";
    row.khz = cpu_khz;
    // x86_cache_size: unsigned since 4.16, 0 = unknown (/proc then omits the line).
    NFM_ASSIGN(Object cache, c.member("x86_cache_size"));
    NFM_ASSIGN(int64_t cache_kb, cache.as_signed());
    row.cache_kb = cache_kb > 0 ? cache_kb : -1;
    std::vector<uint32_t> words(caps_array.count);
    NFM_TRY(kernel.read(c.address() + caps.offset, words.data(), words.size() * 4));
    row.flags = decode_flags(words, names);
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(),
            [](const CpuRow& a, const CpuRow& b) { return a.processor < b.processor; });
  return rows;
}

}  // namespace nfm
