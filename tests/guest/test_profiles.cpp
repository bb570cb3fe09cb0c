// Every profile source gives the same answer: on one paused state (an ELF dump)
// of the 6.1 cloud kernel, the rows of `nfm ps`, `lsmod`, `netstat` and `uname` (one
// `nfm frame` per source) are identical from zero-config (guest kallsyms + BTF), System.map + BTF, the
// DWARF vmlinux of the -dbg package, Volatility ISF exported from DWARF and from
// the guest's own BTF, and a warm profile cache. On 5.10 and 6.12 the ISF round
// trip from in-memory BTF is proven the same way. Profiles of another kernel are
// refused naming both kernels; a damaged cache file is rebuilt, a damaged ISF is
// one clear error.
//
// The DWARF vmlinux comes from `testing/guest/fetch-kernel.sh --dbg 6.1-cloud`
// (prepare.sh fetches it); this program fetches it itself when missing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>

#include "fixture.h"
#include "kernel/profile/kallsyms.h"
#include "kernel/profile/system_map.h"
#include "kernel/profile/vmlinuz.h"
#include "nfm_cli.h"

namespace {

namespace fs = std::filesystem;
using nfm::lab::Guest;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "6.1-cloud", .ram_mib = 384},
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.12", .ram_mib = 384},
});

// A private profile cache for this program (run_nfm's children inherit it).
const std::string& cache_dir() {
  static const std::string dir = [] {
    std::string d = fs::temp_directory_path() / ("nfm-profile-cache-" + std::to_string(getpid()));
    fs::create_directories(d);
    setenv("NFM_PROFILE_CACHE_DIR", d.c_str(), 1);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(std::getenv("NFM_PROFILE_CACHE_DIR"), ec);
    });
    return d;
  }();
  return dir;
}

