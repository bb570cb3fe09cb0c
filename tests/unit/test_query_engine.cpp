// The SQL layer over a fake snapshot source: what is crawled for which statement
// (push-down of vm, snapshot and pid), the frames table, the osquery views' value
// mappings and the errors users see. Real guests: tests/guest/test_query.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "query/query_engine.h"

namespace nfm::query {
namespace {

using schema::json;

// Two VMs with a few rows per feature; records every make() call.
class FakeSnapshots : public SnapshotSource {
 public:
  FakeSnapshots() { ids_ = {{.name = "a", .host = "h"}, {.name = "b", .host = "h"}}; }
  const std::vector<VmIdentity>& snapshots() const override { return ids_; }
  uint64_t known_time(size_t) const override { return 0; }

  std::vector<std::string> calls;  // "a processes", "b open_files pid=7"
  bool fail_b = false;

 protected:
  Result<SectionRows> make(size_t i, Feature feature, std::optional<int64_t> pid) override {
    calls.push_back(ids_[i].name + " " + std::string(feature.name()) +
                    (pid ? " pid=" + std::to_string(*pid) : ""));
    if (fail_b && i == 1) return make_error(Errc::permission, "cannot read guest memory");
    SectionRows out{.feature = feature, .time_ns = 1000 + i};
    out.status.ok = true;
    const std::string name(feature.name());
    const int base = i == 0 ? 0 : 100;
    if (name == "processes") {
      for (int pid : {1, 2, 7})
        out.rows.push_back({{"pid", base + pid},
                            {"tgid", base + pid},
                            {"ppid", 0},
                            {"comm", "p" + std::to_string(pid)},
                            {"cmdline", json::array({"/bin/p", "-x"})},
                            {"exe", pid == 2 ? "/bin/p (deleted)" : "/bin/p"},
                            {"rss_kb", 4},
                            {"vsz_kb", 8},
                            {"utime_ns", 2500000},
                            {"euid", 1000 + pid},
                            {"start_time", 3000000000}});
    } else if (name == "uptime") {
      out.rows.push_back({{"uptime_ns", 93784000000000}, {"boot_time", 1700000000}});
    } else if (name == "open_files") {
      for (int p : {1, 7})
        if (!pid || base + p == *pid)
          out.rows.push_back({{"pid", base + p}, {"fd", 3}, {"path", "/x"}, {"type", "file"}});
    } else if (name == "modules") {
      out.rows.push_back({{"name", "m1"}, {"used_by", json::array()}, {"state", "Live"}});
      out.rows.push_back(
          {{"name", "m2"}, {"used_by", json::array({"m1", "m3"})}, {"state", "Live"}});
    } else if (name == "interfaces") {
      out.rows.push_back({{"name", "eth0"},
                          {"flags", 0x1003},
                          {"ipv4", json::array({"10.1.2.3/20"})},
                          {"ipv6", json::array({"fd00::5/64"})}});
    } else if (name == "uname") {
      out.rows.push_back({{"release", "6.1.0-27-amd64"}, {"sysname", "Linux"}});
    }
    out.narrowed = pid.has_value();
    return out;
  }

 private:
  std::vector<VmIdentity> ids_;
};

class QueryEngineTest : public testing::Test {
 protected:
  void SetUp() override {
    auto source = std::make_unique<FakeSnapshots>();
    fake_ = source.get();
    auto engine = QueryEngine::open(std::move(source));
    ASSERT_TRUE(engine.ok()) << engine.error().to_string();
    engine_ = std::move(engine).value();
  }
  // The rows of the last statement, each value as text ("NULL" for NULL).
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    auto r = engine_->run(sql);
    EXPECT_TRUE(r.ok()) << sql << ": " << r.error().to_string();
    std::vector<std::vector<std::string>> out;
    if (!r.ok() || r->empty()) return out;
    for (const auto& row : r->back().rows) {
      auto& o = out.emplace_back();
      for (const SqlValue& v : row) {
        if (std::holds_alternative<std::monostate>(v))
          o.push_back("NULL");
        else if (const auto* i = std::get_if<int64_t>(&v))
          o.push_back(std::to_string(*i));
        else if (const auto* d = std::get_if<double>(&v))
          o.push_back(std::to_string(*d));
        else
          o.push_back(std::get<std::string>(v));
      }
    }
    return out;
  }
  using Rows = std::vector<std::vector<std::string>>;

