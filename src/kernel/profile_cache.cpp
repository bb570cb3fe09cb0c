#include "kernel/profile_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "memory/mapped_file.h"

namespace nfm {

namespace {

constexpr char kMagic[8] = {'N', 'F', 'M', 'P', 'R', 'O', 'F', '\n'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8 + 8;  // magic, version, reserved, size, checksum

uint64_t fnv1a(std::span<const uint8_t> bytes, uint64_t h = 0xcbf29ce484222325ULL) {
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ULL;
  }
  return h;
}

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}
void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
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
  if (const char* d = std::getenv("NFM_CACHE_DIR"); d && *d) return std::string(d) + "/profiles";
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    return std::string(x) + "/nfm/profiles";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/nfm/profiles";
  return {};
}

std::vector<uint8_t> serialize_profile(const CompiledProfile& p) {
  std::vector<uint8_t> payload;
  for (const std::string* s :
       {&p.key, &p.release, &p.banner, &p.build_id, &p.symbols_source, &p.types_source})
    put_string(payload, *s);
  put<uint64_t>(payload, p.symbols.size());
  for (const Symbol& s : p.symbols.symbols()) {
    put<uint64_t>(payload, s.address);
    put<char>(payload, s.type);
    put<uint16_t>(payload, static_cast<uint16_t>(std::min<size_t>(s.name.size(), 0xffff)));
    payload.insert(payload.end(), s.name.begin(),
                   s.name.begin() + std::min<size_t>(s.name.size(), 0xffff));
  }
  put<uint64_t>(payload, p.btf.size());
  payload.insert(payload.end(), p.btf.begin(), p.btf.end());

  std::vector<uint8_t> out(kMagic, kMagic + 8);
  put<uint32_t>(out, kVersion);
  put<uint32_t>(out, 0);
  put<uint64_t>(out, payload.size());
  put<uint64_t>(out, fnv1a(payload));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Result<std::shared_ptr<const CompiledProfile>> deserialize_profile(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize || std::memcmp(bytes.data(), kMagic, 8) != 0)
    return cache_error("not an nfm profile (bad magic)");
  Reader h{bytes.subspan(8, kHeaderSize - 8)};
  const uint32_t version = h.get<uint32_t>();
  h.get<uint32_t>();
  const uint64_t size = h.get<uint64_t>();
  const uint64_t checksum = h.get<uint64_t>();
  if (version != kVersion)
    return cache_error(fmt::format("format version {} (this nfm writes {})", version, kVersion));
  if (size != bytes.size() - kHeaderSize)
    return cache_error(fmt::format("truncated or padded: header says {} payload bytes, file has {}",
                                   size, bytes.size() - kHeaderSize));
  const auto payload = bytes.subspan(kHeaderSize);
  if (fnv1a(payload) != checksum) return cache_error("checksum mismatch (corrupt file)");

  auto p = std::make_shared<CompiledProfile>();
  Reader r{payload};
  for (std::string* s :
       {&p->key, &p->release, &p->banner, &p->build_id, &p->symbols_source, &p->types_source})
    *s = r.string();
  const uint64_t count = r.get<uint64_t>();
  if (!r.ok || count > payload.size() / 11) return cache_error("bad symbol count");
  std::vector<Symbol> symbols;
  symbols.reserve(count);
  for (uint64_t i = 0; i < count && r.ok; ++i) {
    Symbol s;
    s.address = r.get<uint64_t>();
    s.type = r.get<char>();
    s.name = std::string(r.bytes(r.get<uint16_t>()));
    symbols.push_back(std::move(s));
  }
  const uint64_t btf_size = r.get<uint64_t>();
  std::string_view btf = r.bytes(btf_size);
  if (!r.ok || r.pos != payload.size()) return cache_error("inconsistent payload");
  p->symbols = SymbolTable(std::move(symbols));
  p->btf.assign(btf.begin(), btf.end());
  auto types = Types::from_btf_bytes(p->btf);
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
  auto mapped = MappedFile::open(path);
  if (!mapped) return make_error(Errc::not_found, path + ": not cached");
  auto p = deserialize_profile(std::span(mapped->data(), mapped->size()));
  if (!p) return Error{p.error().code, path + ": " + p.error().message};
  if ((*p)->key != key) return cache_error(path + ": holds the profile of another kernel");
  std::lock_guard lock(registry_mu);
  return registry().emplace(key, *p).first->second;
}

Result<void> ProfileCache::store(std::shared_ptr<const CompiledProfile> p) const {
  {
    std::lock_guard lock(registry_mu);
    registry()[p->key] = p;
  }
  if (dir_.empty()) return {};
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  const std::string path = path_of(p->key);
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  const std::vector<uint8_t> bytes = serialize_profile(*p);
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

void clear_profile_registry() {
  std::lock_guard lock(registry_mu);
  registry().clear();
}

}  // namespace nfm
