// Where the topology's views come from: live guests crawled now (their interfaces
// and sockets only), or frames a store kept.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "crawler/vm_set.h"
#include "store/frame_store.h"
#include "topology/graph.h"
#include "util/result.h"

namespace nfm::topology {

// Crawls each VM of the set once (explicit targets, or every QEMU guest on this
// host), a few at a time (`threads`; 0: up to 4). A VM that cannot be attached or read is still a
// view, with its error; an explicit target that names nothing is an error.
Result<std::vector<VmView>> crawl_views(const VmSetOptions& vms, const CrawlBudget& budget,
                                        unsigned threads = 0);

// The frames `selection` picks from the store ("sqlite:PATH", "clickhouse:URL"),
// at most `max_frames` of them (else an error that says how many there are).
// `progress(loaded, total)` is called after each frame when given.
Result<std::vector<VmView>> stored_views(std::string_view store_spec,
                                         const FrameSelection& selection, size_t max_frames,
                                         const std::function<void(size_t, size_t)>& progress = {});

}  // namespace nfm::topology
