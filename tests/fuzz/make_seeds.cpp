// Writes seed inputs for every fuzz target into DIR/<target>/, taken from a real
// guest: the lab's checked-in 6.1 dump (or the dump given). Real bytes give the
// fuzzers a start deep inside each format: the dump's own headers and notes, its
// VMCOREINFO text, the kernel's kallsyms tables and its BTF as they lie in memory.
//   make_seeds DIR [DUMP]
#include <elf.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "golden_dump.h"
#include "kernel/kernel.h"
#include "kernel/profile/kallsyms.h"
#include "memory/dump_file.h"

namespace fs = std::filesystem;

namespace {

void write(const fs::path& dir, const std::string& target, const std::string& name,
           const void* bytes, size_t size) {
  fs::create_directories(dir / target);
  std::ofstream(dir / target / name, std::ios::binary)
      .write(static_cast<const char*>(bytes), static_cast<std::streamsize>(size));
}

// The kernel's bytes between two of its symbols.
std::vector<uint8_t> between(nfm::Kernel& k, const char* from, const char* to) {
  auto a = k.symbol(from), b = k.symbol(to);
  if (!a || !b || *b <= *a || *b - *a > (64u << 20)) return {};
  std::vector<uint8_t> bytes(*b - *a);
  if (!k.read(*a, bytes.data(), bytes.size())) return {};
  return bytes;
}

// An ELF core that keeps `path`'s notes and the first 64 KiB of each of its first
// PT_LOAD segments, laid out afresh.
std::vector<uint8_t> small_elf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr eh{};
  if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh) || eh.e_phentsize != sizeof(Elf64_Phdr))
    return {};
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  in.seekg(static_cast<std::streamoff>(eh.e_phoff));
  in.read(reinterpret_cast<char*>(ph.data()),
          static_cast<std::streamsize>(ph.size() * sizeof(Elf64_Phdr)));
  std::vector<Elf64_Phdr> kept;
  std::vector<std::vector<char>> data;
  size_t loads = 0;
  for (Elf64_Phdr p : ph) {
    if (p.p_type == PT_LOAD && loads++ >= 4) continue;
    if (p.p_type != PT_LOAD && p.p_type != PT_NOTE) continue;
    const uint64_t keep = std::min<uint64_t>(p.p_filesz, 64 << 10);
    std::vector<char> bytes(keep);
    in.seekg(static_cast<std::streamoff>(p.p_offset));
    in.read(bytes.data(), static_cast<std::streamsize>(keep));
    p.p_filesz = keep;
    if (p.p_type == PT_LOAD) p.p_memsz = keep;
    kept.push_back(p);
    data.push_back(std::move(bytes));
  }
  eh.e_phoff = sizeof eh;
  eh.e_phnum = static_cast<uint16_t>(kept.size());
  uint64_t offset = sizeof eh + kept.size() * sizeof(Elf64_Phdr);
  for (auto& p : kept) {
    p.p_offset = offset;
    offset += p.p_filesz;
  }
  std::vector<uint8_t> out(offset);
  std::memcpy(out.data(), &eh, sizeof eh);
  std::memcpy(out.data() + sizeof eh, kept.data(), kept.size() * sizeof(Elf64_Phdr));
  for (size_t i = 0; i < kept.size(); ++i)
    std::memcpy(out.data() + kept[i].p_offset, data[i].data(), data[i].size());
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [DUMP]\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  const std::string dump = argc > 2 ? argv[2] : nfm::testing::golden_dump_path();
  auto image = nfm::load_memory_image(dump);
  if (!image) {
    std::fprintf(stderr, "%s\n", image.error().to_string().c_str());
    return 1;
  }
  // memory_image: the dump's own ELF header and notes, with its first RAM segments cut
  // to 64 KiB each (a valid small image: the parser's whole path but for the bulk of RAM).
  if (auto small = small_elf(dump); !small.empty())
    write(dir, "memory_image", "lab-6.1.elf", small.data(), small.size());

  nfm::ProfileOptions profile;
  profile.use_cache = false;
  auto kernel = nfm::Kernel::attach(std::move(image).value(), profile);
  if (!kernel) {
    std::fprintf(stderr, "%s\n", kernel.error().to_string().c_str());
    return 1;
  }
  nfm::Kernel& k = **kernel;
  const std::vector<uint8_t> btf = between(k, "__start_BTF", "__stop_BTF");
  write(dir, "btf", "lab-6.1", btf.data(), btf.size());
  // VMCOREINFO as the kernel located it (the dump's note, or the kernel's own page).
  const auto& info = k.location().vmcoreinfo;
  if (info) {
    std::string text;
    for (const auto& [key, value] : info->entries())
      text.append(key).append("=").append(value) += '\n';
    write(dir, "vmcoreinfo", "lab-6.1", text.data(), text.size());
  }
  // kallsyms: the bytes its tables span, where VMCOREINFO (6.0+) places them.
  auto tables = nfm::kallsyms_tables_from(
      [&](const std::string& name) { return info ? info->symbol(name) : std::nullopt; });
  if (tables) {
    const nfm::KallsymsSpan span = nfm::kallsyms_span(*tables);
    std::vector<uint8_t> bytes(span.size);
    if (span.size < (64u << 20) && k.read(span.va, bytes.data(), bytes.size()))
      write(dir, "kallsyms", "lab-6.1", bytes.data(), bytes.size());
  }
  // isf: the smallest profile the loader accepts, and one type deep.
  const std::string isf =
      R"({"metadata":{"format":"6.2.0"},"symbols":{"init_task":{"address":18446744071600000000}},)"
      R"("base_types":{"int":{"kind":"int","size":4,"signed":true,"endian":"little"}},)"
      R"("user_types":{"task_struct":{"kind":"struct","size":16,"fields":{"comm":{"offset":0,)"
      R"("type":{"kind":"array","count":16,"subtype":{"kind":"base","name":"char"}}}}}},"enums":{}})";
  write(dir, "isf", "minimal.json", isf.data(), isf.size());
  // guest_memory: no patch (the clean crawl), then a pointer's worth of 0xff at a read.
  write(dir, "guest_memory", "clean", "", 0);
  const uint8_t ones[] = {7, 0, 0, 0, 8, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  write(dir, "guest_memory", "ones", ones, sizeof ones);
  std::printf("seeds in %s\n", dir.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "make_seeds: %s\n", e.what());
  return 1;
}
