// Live guests as snapshots: each VM attached on first read, each statement's
// sections crawled through the VM's own FrameCrawler (which keeps each feature's
// resolved layout from one statement to the next).
#include <fmt/core.h>

#include "crawler/vm_set.h"
#include "features/memory_maps/rows.h"
#include "features/open_files/rows.h"
#include "frame/frame_crawler.h"
#include "query/snapshots.h"

namespace nfm::query {

namespace {

class LiveSnapshots final : public SnapshotSource {
 public:
  LiveSnapshots(const VmSetOptions& options, CrawlBudget budget) : set_(options), budget_(budget) {
    for (WatchedVm& vm : set_.scan().found) {
      ids_.push_back(vm.id);
      watched_.push_back(vm);
      vms_.push_back({.watched = std::move(vm)});
    }
  }

  const std::vector<VmIdentity>& snapshots() const override { return ids_; }
  uint64_t known_time(size_t) const override { return 0; }
  // Why the first explicit target that names nothing does so, or "".
  std::string unresolved() const { return first_unresolved_target(watched_); }

 protected:
  Result<SectionRows> make(size_t i, Feature feature, std::optional<int64_t> pid) override {
    Vm& vm = vms_.at(i);
    if (!vm.crawler) {
      // One attach attempt per statement: a guest that is still booting may be
      // readable by the next one.
      if (vm.attach_error) return *vm.attach_error;
      if (!vm.watched.error.empty())
        return *(vm.attach_error = make_error(Errc::not_found, vm.watched.error));
      auto kernel = set_.attach(vm.watched);
      if (!kernel) return *(vm.attach_error = kernel.error());
      vm.kernel = std::move(kernel).value();
      vm.crawler = std::make_unique<FrameCrawler>(*vm.kernel);
    }
    FrameOptions options{.features = {feature}, .budget = budget_};
    if (pid && feature.name() == "open_files")
      options.feature_options.emplace(feature.name(),
                                      OpenFileOptions{.pid = static_cast<int32_t>(*pid)});
    if (pid && feature.name() == "memory_maps")
      options.feature_options.emplace(feature.name(),
                                      MemoryMapOptions{.pid = static_cast<int32_t>(*pid)});
    SectionRows rows = section_of_frame(vm.crawler->crawl(options), feature);
    rows.narrowed = pid.has_value();
    return rows;
  }

  void on_new_statement() override {
    for (Vm& vm : vms_) vm.attach_error.reset();
  }

 private:
  struct Vm {
    WatchedVm watched;
    std::unique_ptr<Kernel> kernel;
    std::unique_ptr<FrameCrawler> crawler;
    std::optional<Error> attach_error;
  };
  VmSet set_;
  CrawlBudget budget_;
  std::vector<Vm> vms_;
  std::vector<WatchedVm> watched_;
  std::vector<VmIdentity> ids_;
};

}  // namespace

Result<std::unique_ptr<SnapshotSource>> open_live(const VmSetOptions& vms, CrawlBudget budget) {
  auto source = std::make_unique<LiveSnapshots>(vms, budget);
  if (std::string why = source->unresolved(); !why.empty()) return make_error(Errc::not_found, why);
  if (source->snapshots().empty())
    return make_error(Errc::not_found,
                      vms.targets.empty() ? "no QEMU guests found on this host" : "no targets");
  return std::unique_ptr<SnapshotSource>(std::move(source));
}

}  // namespace nfm::query
