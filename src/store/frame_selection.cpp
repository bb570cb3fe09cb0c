// Choosing stored frames: the newest of each VM, the newest at a time, or every
// frame of a window. Readers of history (nfm query --store, nfm topology --store)
// share it.
#include <fmt/core.h>

#include <limits>

#include "store/frame_store.h"

namespace nfm {

Result<std::vector<StoredFrameRef>> select_frames(FrameStore& store,
                                                  const FrameSelection& selection) {
  constexpr size_t kAllFrames = std::numeric_limits<size_t>::max();
  constexpr uint64_t kEnd = std::numeric_limits<uint64_t>::max();
  NFM_ASSIGN(std::vector<StoredVm> vms, store.vms());
  const bool window = selection.window();
  const uint64_t since = selection.since_ns.value_or(0);
  const uint64_t until =
      window ? selection.until_ns.value_or(kEnd) : selection.at_ns.value_or(kEnd);
  std::vector<StoredFrameRef> out;
  for (const StoredVm& vm : vms) {
    if (!window && vm.first_ns > until) continue;  // no frame of it yet at that time
    NFM_ASSIGN(std::vector<StoredFrameRef> refs,
               store.frames(vm.vm.name, window ? since : vm.first_ns, until, kAllFrames));
    // frames() selects by name: keep only this VM's host.
    std::erase_if(refs, [&](const StoredFrameRef& r) { return r.vm.host != vm.vm.host; });
    if (refs.empty()) continue;
    if (!window) refs.erase(refs.begin(), refs.end() - 1);
    for (StoredFrameRef& r : refs) out.push_back(std::move(r));
  }
  if (out.empty())
    return make_error(Errc::not_found,
                      fmt::format("{}: no frames {}", store.describe(),
                                  window || selection.at_ns ? "in the time asked for"
                                                            : "(is nfm crawl writing to it?)"));
  return out;
}

}  // namespace nfm
