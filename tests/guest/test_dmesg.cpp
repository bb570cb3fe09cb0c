// `nfm dmesg` against the guest's own /dev/kmsg: every record the guest read must
// be in nfm's output with the same sequence number, level, facility, timestamp
// (to the microsecond /dev/kmsg shows) and text; nfm may show later records too.
// 5.10, 6.1 and 6.12 kernels; on 6.12, initcall_debug makes the text ring wrap
// during boot, so the oldest records are gone and blocks wrap around the array end.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fixture.h"
#include "nfm_cli.h"

namespace {

using nfm::lab::Guest;
using nfm::testing::CliResult;
using nfm::testing::run_nfm;
using json = nlohmann::json;

const int kGuests = nfm::lab::declare_guests({
    {.kernel = "5.10", .ram_mib = 384},
    {.kernel = "6.1-cloud", .ram_mib = 384},
    // Two lines per initcall and one per early memblock call: well over the 128
    // KiB text ring. loglevel=4 keeps them off the (slow) serial console.
    {.kernel = "6.12", .ram_mib = 384, .append = "initcall_debug memblock=debug loglevel=4"},
});

// One /dev/kmsg record: "prio,seq,usec,flags[,...];text" then " KEY=value" lines.
struct KmsgLine {
  unsigned prio = 0;
  uint64_t seq = 0, usec = 0;
  std::string text;  // escaped as /dev/kmsg escapes it
  std::string subsystem, device;
};

std::vector<KmsgLine> parse_dev_kmsg(const std::string& section) {
  std::vector<KmsgLine> out;
  std::istringstream in(section);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == ' ') {
      if (out.empty()) continue;
      if (line.rfind(" SUBSYSTEM=", 0) == 0) out.back().subsystem = line.substr(11);
      if (line.rfind(" DEVICE=", 0) == 0) out.back().device = line.substr(8);
      continue;
    }
    const size_t semi = line.find(';');
    if (semi == std::string::npos) continue;
    KmsgLine k;
    if (std::sscanf(line.c_str(), "%u,%lu,%lu", &k.prio, &k.seq, &k.usec) != 3) continue;
    k.text = line.substr(semi + 1);
    out.push_back(std::move(k));
  }
  return out;
}

// devkmsg_read()'s escaping (msg_add_ext_text): control bytes, DEL and above, and '\'.
std::string kmsg_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < ' ' || c >= 127 || c == '\\') {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

json run_json(const std::vector<std::string>& args) {
  CliResult r = run_nfm(args);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "") << "no record may be skipped in a paused guest";
  try {
    return json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.out.substr(0, 500);
    return json::array();
  }
}

// Every difference between the guest's records and nfm's rows, read after the guest's.
// A full ring drops its oldest records first: the guest's records older than nfm's
// oldest may have been pushed out in between, no other may be missing.
std::vector<std::string> compare(const std::vector<KmsgLine>& truth, const json& rows) {
  std::vector<std::string> diffs;
  std::map<uint64_t, const json*> by_seq;
  for (const json& r : rows) by_seq[r.at("seq").get<uint64_t>()] = &r;
  const uint64_t oldest = by_seq.empty() ? UINT64_MAX : by_seq.begin()->first;
  for (const KmsgLine& k : truth) {
    auto it = by_seq.find(k.seq);
    if (it == by_seq.end() && k.seq < oldest) continue;
    if (it == by_seq.end()) {
      diffs.push_back("missing record " + std::to_string(k.seq) + ": " + k.text);
      continue;
    }
    const json& r = *it->second;
    auto check = [&](const char* what, auto got, auto want) {
      if (got == want) return;
      std::ostringstream s;
      s << "record " << k.seq << " " << what << ": nfm " << got << ", guest " << want;
      diffs.push_back(s.str());
    };
    check("level", r.at("level").get<unsigned>(), k.prio & 7);
    check("facility", r.at("facility").get<unsigned>(), k.prio >> 3);
    check("usec", r.at("ts_ns").get<uint64_t>() / 1000, k.usec);
    check("text", kmsg_escape(r.at("text").get<std::string>()), k.text);
    check("subsystem", kmsg_escape(r.value("subsystem", "")), k.subsystem);
    check("device", kmsg_escape(r.value("device", "")), k.device);
  }
  return diffs;
}

std::string join(const std::vector<std::string>& v, size_t max = 20) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max; ++i) s += v[i] + "\n";
  if (v.size() > max) s += "... " + std::to_string(v.size() - max) + " more\n";
  return s;
}

