// Every memory image format of one paused guest state gives the same answer:
// raw (pmemsave), QEMU ELF (paging=false), kdump-zlib/-lzo/-snappy (those this
// QEMU was built with), a QEMU migration stream and a LiME image made from the
// raw dump (the lab has no LiME producer). `nfm ps --json`, `nfm lsmod --json` and
// `nfm netstat --json` must be byte-identical to the live read, and guest pages read through each
// image must equal the raw dump's bytes. 5.10, 6.1-cloud and 6.12 kernels, and a
// 5 GiB guest (RAM above 4 GiB) for the formats that index pages (raw, kdump, migration).
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "fixture.h"
#include "memory/dump_file.h"
#include "host/target.h"
#include "nfm_cli.h"

namespace {

using nfm::lab::Guest;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;
namespace fs = std::filesystem;

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1-cloud", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 5120, .name = "6.12-5g"},
});

struct Image {
  std::string format, path;
};

// The kdump formats this QEMU can write (Debian 12's is built without lzo and snappy).
std::vector<std::string> kdump_formats(Guest& g) {
  std::vector<std::string> out;
  auto caps = g.qmp_execute("query-dump-guest-memory-capability");
  EXPECT_TRUE(caps.ok());
  if (!caps) return out;
  for (const json& f : caps->at("formats"))
    if (f.get<std::string>().rfind("kdump-", 0) == 0) out.push_back(f.get<std::string>());
  return out;
}

// LiME from the raw dump: one {magic, version 1, start, end (inclusive), 0} header
// per RAM range, followed by the range's bytes.
nfm::Result<void> write_lime(const std::string& raw, const std::vector<Guest::RamRange>& ranges,
                             const std::string& path) {
  std::ifstream in(raw, std::ios::binary);
  std::ofstream out(path, std::ios::binary);
  std::vector<char> buf(1 << 20);
  for (const auto& r : ranges) {
    struct {
      uint32_t magic = 0x4C694D45, version = 1;
      uint64_t start, end;
      uint8_t reserved[8] = {};
    } h;
    h.start = r.gpa;
    h.end = r.gpa + r.size - 1;
    out.write(reinterpret_cast<const char*>(&h), sizeof h);
    in.seekg(static_cast<std::streamoff>(r.gpa));
    for (uint64_t left = r.size; left > 0;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      if (!in.read(buf.data(), static_cast<std::streamsize>(n)))
        return nfm::make_error(nfm::Errc::io, "short read from " + raw);
      out.write(buf.data(), static_cast<std::streamsize>(n));
      left -= n;
    }
  }
  if (!out) return nfm::make_error(nfm::Errc::io, "cannot write " + path);
  return {};
}

// What `nfm ps --threads`, `lsmod` and `netstat` print as JSON, from one frame of
// `target` (one attach instead of three: the rows are the same codec's).
json sections_of(const std::string& target) {
  CliResult r = run_nfm(
      {"frame", "--compact", "--threads", "--features", "processes,modules,sockets", target}, 600);
  EXPECT_EQ(r.status, 0) << target << ": " << r.err;
  if (r.status != 0) return json();
  json frame = json::parse(r.out);
  return {{"ps", frame["processes"]}, {"lsmod", frame["modules"]}, {"netstat", frame["sockets"]}};
}

// Addresses spread over every RAM range, plus each range's first and last page.
std::vector<uint64_t> sample_pages(const std::vector<Guest::RamRange>& ranges) {
  std::vector<uint64_t> out;
  for (const auto& r : ranges) {
    const uint64_t pages = r.size / 4096;
    for (uint64_t i = 0; i < 96; ++i) out.push_back(r.gpa + (pages * i / 96) * 4096);
    out.push_back(r.gpa + r.size - 4096);
  }
  return out;
}

// Guest pages read through `image` equal the raw dump's bytes `want` at `addresses`.
void compare_pages(const Image& image, const std::vector<uint64_t>& addresses,
                   const std::vector<std::vector<uint8_t>>& want);

class DumpFormats : public testing::TestWithParam<std::string> {};

