#include "kernel/profile/profile_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "memory/mapped_file.h"
#include "util/cache_dir.h"

namespace nfm {

namespace {

constexpr char kMagic[8] = {'N', 'F', 'M', 'P', 'R', 'O', 'F', '\n'};
constexpr uint32_t kVersion = 4;  // 3: the guest content hash; 4: minus relative_base
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8 + 8;  // magic, version, reserved, size, checksum

// Names files: kept from format 1 so an old file is found, reported and replaced.
uint64_t fnv1a(std::span<const uint8_t> bytes, uint64_t h = 0xcbf29ce484222325ULL) {
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t checksum(std::span<const uint8_t> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}
void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}
// Header and payload are 8-byte multiples, so a mapped file keeps arrays aligned.
void align(std::vector<uint8_t>& out) {
  out.resize((out.size() + 7) & ~size_t{7}, 0);
}
// A counted array, then padding.
template <typename T>
void put_array(std::vector<uint8_t>& out, std::span<const T> items) {
  put<uint64_t>(out, items.size());
  const auto* p = reinterpret_cast<const uint8_t*>(items.data());
  out.insert(out.end(), p, p + items.size_bytes());
  align(out);
}

// A bounds-checked reader over the payload.
struct Reader {
  std::span<const uint8_t> in;
  size_t pos = 0;
  bool ok = true;
  template <typename T>
  T get() {
    T v{};
    if (pos + sizeof v > in.size()) {
      ok = false;
      return v;
    }
    std::memcpy(&v, in.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
  std::string_view bytes(size_t n) {
    if (n > in.size() - pos) {
      ok = false;
      return {};
    }
    std::string_view s(reinterpret_cast<const char*>(in.data() + pos), n);
    pos += n;
    return s;
  }
  std::string string() { return std::string(bytes(get<uint32_t>())); }
  void align() { pos = std::min(in.size(), (pos + 7) & ~size_t{7}); }
  // A counted array written by put_array, viewed in place.
  template <typename T>
  std::span<const T> array() {
    const uint64_t n = get<uint64_t>();
    if (!ok || n > (in.size() - pos) / sizeof(T) ||
        reinterpret_cast<uintptr_t>(in.data() + pos) % alignof(T) != 0) {
      ok = false;
      return {};
    }
    std::span<const T> out(reinterpret_cast<const T*>(in.data() + pos), n);
    pos += n * sizeof(T);
    align();
    return out;
  }
};

std::mutex registry_mu;
std::map<std::string, std::shared_ptr<const CompiledProfile>>& registry() {
  static std::map<std::string, std::shared_ptr<const CompiledProfile>> r;
  return r;
}

Error cache_error(const std::string& what) {
  return make_error(Errc::bad_format, "profile cache: " + what);
}

}  // namespace

std::string profile_key(const std::string& release, const std::string& build_id,
                        const std::string& source) {
  std::string safe;
  for (char c : release)
    safe.push_back(
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ? c : '_');
  const std::string id = release + '\n' + build_id + '\n' + source;
  const uint64_t h = fnv1a(std::span(reinterpret_cast<const uint8_t*>(id.data()), id.size()));
  return fmt::format("{}-{:016x}", safe.substr(0, 64), h);
}

std::string profile_cache_dir() {
  if (const char* d = std::getenv("NFM_PROFILE_CACHE_DIR"); d && *d) return d;
  return cache_dir("profiles");
}

Result<std::vector<uint8_t>> serialize_profile(const CompiledProfile& p) {
  if (!p.types) return cache_error("the profile has no types");
  const std::span<const uint8_t> btf = p.types->bytes();
  std::vector<uint8_t> payload;
  for (const std::string* s :
       {&p.key, &p.release, &p.banner, &p.build_id, &p.symbols_source, &p.types_source})
    put_string(payload, *s);
  align(payload);
  put<uint64_t>(payload, p.content.hash);
  put<int64_t>(payload, p.content.kallsyms_from_stext);
  put<uint64_t>(payload, p.content.kallsyms_size);
  put<uint64_t>(payload, p.content.kallsyms_relocated_at);
  put<uint64_t>(payload, p.content.btf ? 1 : 0);
  const SymbolTable::Storage& symbols = p.symbols.storage();
  put_array(payload, symbols.entries);
  put_array(payload, symbols.by_name);
  put_array(payload, std::span<const char>(symbols.names.data(), symbols.names.size()));
  put_array(payload, btf);
  const TypeIndex index = p.types->index();
  put_array(payload, index.composites);
  put_array(payload, index.named);
  put_array(payload, index.enumerators);

  std::vector<uint8_t> out(kMagic, kMagic + 8);
  put<uint32_t>(out, kVersion);
  put<uint32_t>(out, 0);
  put<uint64_t>(out, payload.size());
  put<uint64_t>(out, checksum(payload));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Result<std::shared_ptr<const CompiledProfile>> deserialize_profile(
    std::span<const uint8_t> bytes, std::shared_ptr<const void> owner) {
  if (!owner) {
    // Keep a copy, 8-byte aligned (the arrays are used in place).
    auto copy = std::make_shared<std::vector<uint64_t>>((bytes.size() + 7) / 8);
    if (!bytes.empty()) std::memcpy(copy->data(), bytes.data(), bytes.size());
    bytes = std::span(reinterpret_cast<const uint8_t*>(copy->data()), bytes.size());
    owner = std::move(copy);
  }
  if (bytes.size() < kHeaderSize || std::memcmp(bytes.data(), kMagic, 8) != 0)
    return cache_error("not an nfm profile (bad magic)");
  Reader h{bytes.subspan(8, kHeaderSize - 8)};
  const uint32_t version = h.get<uint32_t>();
  h.get<uint32_t>();
  const uint64_t size = h.get<uint64_t>();
  const uint64_t sum = h.get<uint64_t>();
  if (version != kVersion)
    return cache_error(fmt::format("format version {} (this nfm writes {})", version, kVersion));
  if (size != bytes.size() - kHeaderSize)
    return cache_error(fmt::format("truncated or padded: header says {} payload bytes, file has {}",
                                   size, bytes.size() - kHeaderSize));
  const auto payload = bytes.subspan(kHeaderSize);
  if (checksum(payload) != sum) return cache_error("checksum mismatch (corrupt file)");

  auto p = std::make_shared<CompiledProfile>();
  Reader r{payload};
  for (std::string* s :
       {&p->key, &p->release, &p->banner, &p->build_id, &p->symbols_source, &p->types_source})
    *s = r.string();
  r.align();
  p->content.hash = r.get<uint64_t>();
  p->content.kallsyms_from_stext = r.get<int64_t>();
  p->content.kallsyms_size = r.get<uint64_t>();
  p->content.kallsyms_relocated_at = r.get<uint64_t>();
  p->content.btf = r.get<uint64_t>() != 0;
  SymbolTable::Storage symbols;
  symbols.entries = r.array<SymbolTable::Entry>();
  symbols.by_name = r.array<uint32_t>();
  const auto names = r.array<char>();
  symbols.names = std::string_view(names.data(), names.size());
  symbols.owner = owner;
  const auto btf = r.array<uint8_t>();
  TypeIndex index;
  index.composites = r.array<TypeIndex::Named>();
  index.named = r.array<TypeIndex::Named>();
  index.enumerators = r.array<TypeIndex::Enumerator>();
  index.owner = owner;
  if (!r.ok || r.pos != payload.size()) return cache_error("inconsistent payload");
  auto table = SymbolTable::from_storage(std::move(symbols));
  if (!table) return cache_error(table.error().message);
  p->symbols = std::move(table).value();
  auto types = Types::from_checked_btf(btf, owner, index);
  if (!types) return cache_error(types.error().message);
  p->types = std::move(types).value();
  return std::shared_ptr<const CompiledProfile>(std::move(p));
}

std::string ProfileCache::path_of(const std::string& key) const {
  return dir_ + "/" + key + ".nfmprofile";
}

Result<std::shared_ptr<const CompiledProfile>> ProfileCache::load(const std::string& key) const {
  {
    std::lock_guard lock(registry_mu);
    if (auto it = registry().find(key); it != registry().end()) return it->second;
  }
  if (dir_.empty()) return make_error(Errc::not_found, "no profile cache directory");
  const std::string path = path_of(key);
  auto opened = MappedFile::open(path);
  if (!opened) return make_error(Errc::not_found, path + ": not cached");
  auto mapped = std::make_shared<MappedFile>(std::move(opened).value());
  auto p = deserialize_profile(std::span(mapped->data(), mapped->size()), mapped);
  if (!p) return Error{p.error().code, path + ": " + p.error().message};
  if ((*p)->key != key) return cache_error(path + ": holds the profile of another kernel");
  std::lock_guard lock(registry_mu);
  return registry().emplace(key, *p).first->second;
}

Result<void> ProfileCache::store(const std::shared_ptr<const CompiledProfile>& p) const {
  {
    std::lock_guard lock(registry_mu);
    registry()[p->key] = p;
  }
  if (dir_.empty()) return {};
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  const std::string path = path_of(p->key);
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  NFM_ASSIGN(const std::vector<uint8_t> bytes, serialize_profile(*p));
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return errno_error(errno, tmp);
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    return make_error(Errc::io, "cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return errno_error(err, path);
  }
  return {};
}

void ProfileCache::evict(const std::string& key) const {
  {
    std::lock_guard lock(registry_mu);
    registry().erase(key);
  }
  if (!dir_.empty()) std::remove(path_of(key).c_str());
}

namespace {

// The hints file: a line per image, "<XXH3 of its identity> <page> <content hash>"
// in hex, oldest first.
struct HintLine {
  uint64_t key;
  ProfileCache::ImageHint hint;
};

std::vector<HintLine> read_hints(const std::string& path) {
  std::vector<HintLine> out;
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return out;
  unsigned long long key = 0, pa = 0, hash = 0;  // NOLINT(google-runtime-int): fscanf's types
  while (out.size() < ProfileCache::kMaxVmcoreinfoHints &&
         std::fscanf(f, "%16llx %16llx %16llx\n", &key, &pa, &hash) == 3)
    out.push_back({key, {pa, hash}});
  std::fclose(f);
  return out;
}

uint64_t image_key(const std::string& image) {
  return XXH3_64bits(image.data(), image.size());
}

}  // namespace

std::optional<ProfileCache::ImageHint> ProfileCache::image_hint(const std::string& image) const {
  if (dir_.empty() || image.empty()) return std::nullopt;
  const uint64_t key = image_key(image);
  for (const HintLine& line : read_hints(dir_ + "/vmcoreinfo-hints"))
    if (line.key == key) return line.hint;
  return std::nullopt;
}

void ProfileCache::remember_image(const std::string& image, const ImageHint& hint) const {
  if (dir_.empty() || image.empty()) return;
  const std::string path = dir_ + "/vmcoreinfo-hints";
  const uint64_t key = image_key(image);
  std::vector<HintLine> lines = read_hints(path);
  std::erase_if(lines, [&](const HintLine& l) { return l.key == key; });
  lines.push_back({key, hint});
  if (lines.size() > kMaxVmcoreinfoHints)
    lines.erase(lines.begin(), lines.end() - static_cast<ptrdiff_t>(kMaxVmcoreinfoHints));
  std::string text;
  for (const HintLine& l : lines)
    text += fmt::format("{:016x} {:x} {:x}\n", l.key, l.hint.vmcoreinfo_pa, l.hint.content_hash);
  // Temp + rename: a reader sees the old file or the new one. Two writers: the
  // last one's wins, which loses at most a hint.
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return;
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0)
    std::remove(tmp.c_str());
}

void clear_profile_registry() {
  std::lock_guard lock(registry_mu);
  registry().clear();
}

}  // namespace nfm
