// The fleet: N VMs crawled at 10 Hz by one crawler on one thread, into each sink,
// without N QEMUs. Every VM is the lab's checked-in 6.1 dump (NFM_FLEET_IMAGE: another
// memory image) opened as a memory source of its own and attached to a kernel of its
// own (profiles shared per kernel build, as for live VMs), crawled at the interval by
// the real scheduler (CrawlerOptions::repeat_images) and handed to the real sinks.
//
// Measured once every VM is attached, over a few seconds of crawling:
//   cpu_ms_per_crawl   this process's CPU time (crawler, sinks and their threads) per frame
//   vms_per_core_10Hz  how many VMs one core holds at 10 Hz at that cost
//   keep_up            frames crawled / frames due (N x 10 per second): 1 when it keeps up
//   anon_MiB_per_vm    anonymous resident memory (RssAnon: nfm's own, not the mapped
//                      images) grown since before the crawler, per VM; rss_MiB is the
//                      whole resident set, mapped image pages included
//   store_MiB_per_vm_hour  what the store grows by, per VM and hour at 10 Hz (SQLite: its
//                      data pages; a file sink: its size)
//   dropped            frames the sinks dropped
// A memory image does not change between crawls: frames of live guests differ in their
// clocks and CPU times, so delta-encoding sinks will do a little worse on them.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "crawler/crawler.h"
#include "golden_dump.h"
#include "memory/dump_file.h"
#include "store/frame_sink.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string& image() {
  static const std::string path = [] {
    const char* env = std::getenv("NFM_FLEET_IMAGE");
    return std::string(env && *env ? env : nfm::testing::golden_dump_path());
  }();
  return path;
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// This process's anonymous resident memory (/proc/self/status RssAnon): its own
// memory, without the pages of the guests' images it maps (the page cache's, like a
// live guest's RAM file that QEMU maps too).
uint64_t rss_anon_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("RssAnon:")) return std::stoull(line.substr(8)) << 10;
  return 0;
}

uint64_t bytes_under(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  return total;
}

// What a store holds: for SQLite its data pages (the WAL, checkpointed every 1,000
// pages, makes the files' size jump around what is stored), else its files' size.
uint64_t stored_bytes(const fs::path& dir) {
  const fs::path db = dir / "frames.db";
  if (!fs::exists(db)) return bytes_under(dir);
  sqlite3* handle = nullptr;
  uint64_t bytes = 0;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(handle,
                           "SELECT (page_count - freelist_count) * page_size FROM "
                           "pragma_page_count, pragma_freelist_count, pragma_page_size",
                           -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
      bytes = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    sqlite3_finalize(s);
  }
  sqlite3_close(handle);
  return bytes;
}