TEST_P(DumpFormats, EveryFormatOfOnePausedStateReadsTheSame) {
  NFM_LAB_GUEST(g, GetParam());
  ASSERT_TRUE(g->request_truth().ok());
  ASSERT_TRUE(g->pause().ok());
  const std::string target = "qemu:" + std::to_string(g->pid());
  const json live = sections_of(target);
  ASSERT_GT(live["ps"].size(), 30u);
  ASSERT_GT(live["netstat"].size(), 5u);
  ASSERT_FALSE(live["lsmod"].empty());

  auto ranges = g->ram_ranges();
  ASSERT_TRUE(ranges.ok()) << ranges.error().to_string();
  const bool big = g->options().ram_mib > 4096;
  if (big) {
    ASSERT_EQ(ranges->back().gpa, 1ull << 32) << "the 5 GiB guest has RAM above 4 GiB";
  }

  const std::string dir = g->run_dir() + "/dumps";
  fs::create_directories(dir);
  std::vector<Image> images;
  const std::string raw = dir + "/guest.raw";
  ASSERT_TRUE(g->pmemsave(raw).ok());
  images.push_back({"raw", raw});
  // Plain-run formats (ELF, LiME) of 5 GiB add nothing the small guests lack; the big
  // guest is for the formats that index pages (kdump, migration) above 4 GiB.
  if (!big) {
    ASSERT_TRUE(g->dump_elf(dir + "/guest.elf").ok());
    images.push_back({"elf", dir + "/guest.elf"});
    ASSERT_TRUE(write_lime(raw, *ranges, dir + "/guest.lime").ok());
    images.push_back({"lime", dir + "/guest.lime"});
  }
  const auto kdumps = kdump_formats(*g);
  EXPECT_FALSE(kdumps.empty());
  for (const char* f : {"kdump-zlib", "kdump-lzo", "kdump-snappy"})
    if (std::find(kdumps.begin(), kdumps.end(), f) == kdumps.end())
      std::fprintf(stderr,
                   "note: this QEMU cannot write %s; that format is covered by unit tests\n", f);
  for (const std::string& f : kdumps) {
    const std::string path = fmt::format("{}/guest.{}", dir, f);
    auto r = g->qmp_execute("dump-guest-memory",
                            {{"paging", false}, {"protocol", "file:" + path}, {"format", f}});
    ASSERT_TRUE(r.ok()) << f << ": " << r.error().to_string();
    images.push_back({f, path});
  }
  // Last: migration leaves the guest stopped in "postmigrate".
  ASSERT_TRUE(g->migrate_to_file(dir + "/guest.migration").ok());
  images.push_back({"migration", dir + "/guest.migration"});

  // The raw dump's bytes at sample addresses, then each image's.
  const std::vector<uint64_t> addresses = sample_pages(*ranges);
  std::vector<std::vector<uint8_t>> want;
  {
    auto mem = nfm::open_target(raw);
    ASSERT_TRUE(mem.ok()) << mem.error().to_string();
    for (uint64_t pa : addresses) {
      want.emplace_back(4096);
      ASSERT_TRUE((*mem)->read(pa, want.back().data(), 4096).ok()) << std::hex << pa;
    }
  }
  for (const Image& image : images) {
    SCOPED_TRACE(image.format);
    compare_pages(image, addresses, want);
    const json got = sections_of(image.path);
    for (const char* command : {"ps", "lsmod", "netstat"})
      EXPECT_EQ(got[command], live[command])
          << image.format << ": " << command << " differs from the live read of the same paused guest";
  }
  for (const Image& image : images) fs::remove(image.path);
  ASSERT_TRUE(g->resume().ok());
}

void compare_pages(const Image& image, const std::vector<uint64_t>& addresses,
                   const std::vector<std::vector<uint8_t>>& want) {
  {
    auto opened = nfm::load_memory_image(image.path);
    ASSERT_TRUE(opened.ok()) << opened.error().to_string();
    const std::string expect_format = image.format.rfind("kdump", 0) == 0 ? "kdump" : image.format;
    EXPECT_EQ(nfm::image_format_name((*opened)->format()), expect_format);
    size_t differing = 0;
    std::vector<uint8_t> got(4096);
    for (size_t i = 0; i < addresses.size(); ++i) {
      auto r = (*opened)->read(addresses[i], got.data(), got.size());
      if (!r.ok() || got != want[i]) {
        if (differing++ < 5)
          ADD_FAILURE() << image.format << " page 0x" << std::hex << addresses[i] << ": "
                        << (r.ok() ? "bytes differ" : r.error().to_string());
      }
    }
    EXPECT_EQ(differing, 0u);
    // Where view() gives the bytes in place, they are the same bytes.
    if (const uint8_t* v = (*opened)->view(addresses[1], 64)) {
      EXPECT_EQ(std::memcmp(v, want[1].data(), 64), 0);
    }
  }
}

// A truncated copy of a real migration stream and of a real kdump: a clear error, no crash.
TEST_P(DumpFormats, CutImagesGiveAClearError) {
  NFM_LAB_GUEST(g, GetParam());
  if (g->options().ram_mib > 4096) GTEST_SKIP() << "the small guests cover this";
  const std::string dir = g->run_dir() + "/cut";
  fs::create_directories(dir);
  const std::string kdump = dir + "/guest.kdump", mig = dir + "/guest.migration";
  ASSERT_TRUE(
      g->qmp_execute("dump-guest-memory",
                     {{"paging", false}, {"protocol", "file:" + kdump}, {"format", "kdump-zlib"}})
          .ok());
  ASSERT_TRUE(g->migrate_to_file(mig).ok());
  for (const std::string& path : {kdump, mig}) {
    const auto size = fs::file_size(path);
    const std::string cut = path + ".cut";
    fs::copy_file(path, cut, fs::copy_options::overwrite_existing);
    fs::resize_file(cut, size / 2);
    CliResult r = run_nfm({"ps", "--json", cut});
    EXPECT_NE(r.status, 0) << path;
    EXPECT_NE(r.err.find("nfm: error:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
    fs::remove(cut);
    fs::remove(path);
  }
  ASSERT_TRUE(g->resume().ok());
}

INSTANTIATE_TEST_SUITE_P(Guests, DumpFormats, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
