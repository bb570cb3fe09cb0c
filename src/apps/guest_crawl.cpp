#include "apps/guest_crawl.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "apps/common.h"
#include "crawler/crawler.h"
#include "host/qemu/cmdline.h"

namespace nfm::app {

void add_budget_options(CLI::App& cmd, BudgetArgs& args) {
  const CrawlBudget defaults;
  cmd.add_option("--max-crawl-bytes", args.max_bytes,
                 "guest memory one crawl of one VM may read (e.g. 256M, 2G; default twice "
                 "the guest's RAM, from 512M to 4G): a guest cannot make its crawl cost more");
  cmd.add_option(
      "--max-crawl-time", args.max_time,
      fmt::format("how long one crawl of one VM may take (e.g. 500ms, 30s; default "
                  "{}s)",
                  std::chrono::duration_cast<std::chrono::seconds>(defaults.max_time).count()));
}

Result<CrawlBudget> parse_crawl_budget(const BudgetArgs& args) {
  CrawlBudget budget;
  if (!args.max_bytes.empty()) {
    auto bytes = parse_qemu_size(args.max_bytes, 0);
    if (!bytes || *bytes == 0)
      return make_error(Errc::invalid_argument,
                        "--max-crawl-bytes: " +
                            (bytes ? std::string("must be more than 0") : bytes.error().message));
    budget.max_bytes = *bytes;
  }
  if (!args.max_time.empty()) {
    auto time = parse_duration(args.max_time);
    if (!time || time->count() <= 0)
      return make_error(Errc::invalid_argument,
                        "--max-crawl-time: " +
                            (time ? std::string("must be more than 0") : time.error().message));
    budget.max_time = *time;
  }
  return budget;
}

CrawlBudget crawl_budget(const BudgetArgs& args) {
  auto budget = parse_crawl_budget(args);
  if (!budget) throw CLI::RuntimeError(report_error(budget.error().message));
  return *budget;
}

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
    fmt::print(stderr, "nfm: warning: {}: rows may be missing or incomplete ({})\n", feature.name(),
               counts);
  }
  return frame;
}

}  // namespace nfm::app
