#include "features/scan/yara_rules.h"

#include <fmt/format.h>
#include <unistd.h>
#include <xxhash.h>
#include <yara.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "util/shared_library.h"

namespace nfm {

// libyara is loaded on first use: it brings libcrypto and libmagic, which every other
// command would pay for at start (src/util/shared_library.h).
#define NFM_YARA_FUNCTIONS(X)                                                        \
  X(yr_initialize)                                                                   \
  X(yr_compiler_create)                                                              \
  X(yr_compiler_destroy) X(yr_compiler_set_callback) X(yr_compiler_add_file)         \
      X(yr_compiler_get_rules) X(yr_rules_destroy) X(yr_rules_save) X(yr_rules_load) \
          X(yr_scanner_create) X(yr_scanner_destroy) X(yr_scanner_set_callback)      \
              X(yr_scanner_set_flags) X(yr_scanner_scan_mem_blocks)
NFM_LIBRARY_API(YaraApi, NFM_YARA_FUNCTIONS);

namespace {

Result<const YaraApi*> yara() {
  static std::once_flag once;
  static Result<YaraApi> api = make_error(Errc::unsupported, "libyara not loaded");
  std::call_once(once, [] {
    auto lib = SharedLibrary::open("libyara.so.9");
    if (!lib) {
      api =
          make_error(Errc::unsupported, "nfm scan needs libyara (Debian: apt install libyara9): " +
                                            lib.error().message);
      return;
    }
    api = YaraApi::bind(*lib);
    if (api && api->yr_initialize() != ERROR_SUCCESS)
      api = make_error(Errc::io, "libyara failed to initialize");
  });
  if (!api) return api.error();
  return &*api;
}

constexpr uint32_t kCompiledMagic = 0x41524159;  // "YARA": yarac's files start with it

bool is_compiled_rules(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint32_t magic = 0;
  return in.read(reinterpret_cast<char*>(&magic), sizeof magic) && magic == kCompiledMagic;
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::not_found, "cannot read rules file " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The rule sources of `path`: the file itself, or the directory's *.yar and *.yara
// files in name order.
Result<std::vector<std::string>> source_files(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return make_error(Errc::not_found, "no such rules file or directory: " + path);
  if (!std::filesystem::is_directory(path, ec)) return std::vector<std::string>{path};
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
    const std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".yar" || ext == ".yara")) files.push_back(e.path());
  }
  if (ec) return make_error(Errc::io, fmt::format("cannot list {}: {}", path, ec.message()));
  if (files.empty()) return make_error(Errc::not_found, "no *.yar or *.yara file in " + path);
  std::sort(files.begin(), files.end());
  return files;
}

size_t count_rules(YR_RULES* rules) {
  size_t n = 0;
  const YR_RULE* rule;
  yr_rules_foreach(rules, rule) {
    ++n;
  }
  return n;
}

}  // namespace

YaraRules::~YaraRules() {
  if (rules_) {
    if (auto api = yara()) (*api)->yr_rules_destroy(rules_);
  }
}

