// Where frames go. The crawler hands every frame to each sink named by --emit
// (JSON lines on stdout or a file, SQLite, ClickHouse, a Prometheus endpoint).
// A sink never blocks the crawl for long: slow or absent back ends buffer (bounded)
// and count what they had to drop, so the crawler can report it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "frame/frame.h"
#include "util/result.h"

namespace nfm {

// What a sink did since it was opened; reported in the crawler's status.
struct SinkStats {
  uint64_t frames_written = 0;   // delivered to the back end
  uint64_t frames_buffered = 0;  // waiting now (e.g. ClickHouse down)
  uint64_t frames_dropped = 0;   // lost to a full buffer (oldest first)
  uint64_t write_errors = 0;     // failed deliveries (retried or dropped)
  uint64_t frames_expired = 0;   // stored, then deleted by retention or the size budget
  std::string last_error;        // the latest failure, for the status line
};

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // "sqlite:/var/lib/nfm/frames.db", as given to --emit.
  virtual std::string describe() const = 0;
  // Called from crawler threads, possibly concurrently: implementations lock.
  virtual void write(const Frame& frame) = 0;
  // The crawler's hand-off: one frame, immutable from here on, shared by every sink,
  // so that a sink that queues it keeps the pointer instead of a copy.
  virtual void write_shared(const std::shared_ptr<const Frame>& frame) { write(*frame); }
  // Delivers what is buffered, waiting until `deadline` at most; true when nothing is
  // left waiting.
  virtual bool flush_until(std::chrono::steady_clock::time_point /*deadline*/) { return true; }
  // flush_until with the sink's own patience (a minute): for tests and reloads.
  bool flush() { return flush_until(std::chrono::steady_clock::now() + std::chrono::minutes(1)); }
  // Shutdown past its deadline: what still waits is dropped (counted) and the sink
  // accepts nothing more. Returns the frames dropped. A delivery in progress ends on
  // its own: busy() says whether one still runs.
  virtual uint64_t abandon() { return 0; }
  virtual bool busy() const { return false; }
  // A VM went away (its QEMU exited): sinks that expose current state (Prometheus) forget it.
  virtual void forget_vm(const VmIdentity& /*vm*/) {}
  virtual SinkStats stats() const = 0;
};

// A store left running must not fill the disk: by default frames are kept for 15
// days (Prometheus's default) and the store's pages are held under 2 GiB.
inline constexpr uint64_t kDefaultRetainNs = 15ull * 24 * 3600 * 1'000'000'000;
inline constexpr uint64_t kDefaultMaxStoreBytes = 2ull << 30;

struct SinkOptions {
  uint64_t rotate_bytes = 64ull << 20;    // file: rotate at this size (0: never)
  int rotate_keep = 4;                    // file: rotated files kept (PATH.1 .. PATH.N)
  uint64_t retain_ns = kDefaultRetainNs;  // sqlite: delete frames older than this (0: keep all)
  uint64_t max_store_bytes =
      kDefaultMaxStoreBytes;      // sqlite: oldest frames go beyond this (0: no limit)
  uint64_t buffer_frames = 1000;  // held while a server is down (a full frame is ~200 KB of JSON)
};

// Opens one --emit spec: "stdout", "file:PATH", "sqlite:PATH",
// "clickhouse:http://HOST:PORT/DB", "prometheus:[ADDR:]PORT". Unknown schemes and
// unusable arguments are errors that name the spec.
Result<std::unique_ptr<FrameSink>> open_sink(std::string_view spec,
                                             const SinkOptions& options = {});

}  // namespace nfm
