// Stored frames as snapshots: which frames is decided once (the newest of each
// VM, the newest at a time, or every frame of a window); each is loaded from the
// store the first time a statement reads it and kept, since stored frames do not
// change.
#include <fmt/core.h>

#include <limits>

#include "query/snapshots.h"
#include "store/frame_store.h"

namespace nfm::query {

namespace {

constexpr size_t kMaxLoadedFrames = 64;

class StoredSnapshots final : public SnapshotSource {
 public:
  static Result<std::unique_ptr<StoredSnapshots>> open(std::string_view spec,
                                                       const FrameSelection& selection) {
    NFM_ASSIGN(auto store, open_store(spec));
    auto out = std::unique_ptr<StoredSnapshots>(new StoredSnapshots(std::move(store)));
    NFM_TRY(out->select(selection));
    return out;
  }

  const std::vector<VmIdentity>& snapshots() const override { return ids_; }
  uint64_t known_time(size_t i) const override { return refs_.at(i).host_time_ns; }

 protected:
  Result<SectionRows> make(size_t i, Feature feature, std::optional<int64_t>) override {
    auto it = frames_.find(i);
    if (it == frames_.end()) {
      // History over a long window reads many frames: keep a bounded number loaded
      // (a statement's own sections stay cached by SnapshotSource).
      if (frames_.size() >= kMaxLoadedFrames) frames_.clear();
      NFM_ASSIGN(Frame frame, store_->load(refs_.at(i).id));
      it = frames_.emplace(i, std::move(frame)).first;
    }
    return section_of_frame(it->second, feature);
  }

 private:
  explicit StoredSnapshots(std::unique_ptr<FrameStore> store) : store_(std::move(store)) {}

  Result<void> select(const FrameSelection& selection) {
    NFM_ASSIGN(refs_, select_frames(*store_, selection));
    for (const StoredFrameRef& r : refs_) ids_.push_back(r.vm);
    return {};
  }

  std::unique_ptr<FrameStore> store_;
  std::vector<StoredFrameRef> refs_;
  std::vector<VmIdentity> ids_;
  std::map<size_t, Frame> frames_;
};

}  // namespace

Result<std::unique_ptr<SnapshotSource>> open_stored(std::string_view spec,
                                                    const FrameSelection& selection) {
  NFM_ASSIGN(auto source, StoredSnapshots::open(spec, selection));
  return std::unique_ptr<SnapshotSource>(std::move(source));
}

}  // namespace nfm::query
