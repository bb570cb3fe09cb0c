// Reading frames back: the stores the crawler writes (SQLite, ClickHouse) are also
// sources for `nfm top --store`, `nfm shell --store` and anything else that wants
// history. Frames come back typed (frame_from_json), exactly as they were crawled.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "frame/frame.h"
#include "util/result.h"

namespace nfm {

// One VM a store knows, with the span of time its frames cover.
struct StoredVm {
  VmIdentity vm;
  uint64_t frames = 0;
  uint64_t first_ns = 0, last_ns = 0;  // host_time_ns of the oldest and newest frame
};

// One stored frame, without its rows.
struct StoredFrameRef {
  int64_t id = 0;  // store-specific key, valid for load()
  VmIdentity vm;
  uint64_t host_time_ns = 0;
};

class FrameStore {
 public:
  virtual ~FrameStore() = default;
  virtual std::string describe() const = 0;
  virtual Result<std::vector<StoredVm>> vms() = 0;
  // Frames of one VM (by name; empty = every VM) with since_ns <= host_time_ns <= until_ns,
  // oldest first, at most `limit`.
  virtual Result<std::vector<StoredFrameRef>> frames(std::string_view vm_name, uint64_t since_ns,
                                                     uint64_t until_ns, size_t limit) = 0;
  virtual Result<Frame> load(int64_t id) = 0;
  // The newest frame of each VM (for a cloud-wide view).
  virtual Result<std::vector<Frame>> latest() = 0;
};

// Which stored frames a reader wants.
struct FrameSelection {
  // The newest frame of each VM at or before this time (ns since the epoch); none: the newest.
  std::optional<uint64_t> at_ns;
  // Instead: every frame of every VM in [since, until] (history).
  std::optional<uint64_t> since_ns, until_ns;
  bool window() const { return since_ns || until_ns; }
};

// The frames `selection` names, per VM (store order of VMs), each VM's oldest first;
// an error naming the store when there are none.
Result<std::vector<StoredFrameRef>> select_frames(FrameStore& store,
                                                  const FrameSelection& selection);

// "sqlite:PATH" or "clickhouse:http://HOST:PORT/DB"; read-only.
Result<std::unique_ptr<FrameStore>> open_store(std::string_view spec);

}  // namespace nfm
