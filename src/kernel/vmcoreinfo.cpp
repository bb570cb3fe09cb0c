#include "kernel/vmcoreinfo.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <vector>

#include "memory/dump_file.h"
#include "memory/scan.h"

namespace nfm {

namespace {

constexpr size_t kMaxText = size_t{16} * 1024;  // the kernel reserves one page (VMCOREINFO_BYTES)

template <typename T>
std::optional<T> to_number(std::string_view s, int base) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// A plausible release: starts with a digit, no format specifiers.
bool plausible_release(std::string_view r) {
  return !r.empty() && r.size() < 64 && r[0] >= '0' && r[0] <= '9' && r.find('%') == r.npos;
}

}  // namespace

Result<VmcoreInfo> VmcoreInfo::parse(std::string_view text) {
  VmcoreInfo info;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == text.npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    const size_t eq = line.find('=');
    if (eq == line.npos || eq == 0) continue;
    info.entries_.emplace(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
  }
  if (!plausible_release(info.osrelease()))
    return make_error(Errc::bad_format, "VMCOREINFO text has no plausible OSRELEASE");
  if (!info.get("PAGESIZE") || !info.symbol("swapper_pg_dir"))
    return make_error(Errc::bad_format, "VMCOREINFO text lacks PAGESIZE or SYMBOL(swapper_pg_dir)");
  return info;
}

const std::string* VmcoreInfo::get(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

std::string VmcoreInfo::osrelease() const {
  const std::string* v = get("OSRELEASE");
  return v ? *v : std::string();
}

std::optional<uint64_t> VmcoreInfo::symbol(const std::string& name) const {
  const std::string* v = get("SYMBOL(" + name + ")");
  return v ? to_number<uint64_t>(*v, 16) : std::nullopt;
}

std::optional<int64_t> VmcoreInfo::number(const std::string& name) const {
  const std::string* v = get("NUMBER(" + name + ")");
  return v ? to_number<int64_t>(*v, 10) : std::nullopt;
}

std::optional<uint64_t> VmcoreInfo::offset(const std::string& member) const {
  const std::string* v = get("OFFSET(" + member + ")");
  return v ? to_number<uint64_t>(*v, 10) : std::nullopt;
}

std::optional<uint64_t> VmcoreInfo::size(const std::string& type) const {
  const std::string* v = get("SIZE(" + type + ")");
  return v ? to_number<uint64_t>(*v, 10) : std::nullopt;
}

std::optional<uint64_t> VmcoreInfo::kernel_offset() const {
  const std::string* v = get("KERNELOFFSET");
  return v ? to_number<uint64_t>(*v, 16) : std::nullopt;
}

std::optional<std::string> VmcoreInfo::build_id() const {
  const std::string* v = get("BUILD-ID");
  return v ? std::optional<std::string>(*v) : std::nullopt;
}

void for_each_vmcoreinfo(PhysicalMemory& memory, const std::function<bool(VmcoreInfo)>& visit,
                         std::optional<uint64_t> first_try) {
  // A dump that carries the text (ELF note, kdump sub-header) saves the scan.
  if (const auto* image = dynamic_cast<const MemoryImage*>(&memory);
      image && !image->vmcoreinfo().empty()) {
    if (auto parsed = VmcoreInfo::parse(image->vmcoreinfo()); parsed && !visit(*parsed)) return;
  }
  std::vector<std::map<std::string, std::string>> seen;
  bool stop = false;
  std::vector<char> text(kMaxText);
  auto try_at = [&](uint64_t pa) {
    // The text may end before kMaxText at the end of RAM: shrink until readable.
    size_t len = kMaxText;
    while (len >= 256 && !memory.read(pa, text.data(), len)) len /= 2;
    if (len < 256) return true;
    const size_t n = strnlen(text.data(), len);
    auto parsed = VmcoreInfo::parse(std::string_view(text.data(), n));
    if (!parsed) return true;  // e.g. the "OSRELEASE=%s" format string in .rodata
    // The same text twice (the kernel's page and its ELF note) is one candidate.
    if (std::find(seen.begin(), seen.end(), parsed->entries()) != seen.end()) return true;
    if (seen.size() >= kMaxVmcoreinfoCandidates) {
      stop = true;
      return false;
    }
    seen.push_back(parsed->entries());
    parsed->found_at = pa;
    stop = !visit(std::move(parsed).value());
    return !stop;
  };
  // kernel/crash_core.c keeps the text in a page of its own (vmcoreinfo_data,
  // get_zeroed_page()) and appends OSRELEASE first: probing page starts finds it
  // reading a few bytes per page. The byte-by-byte scan stays as the fallback
  // (the ELF note copy, kernels that lay it out otherwise).
  // The hinted page is an ordinary candidate, offered first; the scan that may
  // follow passes over it (the same text is one candidate).
  if (first_try && !try_at(*first_try)) return;
  scan_page_starts(memory, "OSRELEASE=", try_at);
  if (!stop && seen.empty()) scan_physical(memory, "OSRELEASE=", try_at);
}

Result<VmcoreInfo> find_vmcoreinfo(PhysicalMemory& memory,
                                   const std::function<bool(const VmcoreInfo&)>& accept) {
  std::optional<VmcoreInfo> found;
  for_each_vmcoreinfo(memory, [&](VmcoreInfo info) {
    if (accept && !accept(info)) return true;
    found = std::move(info);
    return false;
  });
  if (!found) return make_error(Errc::not_found, "no VMCOREINFO note in guest memory");
  return std::move(*found);
}

}  // namespace nfm