Result<std::shared_ptr<const YaraRules>> YaraRules::load(const std::string& path,
                                                         const std::string& cache_dir) {
  NFM_ASSIGN(const YaraApi* api, yara());
  auto out = std::shared_ptr<YaraRules>(new YaraRules());
  NFM_ASSIGN(std::vector<std::string> files, source_files(path));
  if (files.size() == 1 && is_compiled_rules(files[0])) {
    if (api->yr_rules_load(files[0].c_str(), &out->rules_) != ERROR_SUCCESS)
      return make_error(Errc::bad_format,
                        files[0] + ": not a compiled rules file of this libyara (4.2)");
    out->rule_count_ = count_rules(out->rules_);
    out->description_ = fmt::format("{} rules (compiled file)", out->rule_count_);
    return std::shared_ptr<const YaraRules>(std::move(out));
  }
  // The cache key: every file's name and text, and the library's ABI.
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  std::vector<std::string> texts;
  for (const std::string& f : files) {
    NFM_ASSIGN(std::string text, read_text(f));
    XXH3_128bits_update(state, f.data(), f.size() + 1);
    XXH3_128bits_update(state, text.data(), text.size());
    texts.push_back(std::move(text));
  }
  XXH3_128bits_update(state, "libyara.so.9", 12);
  const XXH128_hash_t h = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  const std::string cached =
      cache_dir.empty() ? "" : fmt::format("{}/{:016x}{:016x}.yarc", cache_dir, h.high64, h.low64);
  if (!cached.empty() && access(cached.c_str(), R_OK) == 0 &&
      api->yr_rules_load(cached.c_str(), &out->rules_) == ERROR_SUCCESS) {
    out->rule_count_ = count_rules(out->rules_);
    out->description_ = fmt::format("{} rules from {} file{} (cached)", out->rule_count_,
                                    files.size(), files.size() == 1 ? "" : "s");
    return std::shared_ptr<const YaraRules>(std::move(out));
  }

  YR_COMPILER* compiler = nullptr;
  if (api->yr_compiler_create(&compiler) != ERROR_SUCCESS)
    return make_error(Errc::io, "libyara could not create a compiler");
  std::vector<std::string> errors;
  api->yr_compiler_set_callback(
      compiler,
      [](int level, const char* file, int line, const YR_RULE*, const char* message, void* user) {
        if (level != YARA_ERROR_LEVEL_ERROR) return;  // warnings do not stop a scan
        static_cast<std::vector<std::string>*>(user)->push_back(
            fmt::format("{}:{}: {}", file ? file : "?", line, message));
      },
      &errors);
  for (size_t i = 0; i < files.size() && errors.empty(); ++i) {
    FILE* f = fopen(files[i].c_str(), "r");
    if (!f) {
      api->yr_compiler_destroy(compiler);
      return make_error(Errc::not_found, "cannot read rules file " + files[i]);
    }
    // Each file its own namespace (its stem), as yara does with several files: two
    // sets may both name a rule "suspicious".
    const std::string ns =
        files.size() == 1 ? "default" : std::filesystem::path(files[i]).stem().string();
    api->yr_compiler_add_file(compiler, f, ns.c_str(), files[i].c_str());
    fclose(f);
  }
  if (!errors.empty()) {
    api->yr_compiler_destroy(compiler);
    std::string message = "rules do not compile: " + errors[0];
    for (size_t i = 1; i < errors.size() && i < 10; ++i) message += "\n" + errors[i];
    return make_error(Errc::invalid_argument, message);
  }
  const int got = api->yr_compiler_get_rules(compiler, &out->rules_);
  api->yr_compiler_destroy(compiler);
  if (got != ERROR_SUCCESS) return make_error(Errc::io, "libyara could not build the rules");
  out->rule_count_ = count_rules(out->rules_);
  out->description_ = fmt::format("{} rules from {} file{}", out->rule_count_, files.size(),
                                  files.size() == 1 ? "" : "s");
  if (!cached.empty()) {
    // Written aside and renamed: a reader never sees half a file. A cache that cannot
    // be written only costs the next run a compile.
    std::error_code ec;
    std::filesystem::create_directories(cache_dir, ec);
    const std::string tmp = fmt::format("{}.{}.tmp", cached, getpid());
    if (api->yr_rules_save(out->rules_, tmp.c_str()) == ERROR_SUCCESS)
      std::filesystem::rename(tmp, cached, ec);
    std::filesystem::remove(tmp, ec);
  }
  return std::shared_ptr<const YaraRules>(std::move(out));
}

struct YaraScanner::Impl {
  const YaraApi* api = nullptr;
  YR_SCANNER* scanner = nullptr;
  // One scan's state, for the iterator and the callback.
  std::span<const YaraBlock> blocks;
  const std::function<const uint8_t*(size_t)>* fetch = nullptr;
  size_t index = 0;
  YR_MEMORY_BLOCK current{};
  std::vector<YaraMatch> matches;
  uint64_t dropped = 0;
};

YaraScanner::YaraScanner(std::shared_ptr<const YaraRules> rules)
    : rules_(std::move(rules)), impl_(std::make_unique<Impl>()) {
  auto api = yara();
  if (!api) return;  // load() succeeded for rules_, so libyara is there
  impl_->api = *api;
  if (impl_->api->yr_scanner_create(rules_->get(), &impl_->scanner) != ERROR_SUCCESS)
    impl_->scanner = nullptr;
}

YaraScanner::~YaraScanner() {
  if (impl_->scanner) impl_->api->yr_scanner_destroy(impl_->scanner);
}

