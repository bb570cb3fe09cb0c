#include "kernel/profile/kallsyms.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <vector>

namespace nfm {
namespace {

constexpr uint32_t kMaxSyms = 1u << 20;  // amd64 distro kernels have ~100k-170k
constexpr size_t kPage = 4096;
constexpr size_t kMaxNameLen = 0x3FFF;  // two-byte ULEB128 limit (scripts/kallsyms.c)
constexpr uint64_t kKernelHalf = 0xffff800000000000ull;

uint16_t le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}

Error bad(std::string msg) {
  return make_error(Errc::bad_format, std::move(msg));
}

Result<std::vector<uint8_t>> read_bytes(AddressSpace& as, uint64_t va, size_t n) {
  std::vector<uint8_t> out(n);
  NFM_TRY(as.read(va, out.data(), n));
  return out;
}

// Reads [va, va+n) in big pieces; pages that cannot be read are left zero.
std::vector<uint8_t> read_sparse(AddressSpace& as, uint64_t va, size_t n) {
  std::vector<uint8_t> out(n, 0);
  if (as.read(va, out.data(), n)) return out;
  for (size_t off = 0; off < n;) {
    size_t len = std::min<size_t>(n - off, kPage - ((va + off) % kPage));
    if (!as.read(va + off, out.data() + off, len)) std::memset(out.data() + off, 0, len);
    off += len;
  }
  return out;
}

// kernel/kallsyms.c kallsyms_sym_address(), KALLSYMS_BASE_RELATIVE.
uint64_t symbol_address(int32_t off, uint64_t base, bool absolute_percpu) {
  if (!absolute_percpu) return base + static_cast<uint32_t>(off);
  if (off >= 0) return static_cast<uint64_t>(off);
  return base - 1 - static_cast<uint64_t>(static_cast<int64_t>(off));
}

// One compressed name: ULEB128 length (at most two bytes), then token numbers.
// Returns the position after it, or 0 if it runs past `end`.
size_t skip_name(const uint8_t* names, size_t pos, size_t end) {
  if (pos >= end) return 0;
  size_t len = names[pos++];
  if (len & 0x80) {
    if (pos >= end) return 0;
    len = (len & 0x7F) | (size_t{names[pos++]} << 7);
  }
  if (len == 0 || pos + len > end) return 0;
  return pos + len;
}

struct TokenTable {
  std::array<std::string_view, 256> tokens;
  std::vector<uint8_t> storage;
};

// token_index[i] is the offset of token i; tokens are NUL-terminated.
Result<TokenTable> load_tokens(AddressSpace& as, uint64_t table_va, uint64_t index_va) {
  NFM_ASSIGN(auto index_bytes, read_bytes(as, index_va, 512));
  std::array<uint16_t, 256> index{};
  for (int i = 0; i < 256; ++i) index[i] = le16(index_bytes.data() + size_t{2} * i);
  uint16_t max = *std::max_element(index.begin(), index.end());
  TokenTable t;
  // The longest token is short; read a little past the last one's start.
  size_t size = size_t{max} + 256;
  if (index_va > table_va && index_va - table_va > max && index_va - table_va <= 0x10000) {
    size = index_va - table_va;  // token_index directly follows token_table
  }
  NFM_ASSIGN(t.storage, read_bytes(as, table_va, size));
  // (string_views into storage survive moves of TokenTable: a moved vector keeps its buffer.)
  for (int i = 0; i < 256; ++i) {
    const char* s = reinterpret_cast<const char*>(t.storage.data()) + index[i];
    const void* nul =
        index[i] < t.storage.size() ? std::memchr(s, 0, t.storage.size() - index[i]) : nullptr;
    if (nul == nullptr) {
      return bad(
          fmt::format("kallsyms token {} at offset {} is not a terminated string", i, index[i]));
    }
    t.tokens[i] = std::string_view(s, static_cast<const char*>(nul) - s);
  }
  return t;
}

// Reads kallsyms_names for `num` symbols without knowing its length up front.
Result<std::vector<uint8_t>> read_names(AddressSpace& as, uint64_t names_va, uint32_t num,
                                        uint64_t markers_va) {
  if (markers_va > names_va && markers_va - names_va < (256u << 20)) {
    return read_bytes(as, names_va, markers_va - names_va);  // names ends where markers starts
  }
  std::vector<uint8_t> buf;
  size_t pos = 0;
  for (uint32_t i = 0; i < num; ++i) {
    // Make sure the longest possible entry is in the buffer.
    while (buf.size() < pos + 2 + kMaxNameLen) {
      size_t grow = std::max<size_t>(1 << 20, buf.size());
      size_t old = buf.size();
      buf.resize(old + grow);
      if (!as.read(names_va + old, buf.data() + old, grow)) {
        // Near the end of a mapping: settle for what can be read page by page.
        size_t got = old;
        while (got < old + grow && as.read(names_va + got, buf.data() + got, kPage)) got += kPage;
        buf.resize(got);
        break;
      }
    }
    size_t next = skip_name(buf.data(), pos, buf.size());
    if (next == 0) {
      return bad(fmt::format("kallsyms_names entry {} at {:#x} runs past readable memory", i,
                             names_va + pos));
    }
    pos = next;
  }
  buf.resize(pos);
  return buf;
}

}  // namespace

