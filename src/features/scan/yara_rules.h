// YARA rules and a scanner over memory blocks, through libyara. Rules come from
// .yar/.yara sources (a file or every such file of a directory, compiled once and
// kept compiled in a cache by content) or from a file compiled by `yarac`.
// Nothing here knows guests: a block is an address and its bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "util/result.h"

struct YR_RULES;

namespace nfm {

class YaraRules {
 public:
  // `path`: a rule source file, a directory of them (*.yar, *.yara; each file its own
  // namespace) or a compiled rules file. `cache_dir`: where compiled sources are kept,
  // by the hash of their text ("" = no cache). Errors: invalid_argument with YARA's
  // own message, file and line for rules that do not compile; not_found; io.
  static Result<std::shared_ptr<const YaraRules>> load(const std::string& path,
                                                       const std::string& cache_dir);
  ~YaraRules();
  YaraRules(const YaraRules&) = delete;
  YaraRules& operator=(const YaraRules&) = delete;

  YR_RULES* get() const { return rules_; }
  size_t rule_count() const { return rule_count_; }
  // "3 files, 52 rules (compiled, cached)": for summaries.
  const std::string& description() const { return description_; }

 private:
  YaraRules() = default;
  YR_RULES* rules_ = nullptr;
  size_t rule_count_ = 0;
  std::string description_;
};

// One matching string of a rule (or the rule alone when its condition needs no
// string: `address` is then unset).
struct YaraMatch {
  std::string rule;
  std::string rule_namespace;
  std::vector<std::string> tags;
  std::map<std::string, std::string> meta;  // values as text
  std::string string_id;                    // "$a", "" for a string-less rule
  std::optional<uint64_t> address;          // block base + offset
  uint32_t length = 0;
};

// A run of bytes to scan, at `base` (a virtual address: matches are reported there).
struct YaraBlock {
  uint64_t base = 0;
  uint64_t size = 0;
};

class YaraScanner {
 public:
  static constexpr size_t kMaxMatches = 10000;  // per scan(): a guest can plant millions

  explicit YaraScanner(std::shared_ptr<const YaraRules> rules);
  ~YaraScanner();
  YaraScanner(const YaraScanner&) = delete;
  YaraScanner& operator=(const YaraScanner&) = delete;

  // Scans `blocks` as one object (a rule's condition sees all of them, as `yara
  // -p PID` sees a process); each block is matched alone, so a string found must lie
  // inside one block. `fetch(i)` gives block i's bytes, valid until the next call,
  // or nullptr to skip it. Matches beyond kMaxMatches are counted in `dropped`.
  Result<std::vector<YaraMatch>> scan(std::span<const YaraBlock> blocks,
                                      const std::function<const uint8_t*(size_t)>& fetch,
                                      uint64_t* dropped = nullptr);

  struct Impl;  // public only for libyara's C callbacks

 private:
  std::shared_ptr<const YaraRules> rules_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nfm