namespace {

YR_MEMORY_BLOCK* block_at(YR_MEMORY_BLOCK_ITERATOR* it, size_t i) {
  auto* impl = static_cast<YaraScanner::Impl*>(it->context);
  it->last_error = ERROR_SUCCESS;
  if (i >= impl->blocks.size()) return nullptr;
  impl->index = i;
  impl->current.base = impl->blocks[i].base;
  impl->current.size = impl->blocks[i].size;
  impl->current.context = impl;
  impl->current.fetch_data = [](YR_MEMORY_BLOCK* b) -> const uint8_t* {
    auto* impl = static_cast<YaraScanner::Impl*>(b->context);
    return (*impl->fetch)(impl->index);
  };
  return &impl->current;
}

__attribute__((no_sanitize("alignment"))) std::string meta_text(const YR_META* m) {
  switch (m->type) {
    case META_TYPE_INTEGER:
      return std::to_string(m->integer);
    case META_TYPE_BOOLEAN:
      return m->integer ? "true" : "false";
    default:
      return m->string ? m->string : "";
  }
}

// libyara's callback: each matching rule's strings and where they matched. libyara
// keeps its match records packed in an arena, not aligned to their type: UBSan's
// alignment check would stop at the first one (x86 loads them fine).
__attribute__((no_sanitize("alignment"))) int on_rule(YR_SCAN_CONTEXT* ctx, int message, void* data,
                                                      void* user) {
  auto* impl = static_cast<YaraScanner::Impl*>(user);
  if (message != CALLBACK_MSG_RULE_MATCHING) return CALLBACK_CONTINUE;
  const auto* rule = static_cast<const YR_RULE*>(data);
  YaraMatch base;
  base.rule = rule->identifier;
  base.rule_namespace = rule->ns && rule->ns->name ? rule->ns->name : "";
  const char* tag;
  yr_rule_tags_foreach(rule, tag) base.tags.emplace_back(tag);
  const YR_META* meta;
  yr_rule_metas_foreach(rule, meta) base.meta[meta->identifier] = meta_text(meta);
  bool any = false;
  const YR_STRING* string;
  yr_rule_strings_foreach(rule, string) {
    const YR_MATCH* match;
    yr_string_matches_foreach(ctx, string, match) {
      any = true;
      if (impl->matches.size() >= YaraScanner::kMaxMatches) {
        ++impl->dropped;
        continue;
      }
      YaraMatch m = base;
      m.string_id = string->identifier;
      m.address = static_cast<uint64_t>(match->base + match->offset);
      m.length = static_cast<uint32_t>(match->match_length);
      impl->matches.push_back(std::move(m));
    }
  }
  if (!any) {
    if (impl->matches.size() < YaraScanner::kMaxMatches)
      impl->matches.push_back(std::move(base));
    else
      ++impl->dropped;
  }
  return CALLBACK_CONTINUE;
}

}  // namespace

Result<std::vector<YaraMatch>> YaraScanner::scan(std::span<const YaraBlock> blocks,
                                                 const std::function<const uint8_t*(size_t)>& fetch,
                                                 uint64_t* dropped) {
  Impl& impl = *impl_;
  if (!impl.scanner) return make_error(Errc::io, "libyara could not create a scanner");
  impl.blocks = blocks;
  impl.fetch = &fetch;
  impl.matches.clear();
  impl.dropped = 0;
  YR_MEMORY_BLOCK_ITERATOR it{};
  it.context = &impl;
  it.first = [](YR_MEMORY_BLOCK_ITERATOR* i) { return block_at(i, 0); };
  it.next = [](YR_MEMORY_BLOCK_ITERATOR* i) {
    return block_at(i, static_cast<Impl*>(i->context)->index + 1);
  };
  // Our blocks are copies in our own buffers: YARA need not catch faults (its
  // SIGSEGV/SIGBUS handlers would stand in for ours).
  impl.api->yr_scanner_set_flags(impl.scanner, SCAN_FLAGS_PROCESS_MEMORY | SCAN_FLAGS_NO_TRYCATCH);
  impl.api->yr_scanner_set_callback(impl.scanner, on_rule, &impl);
  const int r = impl.api->yr_scanner_scan_mem_blocks(impl.scanner, &it);
  if (dropped) *dropped += impl.dropped;
  if (r != ERROR_SUCCESS && r != ERROR_TOO_MANY_MATCHES)
    return make_error(Errc::io, fmt::format("libyara scan failed (error {})", r));
  return std::move(impl.matches);
}

}  // namespace nfm