std::optional<KallsymsTables> kallsyms_tables_from(
    const std::function<std::optional<uint64_t>(const std::string&)>& symbol) {
  KallsymsTables t;
  std::pair<const char*, uint64_t*> want[] = {
      {"kallsyms_num_syms", &t.num_syms},       {"kallsyms_names", &t.names},
      {"kallsyms_token_table", &t.token_table}, {"kallsyms_token_index", &t.token_index},
      {"kallsyms_offsets", &t.offsets},         {"kallsyms_relative_base", &t.relative_base}};
  for (auto& [name, field] : want) {
    auto v = symbol(name);
    if (!v) return std::nullopt;
    *field = *v;
  }
  if (auto m = symbol("kallsyms_markers")) t.markers = *m;
  return t;
}

KallsymsSpan kallsyms_span(const KallsymsTables& t) {
  uint64_t lo = UINT64_MAX;
  for (uint64_t a :
       {t.num_syms, t.names, t.markers, t.token_table, t.token_index, t.offsets, t.relative_base})
    if (a != 0) lo = std::min(lo, a);
  const uint64_t hi = std::max(t.token_index + 512, t.relative_base + 8);
  if (lo == UINT64_MAX || t.token_index == 0 || t.relative_base == 0 || hi <= lo) return {};
  return {lo, hi - lo, t.relative_base - lo};
}

Result<SymbolTable> decode_kallsyms(AddressSpace& as, const KallsymsTables& t) {
  NFM_ASSIGN(uint32_t num, as.read_value<uint32_t>(t.num_syms));
  if (num == 0 || num > kMaxSyms) {
    return bad(
        fmt::format("kallsyms_num_syms at {:#x} is {}, not a symbol count", t.num_syms, num));
  }
  NFM_ASSIGN(TokenTable tokens, load_tokens(as, t.token_table, t.token_index));
  NFM_ASSIGN(std::vector<uint8_t> names, read_names(as, t.names, num, t.markers));
  NFM_ASSIGN(std::vector<uint8_t> offsets, read_bytes(as, t.offsets, size_t{num} * 4));
  NFM_ASSIGN(uint64_t base, as.read_value<uint64_t>(t.relative_base));
  std::vector<uint32_t> markers;
  if (t.markers != 0) {
    NFM_ASSIGN(auto mb, read_bytes(as, t.markers, size_t{(num + 255) / 256} * 4));
    for (size_t i = 0; i < mb.size(); i += 4) markers.push_back(le32(mb.data() + i));
  }

  // With KALLSYMS_ABSOLUTE_PERCPU (x86-64 SMP until 6.15), per-cpu symbols are
  // stored as non-negative absolute values and everything else as
  // relative_base - 1 - offset; without it every entry is an unsigned offset
  // from relative_base (kernel/kallsyms.c kallsyms_sym_address()). The first form
  // always has negative entries (_text is relative), the second never does.
  bool absolute_percpu = false;
  for (uint32_t i = 0; i < num && !absolute_percpu; ++i) {
    absolute_percpu = static_cast<int32_t>(le32(offsets.data() + size_t{4} * i)) < 0;
  }

  std::vector<Symbol> syms(num);
  size_t pos = 0;
  std::string expanded;
  for (uint32_t i = 0; i < num; ++i) {
    if ((i & 0xFF) == 0 && !markers.empty() && markers[i >> 8] != pos) {
      return bad(fmt::format("kallsyms_markers[{}] = {} but symbol {} starts at {}", i >> 8,
                             markers[i >> 8], i, pos));
    }
    size_t next = skip_name(names.data(), pos, names.size());
    if (next == 0) return bad(fmt::format("kallsyms_names entry {} is truncated", i));
    size_t len_bytes = (names[pos] & 0x80) ? 2 : 1;
    expanded.clear();
    for (size_t p = pos + len_bytes; p < next; ++p) expanded.append(tokens.tokens[names[p]]);
    pos = next;
    if (expanded.size() < 2)
      return bad(fmt::format("kallsyms symbol {} expands to \"{}\"", i, expanded));

    Symbol& s = syms[i];
    s.address = symbol_address(static_cast<int32_t>(le32(offsets.data() + size_t{4} * i)), base,
                               absolute_percpu);
    s.type = expanded[0];
    s.name.assign(expanded, 1);
  }
  return SymbolTable(std::move(syms));
}