class Dmesg : public testing::TestWithParam<std::string> {};

TEST_P(Dmesg, EveryRecordTheGuestSees) {
  NFM_LAB_GUEST(g, GetParam());
  const std::string target = "qemu:" + std::to_string(g->pid());
  std::vector<KmsgLine> truth;
  std::vector<std::string> diffs;
  json rows;
  // A record logged between the guest's read and ours may push the oldest out of a
  // full ring: compare() allows exactly that.
  ASSERT_TRUE(g->request_truth().ok());
  ASSERT_TRUE(g->pause().ok());
  truth = parse_dev_kmsg(g->truth().section_or("/dev/kmsg"));
  rows = run_json({"dmesg", "--json", target});
  diffs = compare(truth, rows);
  ASSERT_GT(truth.size(), 50u);
  std::fprintf(stderr, "dmesg %s: guest %zu records (seq %lu-%lu), nfm %zu (seq %lu-%lu)\n",
               GetParam().c_str(), truth.size(), truth.front().seq, truth.back().seq, rows.size(),
               rows.empty() ? 0 : rows.front().at("seq").get<uint64_t>(),
               rows.empty() ? 0 : rows.back().at("seq").get<uint64_t>());
  ASSERT_TRUE(diffs.empty()) << "nfm dmesg disagrees with the guest's /dev/kmsg:\n" << join(diffs);

  // A consistent, paused ring: consecutive sequence numbers up to the newest record.
  ASSERT_FALSE(rows.empty());
  for (size_t i = 1; i < rows.size(); ++i)
    ASSERT_EQ(rows[i].at("seq").get<uint64_t>(), rows[i - 1].at("seq").get<uint64_t>() + 1) << i;
  EXPECT_GE(rows.back().at("seq").get<uint64_t>(), truth.back().seq);
  // Read later: the ring can only have lost records at its old end.
  EXPECT_GE(rows.front().at("seq").get<uint64_t>(), truth.front().seq);
  if (g->options().append.find("initcall_debug") != std::string::npos) {
    // The ring wrapped: the first records are gone, for the guest and for us.
    EXPECT_GT(truth.front().seq, 0u);
    EXPECT_GT(rows.front().at("seq").get<uint64_t>(), 0u);
  } else {
    EXPECT_EQ(rows.front().at("seq").get<uint64_t>(), 0u);
    EXPECT_THAT(rows.front().at("text").get<std::string>(), testing::StartsWith("Linux version"));
  }

  // The text form: dmesg's "[seconds.micros] " before every line of every record.
  CliResult text = run_nfm({"dmesg", target});
  EXPECT_EQ(text.status, 0) << text.err;
  std::string want;
  for (const json& r : rows) {
    const uint64_t ns = r.at("ts_ns").get<uint64_t>();
    char prefix[32];
    std::snprintf(prefix, sizeof prefix, "[%5lu.%06lu] ", ns / 1000000000, ns % 1000000000 / 1000);
    std::istringstream lines(r.at("text").get<std::string>());
    std::string line;
    bool any = false;
    while (std::getline(lines, line)) want += prefix + line + "\n", any = true;
    if (!any) want += std::string(prefix) + "\n";
  }
  EXPECT_EQ(text.out, want);

  // A dump of the same paused state reads the same.
  const std::string elf = g->run_dir() + "/dmesg.elf";
  ASSERT_TRUE(g->dump_elf(elf).ok());
  EXPECT_EQ(run_json({"dmesg", "--json", elf}), rows);
  std::filesystem::remove(elf);
  ASSERT_TRUE(g->resume().ok());
}

// While the guest runs: no pause, still every record it had logged.
TEST_P(Dmesg, LiveGuest) {
  NFM_LAB_GUEST(g, GetParam());
  ASSERT_TRUE(g->request_truth().ok());
  CliResult r = run_nfm({"dmesg", "--json", "qemu:" + std::to_string(g->pid())});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::vector<std::string> diffs =
      compare(parse_dev_kmsg(g->truth().section_or("/dev/kmsg")), json::parse(r.out));
  EXPECT_TRUE(diffs.empty()) << join(diffs);
}

INSTANTIATE_TEST_SUITE_P(Guests, Dmesg, testing::ValuesIn(nfm::lab::declared_guests()),
                         nfm::lab::param_name);

}  // namespace
