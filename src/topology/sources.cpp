#include "topology/sources.h"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "features/interfaces/rows.h"
#include "features/sockets/rows.h"
#include "frame/frame_crawler.h"

namespace nfm::topology {

namespace {

VmView crawl_one(const VmSet& set, const WatchedVm& vm, const CrawlBudget& budget) try {
  if (!vm.error.empty()) return {.vm = vm.id, .error = vm.error};
  auto kernel = set.attach(vm);
  if (!kernel) return {.vm = vm.id, .error = kernel.error().to_string()};
  FrameCrawler crawler(**kernel);
  Frame frame = crawler.crawl(
      {.features = {Feature::named(InterfaceList::kFeature), Feature::named(SocketList::kFeature)},
       .budget = budget});
  frame.meta.vm = vm.id;
  return view_of_frame(frame);
} catch (const std::exception& e) {
  // On a worker thread nothing else would catch it: one VM's failure stays its own.
  return {.vm = vm.id, .error = std::string("internal: ") + e.what()};
}

}  // namespace

Result<std::vector<VmView>> crawl_views(const VmSetOptions& options, const CrawlBudget& budget,
                                        unsigned threads) {
  VmSet set(options);
  const std::vector<WatchedVm> vms = set.scan().found;
  if (std::string why = first_unresolved_target(vms); !why.empty())
    return make_error(Errc::not_found, why);
  if (vms.empty())
    return make_error(Errc::not_found,
                      options.targets.empty() ? "no QEMU guests found on this host" : "no targets");
  std::vector<VmView> views(vms.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < vms.size();) views[i] = crawl_one(set, vms[i], budget);
  };
  // A few at a time: each attach holds a kernel profile in memory.
  if (!threads) threads = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
  std::vector<std::jthread> pool;
  for (unsigned t = 1; t < std::min<size_t>(threads, vms.size()); ++t) pool.emplace_back(work);
  work();
  pool.clear();  // joins: the views are complete only now
  return views;
}

Result<std::vector<VmView>> stored_views(std::string_view store_spec,
                                         const FrameSelection& selection, size_t max_frames,
                                         const std::function<void(size_t, size_t)>& progress) {
  NFM_ASSIGN(auto store, open_store(store_spec));
  NFM_ASSIGN(std::vector<StoredFrameRef> refs, select_frames(*store, selection));
  if (refs.size() > max_frames)
    return make_error(Errc::invalid_argument,
                      fmt::format("{}: {} frames in the time asked for, more than {} (narrow "
                                  "--since/--until, or raise --max-frames)",
                                  store->describe(), refs.size(), max_frames));
  std::vector<VmView> views;
  views.reserve(refs.size());
  for (const StoredFrameRef& ref : refs) {
    NFM_ASSIGN(Frame frame, store->load(ref.id));
    views.push_back(view_of_frame(frame));
    if (progress) progress(views.size(), refs.size());
  }
  return views;
}

}  // namespace nfm::topology
