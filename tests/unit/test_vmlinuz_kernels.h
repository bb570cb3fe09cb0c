// Real Debian kernels for the kernel-image tests (vmlinuz, BTF, kallsyms).
//
// Looked up in $NFM_TEST_KERNELS_DIR/<release>/vmlinuz, else in the cache that
// testing/guest/fetch-kernel.sh fills ($NFM_CACHE_DIR or ~/.cache/nfm, then
// kernels/<release>/vmlinuz). Tests GTEST_SKIP with the searched path when none is there.
// Extraction (xz of ~60 MiB takes ~1 s) is done once per kernel per test program.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernel/profile/vmlinuz.h"

namespace nfm::testing {

inline std::filesystem::path kernels_dir() {
  if (const char* d = std::getenv("NFM_TEST_KERNELS_DIR"); d && *d) return d;
  if (const char* c = std::getenv("NFM_CACHE_DIR"); c && *c)
    return std::filesystem::path(c) / "kernels";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : "/root") / ".cache/nfm/kernels";
}

// Releases (directory names) that hold a vmlinuz, sorted.
inline std::vector<std::string> available_kernels() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(kernels_dir(), ec)) {
    if (e.is_directory() && std::filesystem::exists(e.path() / "vmlinuz")) {
      out.push_back(e.path().filename().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// "6.12.118+deb13-amd64" -> 612 ; "5.10.0-46-amd64" -> 510.
inline int release_version(const std::string& release) {
  int major = 0, minor = 0;
  std::sscanf(release.c_str(), "%d.%d", &major, &minor);
  return major * 100 + minor;
}

struct KernelImage {
  std::string release;
  std::vector<uint8_t> vmlinux;
  ElfImage elf;
};

// The extracted vmlinux of `release`, shared across tests; nullptr (with the
// reason in *why) when it cannot be had.
inline std::shared_ptr<const KernelImage> load_kernel(const std::string& release,
                                                      std::string* why) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const KernelImage>> cache;
  std::lock_guard lock(mu);
  if (auto it = cache.find(release); it != cache.end()) return it->second;
  auto path = kernels_dir() / release / "vmlinuz";
  auto bytes = extract_vmlinux_file(path.string());
  if (!bytes) {
    *why = bytes.error().to_string();
    return nullptr;
  }
  auto k = std::make_shared<KernelImage>();
  k->release = release;
  k->vmlinux = std::move(bytes).value();
  auto elf = ElfImage::parse(k->vmlinux);
  if (!elf) {
    *why = elf.error().to_string();
    return nullptr;
  }
  k->elf = std::move(elf).value();
  cache[release] = k;
  return k;
}

// For TEST_P over releases: a parameter list that is never empty (gtest needs one),
// "none" meaning "no kernels found".
inline std::vector<std::string> kernel_params() {
  auto k = available_kernels();
  if (k.empty()) k.push_back("none");
  return k;
}

inline std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

}  // namespace nfm::testing

// Inside a TEST_P body: binds `kernel` (shared_ptr<const KernelImage>) or skips.
#define NFM_LOAD_KERNEL_OR_SKIP(kernel)                                                     \
  if (GetParam() == "none") {                                                               \
    GTEST_SKIP() << "no kernels in " << ::nfm::testing::kernels_dir()                       \
                 << " (set NFM_TEST_KERNELS_DIR or run testing/guest/fetch-kernel.sh 6.1)"; \
  }                                                                                         \
  std::string kernel##_why;                                                                 \
  auto kernel = ::nfm::testing::load_kernel(GetParam(), &kernel##_why);                     \
  ASSERT_TRUE(kernel) << kernel##_why