// state.range(0): VMs. `features`: "ps" (the processes feature) or "all".
// `sink`: "none", "file" (JSON Lines) or "sqlite" (the default store).
void BM_fleet(benchmark::State& state, const std::string& features, const std::string& sink) {
  const int vms = static_cast<int>(state.range(0));
  if (image().empty()) {
    state.SkipWithError("no memory image (zstd missing, or NFM_FLEET_IMAGE unset)");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("nfm-fleet-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "vms");
  fs::create_directories(dir / "store");
  nfm::CrawlerOptions options;
  for (int i = 0; i < vms; ++i) {
    const fs::path link = dir / "vms" / ("vm-" + std::to_string(i));
    fs::create_symlink(image(), link);
    options.targets.push_back(link);
  }
  options.repeat_images = true;
  options.interval = 100ms;
  options.threads = 1;
  if (features == "ps") options.frame.features = {nfm::Feature::named("processes")};
  options.profile.cache_dir = (dir / "profiles").string();

  std::unique_ptr<nfm::FrameSink> out;
  if (sink != "none") {
    const std::string spec = sink == "file" ? "file:" + (dir / "store" / "frames.jsonl").string()
                                            : "sqlite:" + (dir / "store" / "frames.db").string();
    auto opened = nfm::open_sink(spec, {.rotate_bytes = 0});
    if (!opened) {
      state.SkipWithError(opened.error().to_string().c_str());
      return;
    }
    out = std::move(opened).value();
  }
  std::vector<nfm::FrameSink*> sinks;
  if (out) sinks.push_back(out.get());

  const uint64_t anon_before = rss_anon_bytes();
  for (auto _ : state) {
    nfm::Crawler crawler(options, sinks);
    std::thread run([&] { crawler.run(); });
    // Attaching is not what is measured: wait until every VM is crawled.
    const auto deadline = std::chrono::steady_clock::now() + 10min;
    for (;;) {
      const nfm::CrawlerStats s = crawler.stats();
      size_t crawled = 0, failed = 0;
      for (const auto& vm : s.vms) {
        crawled += vm.crawls > 0;
        failed += vm.state == nfm::VmState::failed;
      }
      if (failed) {
        state.SkipWithError("a VM failed to attach");
        crawler.stop();
        run.join();
        return;
      }
      if (crawled == static_cast<size_t>(vms) || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(50ms);
    }
    const auto seconds = 5s;
    const nfm::CrawlerStats s0 = crawler.stats();
    const double cpu0 = cpu_seconds();
    const uint64_t store0 = stored_bytes(dir / "store");
    std::this_thread::sleep_for(seconds);
    const nfm::CrawlerStats s1 = crawler.stats();
    const double cpu1 = cpu_seconds();
    const uint64_t store1 = stored_bytes(dir / "store");
    crawler.stop();
    run.join();
    if (out) out->flush();

    const double frames = static_cast<double>(s1.frames - s0.frames);
    const double due = vms * 10.0 * std::chrono::duration<double>(seconds).count();
    const double cpu_ms = frames ? (cpu1 - cpu0) * 1e3 / frames : 0;
    state.counters["vms"] = vms;
    state.counters["frames"] = frames;
    state.counters["keep_up"] = frames / due;
    state.counters["cpu_ms_per_crawl"] = cpu_ms;
    state.counters["vms_per_core_10Hz"] = cpu_ms > 0 ? 1000.0 / (cpu_ms * 10) : 0;
    state.counters["rss_MiB"] = static_cast<double>(s1.rss_bytes) / (1 << 20);
    const uint64_t anon = rss_anon_bytes();
    state.counters["anon_MiB"] = static_cast<double>(anon) / (1 << 20);
    state.counters["anon_MiB_per_vm"] =
        static_cast<double>(anon - std::min(anon, anon_before)) / (1 << 20) / vms;
    // Per VM-hour at 10 Hz: what was written per frame, times 36,000 frames.
    state.counters["store_MiB_per_vm_hour"] =
        frames ? static_cast<double>(store1 - store0) / frames * 36000 / (1 << 20) : 0;
    state.counters["dropped"] = out ? static_cast<double>(out->stats().frames_dropped) : 0;
  }
  fs::remove_all(dir);
}

void fleet_args(benchmark::internal::Benchmark* b, int vms) {
  b->Arg(vms)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
}

}  // namespace

// ps frames: the goal is 100 VMs on a core at 10 Hz; full frames, 30.
BENCHMARK_CAPTURE(BM_fleet, ps_none, std::string("ps"), std::string("none"))->Apply([](auto* b) {
  fleet_args(b, 100);
});
BENCHMARK_CAPTURE(BM_fleet, ps_file, std::string("ps"), std::string("file"))->Apply([](auto* b) {
  fleet_args(b, 100);
});
BENCHMARK_CAPTURE(BM_fleet, ps_sqlite, std::string("ps"), std::string("sqlite"))
    ->Apply([](auto* b) { fleet_args(b, 100); });
BENCHMARK_CAPTURE(BM_fleet, all_none, std::string("all"), std::string("none"))->Apply([](auto* b) {
  fleet_args(b, 30);
});
BENCHMARK_CAPTURE(BM_fleet, all_file, std::string("all"), std::string("file"))->Apply([](auto* b) {
  fleet_args(b, 30);
});
BENCHMARK_CAPTURE(BM_fleet, all_sqlite, std::string("all"), std::string("sqlite"))
    ->Apply([](auto* b) { fleet_args(b, 30); });

BENCHMARK_MAIN();