namespace {

// The digits are symbol characters, so each is a one-character token at its own
// code: token_table holds "0\0" "1\0" ... "9\0" back to back.
constexpr char kDigitRun[] =
    "0\0"
    "1\0"
    "2\0"
    "3\0"
    "4\0"
    "5\0"
    "6\0"
    "7\0"
    "8\0"
    "9";                                           // + NUL
constexpr size_t kDigitRunLen = sizeof kDigitRun;  // 20 bytes, the final NUL included

struct Candidate {
  uint64_t token_table = 0;
  uint64_t token_index = 0;
  std::array<uint16_t, 256> index{};
};

// From the "0" token at `zero_va`: walk to the end of token 255, find
// token_index after it and check it describes exactly this table.
Result<Candidate> check_token_table(AddressSpace& as, uint64_t zero_va) {
  constexpr size_t kWindow = 8192;
  std::vector<uint8_t> fwd = read_sparse(as, zero_va, kWindow);
  size_t p = 0;
  for (int tok = '0'; tok < 256; ++tok) {
    const void* nul = std::memchr(fwd.data() + p, 0, fwd.size() - p);
    if (nul == nullptr) return bad("token strings after \"9\" do not end");
    p = static_cast<const uint8_t*>(nul) - fwd.data() + 1;
  }
  uint64_t end_va = zero_va + p;  // one past token 255's NUL
  for (uint64_t align : {8, 4, 2}) {
    Candidate c;
    c.token_index = align_up(end_va, align);
    auto raw = read_bytes(as, c.token_index, 512);
    if (!raw) continue;
    for (int i = 0; i < 256; ++i) c.index[i] = le16(raw->data() + size_t{2} * i);
    if (c.index[0] != 0 || c.index['0'] > zero_va) continue;
    c.token_table = zero_va - c.index['0'];
    if (c.token_table + c.index[255] >= end_va) continue;
    // Every token i must span exactly index[i]..index[i+1]-1 (+ NUL).
    auto table = read_bytes(as, c.token_table, end_va - c.token_table);
    if (!table) continue;
    bool ok = true;
    for (int i = 0; i < 256 && ok; ++i) {
      size_t start = c.index[i];
      size_t stop = i == 255 ? table->size() : c.index[i + 1];
      ok = stop > start && stop <= table->size() &&
           std::memchr(table->data() + start, 0, stop - start) == table->data() + stop - 1;
    }
    if (ok) return c;
  }
  return bad("no kallsyms_token_index after the token strings");
}

struct Markers {
  uint64_t va = 0;
  std::vector<uint32_t> values;
};

// kallsyms_markers (u32, increasing from 0, one per 256 names) ends just before
// token_table (after alignment) -- except on 6.2/6.3, where kallsyms_seqs_of_names
// (u8[3] per symbol; u32 in its first version) sits in between: "kallsyms: Improve
// the performance of kallsyms_lookup_name()" (6.2), which stable kernels carry too
// (Debian's 6.1.192 does). Returns every reading of the bytes before token_table
// that fits one of these layouts.
std::vector<Markers> find_markers(AddressSpace& as, uint64_t token_table) {
  constexpr uint64_t kMaxMarkers = kMaxSyms / 256;
  constexpr uint64_t kBack = kMaxMarkers * 4 + uint64_t{kMaxSyms} * 4 + 32;
  uint64_t start = (token_table > kBack ? token_table - kBack : 0) & ~uint64_t{7};
  std::vector<uint8_t> buf = read_sparse(as, start, token_table - start);
  const size_t n = buf.size() / 4;
  auto at = [&](size_t i) { return le32(buf.data() + 4 * i); };
  // An entry is at most 2 + 0x3FFF bytes, so markers grow by at most this much.
  constexpr uint32_t kMaxStep = 256 * (kMaxNameLen + 2);

  std::vector<Markers> out;
  for (size_t i = 0; i + 1 < n; i += 2) {  // markers start 8-aligned
    if (at(i) != 0 || at(i + 1) == 0 || at(i + 1) > kMaxStep) continue;
    size_t j = i + 1;
    while (j < n && at(j) > at(j - 1) && at(j) - at(j - 1) <= kMaxStep) ++j;
    // The run may swallow a few bytes of what follows: try shorter readings too.
    for (size_t len = j - i; len >= 1 && len + 4 > j - i; --len) {
      uint64_t va = start + 4 * i;
      uint64_t end = align_up(va + 4 * len, 8);
      bool fits = end == token_table;
      for (uint64_t width : {3, 4}) {
        for (uint64_t num = (len - 1) * 256 + 1; !fits && num <= len * 256; ++num) {
          fits = align_up(end + width * num, 8) == token_table;
        }
      }
      if (!fits) continue;
      Markers m;
      m.va = va;
      for (size_t k = i; k < i + len; ++k) m.values.push_back(at(k));
      out.push_back(std::move(m));
    }
  }
  return out;
}

// kallsyms is sorted by address (scripts/kallsyms.c sort_symbols), so a real
// kallsyms_offsets decodes, in either encoding, to a non-decreasing sequence.
bool offsets_sorted(const std::vector<uint8_t>& raw, uint64_t base) {
  size_t n = raw.size() / 4;
  bool absolute_percpu = false;
  for (size_t i = 0; i < n && !absolute_percpu; ++i)
    absolute_percpu = static_cast<int32_t>(le32(raw.data() + 4 * i)) < 0;
  uint64_t prev = 0;
  for (size_t i = 0; i < n; ++i) {
    uint64_t a =
        symbol_address(static_cast<int32_t>(le32(raw.data() + 4 * i)), base, absolute_percpu);
    if (a < prev) return false;
    prev = a;
  }
  return true;
}

// Checks that the names starting at `names` split into `num` entries whose every
// 256th start matches the markers and whose end is markers (modulo alignment).
bool names_match_markers(const std::vector<uint8_t>& buf, size_t names, uint32_t num,
                         const Markers& m, size_t markers_off) {
  size_t pos = names;
  for (uint32_t i = 0; i < num; ++i) {
    if ((i & 0xFF) == 0 && (i >> 8) < m.values.size() && pos - names != m.values[i >> 8])
      return false;
    pos = skip_name(buf.data(), pos, markers_off);
    if (pos == 0) return false;
  }
  return pos <= markers_off && markers_off - pos < 8;
}

}  // namespace

