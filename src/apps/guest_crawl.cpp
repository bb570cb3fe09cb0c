#include "apps/guest_crawl.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "apps/common.h"

namespace nfm::app {

Frame crawl_or_report(FrameCrawler& crawler, const FrameOptions& options,
                      const std::vector<Feature>& required) {
  Frame frame = crawler.crawl(options);
  for (const auto& [feature, status] : frame.meta.features) {
    const bool needed =
        required.empty() || std::find(required.begin(), required.end(), feature) != required.end();
    if (!status.ok && needed) throw CLI::RuntimeError(report_error(status.error));
    if (!status.ok || status.errors.empty()) continue;
    std::string counts;
    for (const auto& [name, n] : status.errors)
      counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, name);
    fmt::print(stderr, "nfm: warning: {}: rows may be missing or incomplete ({})\n",
               feature.name(), counts);
  }
  return frame;
}

}  // namespace nfm::app
