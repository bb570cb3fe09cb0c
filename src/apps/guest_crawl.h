// How single commands (nfm ps, lsmod, ...) read a guest: through the same frame
// crawler as `nfm frame` and `nfm crawl`, so that they report what frames report.
#pragma once

#include <CLI/CLI.hpp>
#include <any>
#include <string>
#include <vector>

#include "frame/frame_crawler.h"

namespace nfm::app {

// --max-crawl-bytes and --max-crawl-time, for commands that crawl (docs/security.md).
struct BudgetArgs {
  std::string max_bytes;
  std::string max_time;
};
void add_budget_options(CLI::App& cmd, BudgetArgs& args);
// The budget asked for (defaults where not); throws CLI::RuntimeError after
// "nfm: error: --max-crawl-bytes: ..." on bad input.
CrawlBudget crawl_budget(const BudgetArgs& args);
// The same, the error returned ("--max-crawl-bytes: ...").
Result<CrawlBudget> parse_crawl_budget(const BudgetArgs& args);

// One crawl of `options.features`. A feature in `required` (default: all asked
// for) that failed as a whole ends the command: "nfm: error: REASON", exit 1.
// A feature whose rows are partial gets one warning on stderr naming its error
// counts ("nfm: warning: processes: rows may be missing (2 cmdline_errors)").
Frame crawl_or_report(FrameCrawler& crawler, const FrameOptions& options,
                      const std::vector<Feature>& required = {});

// The section S of one crawl of its feature alone, with that feature's `options`.
template <typename S>
S crawl_section(Kernel& kernel, std::any options = {}) {
  FrameCrawler crawler(kernel);
  FrameOptions frame_options{.features = {Feature::named(S::kFeature)}};
  if (options.has_value()) frame_options.feature_options.emplace(S::kFeature, std::move(options));
  Frame frame = crawl_or_report(crawler, frame_options);
  return std::move(*frame.get<S>());
}

}  // namespace nfm::app