  FakeSnapshots* fake_ = nullptr;
  std::unique_ptr<QueryEngine> engine_;
};

TEST_F(QueryEngineTest, AVmConstraintReadsOnlyThatVm) {
  EXPECT_EQ(rows("SELECT pid FROM nfm_processes WHERE vm = 'b' ORDER BY pid"),
            (Rows{{"101"}, {"102"}, {"107"}}));
  EXPECT_THAT(fake_->calls, testing::ElementsAre("b processes"));
}

TEST_F(QueryEngineTest, EachStatementCrawlsOnceHoweverOftenAJoinReads) {
  EXPECT_EQ(rows("SELECT count(*) FROM nfm_processes x JOIN nfm_processes y USING (vm)"),
            (Rows{{"18"}}));
  EXPECT_THAT(fake_->calls, testing::ElementsAre("a processes", "b processes"));
  rows("SELECT count(*) FROM nfm_processes");
  EXPECT_EQ(fake_->calls.size(), 4u) << "a new statement crawls again";
}

TEST_F(QueryEngineTest, APidConstraintNarrowsTheCrawlsThatCan) {
  EXPECT_EQ(rows("SELECT pid, fd FROM process_open_files WHERE vm = 'a' AND pid = 7"),
            (Rows{{"7", "3"}}));
  EXPECT_THAT(fake_->calls, testing::ElementsAre("a open_files pid=7"));
  // processes cannot narrow its walk: the pid is filtered from the whole list.
  EXPECT_EQ(rows("SELECT pid FROM nfm_processes WHERE vm = 'a' AND pid = 2"), (Rows{{"2"}}));
  EXPECT_EQ(fake_->calls.back(), "a processes");
}

TEST_F(QueryEngineTest, ManyPidLookupsBecomeOneWholeCrawl) {
  EXPECT_EQ(rows("SELECT x.value, (SELECT count(*) FROM nfm_open_files f WHERE f.vm = 'a' AND "
                 "f.pid = x.value) FROM json_each('[1, 2, 7, 8, 1, 7]') x"),
            (Rows{{"1", "1"}, {"2", "0"}, {"7", "1"}, {"8", "0"}, {"1", "1"}, {"7", "1"}}));
  // Three narrowed crawls, then the whole section serves the rest.
  EXPECT_THAT(fake_->calls, testing::ElementsAre("a open_files pid=1", "a open_files pid=2",
                                                 "a open_files pid=7", "a open_files"));
}

TEST_F(QueryEngineTest, FramesListsWhatEachStatementRead) {
  rows("SELECT * FROM processes WHERE vm = 'b' AND pid = 101");
  EXPECT_EQ(rows("SELECT statement, vm, feature, ok, rows FROM frames ORDER BY feature"),
            (Rows{{"1", "b", "processes", "1", "0"}, {"1", "b", "uptime", "1", "0"}}));
}

TEST_F(QueryEngineTest, OsqueryViewsMapUnitsAndShapes) {
  // ms of CPU, bytes of memory, seconds since the epoch, args joined, deleted executables.
  EXPECT_EQ(
      rows("SELECT pid, cmdline, user_time, resident_size, total_size, start_time, "
           "elapsed_time, on_disk, euid, egid FROM processes WHERE vm = 'a' ORDER BY pid"),
      (Rows{{"1", "/bin/p -x", "2", "4096", "8192", "1700000003", "93781", "1", "1001", "NULL"},
            {"2", "/bin/p -x", "2", "4096", "8192", "1700000003", "93781", "0", "1002", "NULL"},
            {"7", "/bin/p -x", "2", "4096", "8192", "1700000003", "93781", "1", "1007", "NULL"}}));
  EXPECT_EQ(rows("SELECT days, hours, minutes, seconds, total_seconds FROM uptime WHERE vm = 'a'"),
            (Rows{{"1", "2", "3", "4", "93784"}}));
  EXPECT_EQ(rows("SELECT name, used_by FROM kernel_modules WHERE vm = 'a'"),
            (Rows{{"m1", "-"}, {"m2", "m1,m3"}}));
  EXPECT_EQ(rows("SELECT interface, address, mask, broadcast FROM interface_addresses "
                 "WHERE vm = 'a'"),
            (Rows{{"eth0", "10.1.2.3", "255.255.240.0", "10.1.15.255"},
                  {"eth0", "fd00::5", "ffff:ffff:ffff:ffff::", "NULL"}}));
  EXPECT_EQ(rows("SELECT major, minor, patch, version FROM os_version WHERE vm = 'b'"),
            (Rows{{"6", "1", "0", "6.1.0-27-amd64"}}));
}

TEST_F(QueryEngineTest, AnUnreadableVmIsAWarningAndMarksTheRun) {
  fake_->fail_b = true;
  EXPECT_EQ(rows("SELECT vm, count(*) FROM nfm_processes GROUP BY vm"), (Rows{{"a", "3"}}));
  EXPECT_THAT(engine_->source().warnings(),
              testing::ElementsAre("b: processes: cannot read guest memory"));
  EXPECT_TRUE(engine_->source().any_failed());
  EXPECT_EQ(rows("SELECT vm, ok, error FROM frames WHERE ok = 0"),
            (Rows{{"b", "0", "cannot read guest memory"}}));
}

TEST_F(QueryEngineTest, BadSqlNamesTheProblem) {
  auto r = engine_->run("SELECT * FROM no_such_table");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "SQL: no such table: no_such_table");
  r = engine_->run("SELECT 1; SELEKT 2");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, testing::HasSubstr("syntax error"));
}

TEST_F(QueryEngineTest, EveryTableIsListedWithItsColumns) {
  auto tables = engine_->tables();
  ASSERT_TRUE(tables.ok());
  std::map<std::string, std::string> by_name(tables->begin(), tables->end());
  EXPECT_THAT(by_name.at("nfm_processes"),
              testing::StartsWith("vm TEXT, host TEXT, time INTEGER, pid INTEGER"));
  EXPECT_THAT(by_name.at("processes"), testing::HasSubstr("resident_size"));
  EXPECT_TRUE(by_name.contains("listening_ports"));
  EXPECT_TRUE(by_name.contains("frames"));
}

}  // namespace
}  // namespace nfm::query