Result<KallsymsLocation> find_kallsyms(AddressSpace& as, uint64_t va_start, uint64_t va_end) {
  if (va_end <= va_start) return make_error(Errc::invalid_argument, "empty kallsyms search window");
  constexpr size_t kChunk = 1 << 20;
  std::string last_reason = "no \"0\\0\"..\"9\\0\" token run in the window";

  auto try_at = [&](uint64_t zero_va) -> Result<KallsymsLocation> {
    NFM_ASSIGN(Candidate tok, check_token_table(as, zero_va));
    std::vector<Markers> candidates = find_markers(as, tok.token_table);
    if (candidates.empty()) return bad("no kallsyms_markers before the token table");
    for (const Markers& markers : candidates) {
      uint32_t nm = static_cast<uint32_t>(markers.values.size());

      // names ends at markers; symbol (nm-1)*256 starts markers.back() bytes in; at
      // most 255 more names follow it. num_syms sits 8 bytes before names.
      uint64_t span = markers.values.back() + 256 * (kMaxNameLen + 2) + 16;
      uint64_t lo = markers.va > span ? markers.va - span : 0;
      lo &= ~uint64_t{7};
      std::vector<uint8_t> buf = read_sparse(as, lo, markers.va - lo);
      size_t markers_off = buf.size();
      uint64_t hi_names = markers.va - markers.values.back() - 1;
      for (uint64_t names = hi_names & ~uint64_t{7}; names >= lo + 8; names -= 8) {
        size_t off = names - lo;
        uint32_t num = le32(buf.data() + off - 8);
        if (le32(buf.data() + off - 4) != 0 || num <= (nm - 1) * 256 || num > nm * 256) continue;
        if (!names_match_markers(buf, off, num, markers, markers_off)) continue;

        KallsymsLocation loc;
        loc.num_syms = num;
        loc.tables.num_syms = names - 8;
        loc.tables.names = names;
        loc.tables.markers = markers.va;
        loc.tables.token_table = tok.token_table;
        loc.tables.token_index = tok.token_index;
        // Where offsets and relative_base are depends on the version (see the header).
        uint64_t offsets_size = align_up(uint64_t{num} * 4, 8);
        struct Layout {
          bool after_index;
          uint64_t offsets;
          uint64_t base;
        } layouts[] = {
            {true, tok.token_index + 512, tok.token_index + 512 + offsets_size},
            {false, loc.tables.num_syms - 8 - offsets_size, loc.tables.num_syms - 8},
        };
        for (const Layout& l : layouts) {
          auto base = as.read_value<uint64_t>(l.base);
          if (!base || *base < kKernelHalf) continue;
          auto raw = read_bytes(as, l.offsets, size_t{num} * 4);
          if (!raw || !offsets_sorted(*raw, *base)) continue;
          loc.tables.offsets = l.offsets;
          loc.tables.relative_base = l.base;
          loc.offsets_after_token_index = l.after_index;
          return loc;
        }
        return make_error(Errc::unsupported,
                          "kallsyms names found but no kallsyms_offsets/relative_base next to them "
                          "(kernel without KALLSYMS_BASE_RELATIVE?)");
      }
    }
    return bad("no kallsyms_num_syms/names matching the markers");
  };

  uint64_t overlap = kDigitRunLen - 1;
  for (uint64_t va = va_start; va < va_end; va += kChunk) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk + overlap, va_end - va));
    std::vector<uint8_t> chunk = read_sparse(as, va, n);
    const uint8_t* base = chunk.data();
    for (size_t pos = 0; pos + kDigitRunLen <= chunk.size();) {
      const void* hit = memmem(base + pos, chunk.size() - pos, kDigitRun, kDigitRunLen);
      if (hit == nullptr) break;
      size_t off = static_cast<const uint8_t*>(hit) - base;
      // "0" must be a whole token: the byte before it ends the previous one.
      if (off > 0 && base[off - 1] == 0) {
        auto r = try_at(va + off);
        if (r) return r;
        last_reason = fmt::format("candidate at {:#x}: {}", va + off, r.error().message);
      }
      pos = off + 1;
    }
  }
  return make_error(Errc::not_found, fmt::format("kallsyms tables not found in [{:#x}, {:#x}): {}",
                                                 va_start, va_end, last_reason));
}

Result<SymbolTable> read_vmlinux_kallsyms(const ElfImage& elf) {
  ElfAddressSpace as(elf);
  // The tables are in .rodata; fall back to the whole image.
  auto [lo, hi] = as.image_range();
  if (const auto* ro = elf.section(".rodata"); ro != nullptr && ro->size > 0) {
    lo = ro->addr;
    hi = ro->addr + ro->size;
  }
  NFM_ASSIGN(KallsymsLocation loc, find_kallsyms(as, lo, hi));
  return decode_kallsyms(as, loc.tables);
}

}  // namespace nfm