std::string sh(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string dbg_vmlinux() {
  return sh("bash " NFM_SOURCE_DIR "/testing/guest/fetch-kernel.sh --dbg 6.1-cloud");
}

std::string vmlinuz_of(const Guest& g) {
  for (const auto& e : fs::directory_iterator(g.kernel_dir()))
    if (e.path().filename().string().rfind("vmlinuz", 0) == 0) return e.path();
  return {};
}

// A real System.map made from the kernel's own kallsyms (Debian ships a stub).
std::string write_system_map(const Guest& g, const std::string& path) {
  auto vmlinux = nfm::extract_vmlinux_file(vmlinuz_of(g));
  auto elf = nfm::ElfImage::parse(*vmlinux);
  auto symbols = nfm::read_vmlinux_kallsyms(*elf);
  std::ofstream out(path);
  out << nfm::format_system_map(*symbols);
  return path;
}

struct Outputs {
  std::string ps, lsmod, netstat, uname;
};

// The rows of ps (threads), lsmod, netstat and uname of `dump` with the profile
// options `profile`: one frame, so one profile load per source (what `nfm ps --json`
// and the others print are these sections' rows).
Outputs outputs_of(const std::string& dump, const std::vector<std::string>& profile) {
  Outputs o;
  std::vector<std::string> args{"frame", "--compact", "--threads", "--features",
                                "processes,modules,sockets,uname"};
  args.insert(args.end(), profile.begin(), profile.end());
  args.push_back(dump);
  CliResult r = run_nfm(args, 600);
  EXPECT_EQ(r.status, 0) << ::testing::PrintToString(profile) << ": " << r.err;
  if (r.status != 0) return o;
  const json frame = json::parse(r.out);
  o.ps = frame["processes"].dump();
  o.lsmod = frame["modules"].dump();
  o.netstat = frame["sockets"].dump();
  o.uname = frame["uname"].dump();
  return o;
}

json profile_info(const std::string& dump, const std::vector<std::string>& profile) {
  std::vector<std::string> args{"profile", "info", "--json"};
  args.insert(args.end(), profile.begin(), profile.end());
  args.push_back(dump);
  CliResult r = run_nfm(args, 600);
  EXPECT_EQ(r.status, 0) << r.err;
  return r.status == 0 ? json::parse(r.out) : json::object();
}

void expect_same(const Outputs& a, const Outputs& b, const std::string& what) {
  EXPECT_EQ(json::parse(a.ps), json::parse(b.ps)) << what << ": ps";
  EXPECT_EQ(json::parse(a.lsmod), json::parse(b.lsmod)) << what << ": lsmod";
  EXPECT_EQ(json::parse(a.netstat), json::parse(b.netstat)) << what << ": netstat";
  EXPECT_EQ(a.uname, b.uname) << what << ": uname";
  EXPECT_GT(json::parse(a.ps).size(), 10u) << what;
  EXPECT_GT(json::parse(a.lsmod).size(), 2u) << what;
  EXPECT_GT(json::parse(a.netstat).size(), 5u) << what;
}

void expect_clean_failure(const CliResult& r, const std::vector<std::string>& needles) {
  EXPECT_EQ(r.status, 1) << "stderr: " << r.err;
  EXPECT_EQ(r.err.rfind("nfm: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  for (const auto& n : needles)
    EXPECT_NE(r.err.find(n), std::string::npos) << "expected \"" << n << "\" in: " << r.err;
}

// One ELF dump per guest, made once, and its zero-config outputs without any cache.
struct Dumped {
  Guest* guest = nullptr;
  std::string dump;
  Outputs baseline;
};

Dumped* dumped(const std::string& key) {
  static std::map<std::string, std::unique_ptr<Dumped>> all;
  if (auto it = all.find(key); it != all.end()) return it->second.get();
  auto g = nfm::lab::guest(key);
  EXPECT_TRUE(g.ok()) << g.error().to_string();
  if (!g.ok()) return nullptr;
  auto d = std::make_unique<Dumped>();
  d->guest = *g;
  d->dump = d->guest->run_dir() + "/profiles.elf";
  EXPECT_TRUE(d->guest->dump_elf(d->dump).ok());
  d->baseline = outputs_of(d->dump, {"--no-profile-cache"});
  return (all[key] = std::move(d)).get();
}

#define NEED_DUMP(var, key)  \
  Dumped* var = dumped(key); \
  ASSERT_NE(var, nullptr);   \
  ASSERT_FALSE((var)->baseline.ps.empty())

TEST(Profiles, ZeroConfigColdThenWarmCache) {
  cache_dir();
  NEED_DUMP(d, "6.1-cloud");
  const json cold = profile_info(d->dump, {});
  EXPECT_EQ(cold.value("cache", "").rfind("cold; saved to " + cache_dir(), 0), 0u) << cold.dump();
  const json warm = profile_info(d->dump, {});
  EXPECT_EQ(warm.value("cache", "").rfind("warm " + cache_dir(), 0), 0u) << warm.dump();
  EXPECT_EQ(warm.at("banner"), cold.at("banner"));
  EXPECT_EQ(warm.at("symbol_count"), cold.at("symbol_count"));
  EXPECT_EQ(warm.at("type_count"), cold.at("type_count"));
  expect_same(outputs_of(d->dump, {}), d->baseline, "warm cache");
}

TEST(Profiles, DamagedCacheFilesAreRebuilt) {
  cache_dir();
  NEED_DUMP(d, "6.1-cloud");
  profile_info(d->dump, {});  // make sure the file exists
  for (const auto& e : fs::directory_iterator(cache_dir())) {
    if (e.path().extension() != ".nfmprofile") continue;
    fs::resize_file(e.path(), fs::file_size(e.path()) / 2);
  }
  const json info = profile_info(d->dump, {});
  EXPECT_NE(info.value("cache", "").find("replaced a bad cache file"), std::string::npos)
      << info.dump();
  EXPECT_NE(info.value("cache", "").find("truncated"), std::string::npos) << info.dump();
  EXPECT_EQ(profile_info(d->dump, {}).value("cache", "").rfind("warm", 0), 0u);
  // Garbage under the right name is not trusted either.
  for (const auto& e : fs::directory_iterator(cache_dir()))
    if (e.path().extension() == ".nfmprofile") std::ofstream(e.path()) << "not a profile";
  expect_same(outputs_of(d->dump, {}), d->baseline, "after a damaged cache");
}

TEST(Profiles, SystemMapAndBtfGiveTheSameAnswer) {
  NEED_DUMP(d, "6.1-cloud");
  const std::string map = write_system_map(*d->guest, d->guest->run_dir() + "/System.map");
  expect_same(outputs_of(d->dump, {"--no-profile-cache", "--system-map", map, "--btf",
                                   vmlinuz_of(*d->guest)}),
              d->baseline, "System.map + BTF");
}

TEST(Profiles, DwarfAndIsfGiveTheSameAnswer) {
  cache_dir();
  NEED_DUMP(d, "6.1-cloud");
  const std::string vmlinux = dbg_vmlinux();
  ASSERT_TRUE(fs::exists(vmlinux)) << "fetch-kernel.sh --dbg 6.1-cloud gave '" << vmlinux << "'";

  // DWARF: converted once (cold), then from the cache for the next commands.
  const json info = profile_info(d->dump, {"--dwarf", vmlinux});
  EXPECT_EQ(info.value("types", ""), "DWARF vmlinux " + vmlinux) << info.dump();
  EXPECT_EQ(info.value("symbols", ""), "DWARF vmlinux " + vmlinux) << info.dump();
  expect_same(outputs_of(d->dump, {"--dwarf", vmlinux}), d->baseline, "DWARF");
  // A DWARF vmlinux given as --vmlinux is recognised from its bytes.
  const json detected = profile_info(d->dump, {"--no-profile-cache", "--vmlinux", vmlinux});
  EXPECT_EQ(detected.value("types", ""), "DWARF vmlinux " + vmlinux) << detected.dump();

  // ISF exported from the DWARF profile, compressed.
  const std::string from_dwarf = d->guest->run_dir() + "/from-dwarf.json.xz";
  CliResult r =
      run_nfm({"profile", "export", "--isf", from_dwarf, "--dwarf", vmlinux, d->dump}, 600);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_same(outputs_of(d->dump, {"--no-profile-cache", "--isf", from_dwarf}), d->baseline,
              "ISF from DWARF");

  // ISF exported from the guest's own kallsyms and BTF (zero-config), plain JSON.
  const std::string from_guest = d->guest->run_dir() + "/from-guest.json";
  r = run_nfm({"profile", "export", "--isf", from_guest, d->dump}, 600);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_same(outputs_of(d->dump, {"--no-profile-cache", "--isf", from_guest}), d->baseline,
              "ISF from guest BTF");
  const json isf_info = profile_info(d->dump, {"--no-profile-cache", "--isf", from_guest});
  EXPECT_EQ(isf_info.value("types", ""), "ISF " + from_guest);

  // Damaged ISF files: one clear line each.
  const std::string cut = d->guest->run_dir() + "/cut.json";
  fs::copy_file(from_guest, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, fs::file_size(cut) / 3);
  expect_clean_failure(run_nfm({"ps", "--no-profile-cache", "--isf", cut, d->dump}),
                       {"cut.json", "not valid JSON"});
  const std::string cut_xz = d->guest->run_dir() + "/cut.json.xz";
  fs::copy_file(from_dwarf, cut_xz, fs::copy_options::overwrite_existing);
  fs::resize_file(cut_xz, fs::file_size(cut_xz) / 2);
  expect_clean_failure(run_nfm({"ps", "--no-profile-cache", "--isf", cut_xz, d->dump}),
                       {"cut.json.xz", "xz"});
}

class IsfRoundTrip : public testing::TestWithParam<std::string> {};

TEST_P(IsfRoundTrip, FromTheGuestsOwnBtf) {
  NEED_DUMP(d, GetParam());
  const std::string isf = d->guest->run_dir() + "/guest.json.xz";
  CliResult r = run_nfm({"profile", "export", "--isf", isf, "--no-profile-cache", d->dump}, 600);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_same(outputs_of(d->dump, {"--no-profile-cache", "--isf", isf}), d->baseline,
              "ISF round trip on " + GetParam());
}

INSTANTIATE_TEST_SUITE_P(Guests, IsfRoundTrip, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

TEST(Profiles, AnotherKernelsProfileIsRefusedNamingBoth) {
  NEED_DUMP(d61, "6.1-cloud");
  NEED_DUMP(d510, "5.10");
  const std::string other_isf = d510->guest->run_dir() + "/other.json";
  CliResult r =
      run_nfm({"profile", "export", "--isf", other_isf, "--no-profile-cache", d510->dump}, 600);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string k61 = d61->guest->kernel_release(), k510 = d510->guest->kernel_release();
  expect_clean_failure(run_nfm({"ps", "--no-profile-cache", "--isf", other_isf, d61->dump}),
                       {k61, k510, "does not match"});
  // The 6.1 cloud kernel's DWARF on the 5.10 guest.
  const std::string vmlinux = dbg_vmlinux();
  ASSERT_TRUE(fs::exists(vmlinux));
  expect_clean_failure(run_nfm({"ps", "--no-profile-cache", "--dwarf", vmlinux, d510->dump}, 600),
                       {k61, k510, "does not match"});
}

}  // namespace
