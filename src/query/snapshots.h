// What the SQL tables read: VM snapshots, each a VM at one time whose feature
// sections are crawled (live) or loaded (from a store) when a query first needs
// them, and kept for the rest of that statement. A query that touches only
// `processes` of VM a crawls only a's processes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "frame/frame.h"
#include "store/frame_store.h"
#include "util/result.h"

namespace nfm::query {

// One feature's rows of one snapshot, as the frame's JSON has them (an object
// section is one row), with how its crawl went.
struct SectionRows {
  Feature feature;
  std::vector<schema::json> rows;
  FeatureStatus status;
  uint64_t time_ns = 0;   // host wall clock of the crawl that made it
  bool narrowed = false;  // crawled for one pid only (SnapshotSource::section)
};

// A crawl (or load) a statement caused: the rows of the `frames` table.
struct SectionRecord {
  uint64_t statement = 0;  // 1 for the first statement of the session
  size_t snapshot = 0;
  std::string vm, host;
  uint64_t time_ns = 0;
  std::string feature;
  FeatureStatus status;
  std::optional<int64_t> pid;  // the crawl was narrowed to this process
};

class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // Which VMs at which times; fixed for the life of the source.
  virtual const std::vector<VmIdentity>& snapshots() const = 0;
  // The frame time of snapshot `i` when known before loading (stores), else 0.
  virtual uint64_t known_time(size_t i) const = 0;
  // Forgets what the last statement crawled: live sources crawl again.
  void new_statement() {
    cache_.clear();
    narrowed_.clear();
    warnings_.clear();
    ++statement_;
    on_new_statement();
  }
  // `feature` of snapshot `i`, narrowed to `pid` when the feature can be (then
  // other processes' rows may still be present: callers filter). nullptr when the
  // snapshot has no such section; why is in warnings().
  const SectionRows* section(size_t i, Feature feature, std::optional<int64_t> pid = {});
  // Every crawl and load so far, in order (the `frames` table); this statement's
  // problems, a line each.
  const std::vector<SectionRecord>& records() const { return records_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  // Whether any statement found a VM or a feature it could not read at all.
  bool any_failed() const { return any_failed_; }

 protected:
  // Makes the section (narrowed to `pid` if given and possible); an error when
  // the VM or the feature could not be read at all.
  virtual Result<SectionRows> make(size_t i, Feature feature, std::optional<int64_t> pid) = 0;
  virtual void on_new_statement() {}

 private:
  using Key = std::tuple<size_t, std::string_view, std::optional<int64_t>>;
  static constexpr int kMaxNarrowedCrawls = 3;
  std::map<Key, SectionRows> cache_;
  std::map<std::pair<size_t, std::string>, int> narrowed_;  // narrowed crawls this statement
  std::vector<SectionRecord> records_;
  std::vector<std::string> warnings_;
  uint64_t statement_ = 0;
  bool any_failed_ = false;
};

// Whether a crawl of `feature` can be narrowed to one process (its options take a pid).
bool narrows_by_pid(Feature feature);

}  // namespace nfm::query

namespace nfm {
struct VmSetOptions;
}

namespace nfm::query {

// `feature` of a crawled or stored frame as table rows (status.ok false when the
// frame lacks the section).
SectionRows section_of_frame(const Frame& frame, Feature feature);

// Live guests (explicit targets, or every QEMU guest on this host when there are
// none), attached when a statement first reads one and crawled afresh by each
// statement.
Result<std::unique_ptr<SnapshotSource>> open_live(const VmSetOptions& vms, CrawlBudget budget);

// Frames from a store ("sqlite:PATH", "clickhouse:URL"), loaded when first read.
Result<std::unique_ptr<SnapshotSource>> open_stored(std::string_view spec,
                                                    const FrameSelection& selection);

}  // namespace nfm::query
