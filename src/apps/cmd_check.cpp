// nfm check: the rootkit checks on each guest. Exit status as chkrootkit and
// rkhunter users expect: 0 clean, 1 findings, 2 an error (or a check that could
// not decide, which is never reported as clean).
#include <fmt/core.h>

#include <algorithm>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/format.h"
#include "apps/guest_crawl.h"
#include "features/integrity/integrity.h"
#include "frame/frame_json.h"

namespace nfm::app {
namespace {

constexpr int kClean = 0, kFindings = 1, kError = 2;

struct CheckArgs {
  TargetArgs target;
  std::vector<std::string> targets;
  std::string only;
};

// The report of one target, or an error (printed) and nullopt.
std::optional<IntegrityReport> check_one(const CheckArgs& args, const std::string& target,
                                         const IntegrityOptions& options) {
  TargetArgs t = args.target;
  t.target = target;
  auto kernel = attach_or_report(t);
  if (!kernel) return std::nullopt;
  FrameCrawler crawler(*kernel);
  FrameOptions frame_options{.features = {Feature::named(IntegrityReport::kFeature)}};
  frame_options.feature_options.emplace(IntegrityReport::kFeature, options);
  Frame frame = crawler.crawl(frame_options);
  const IntegrityReport* report = frame.get<IntegrityReport>();
  if (!report) {
    const auto& status = frame.meta.features.at(Feature::named(IntegrityReport::kFeature));
    report_error(fmt::format("{}: {}", target, status.error));
    return std::nullopt;
  }
  return *report;
}

int run_check(const CheckArgs& args) {
  IntegrityOptions options;
  for (size_t start = 0; start <= args.only.size();) {
    size_t comma = std::min(args.only.find(',', start), args.only.size());
    if (comma > start) options.only.push_back(args.only.substr(start, comma - start));
    start = comma + 1;
  }
  // Unknown names are refused before any guest is read.
  if (auto known = known_checks(options.only); !known) {
    report_error("--only: " + known.error().message);
    return kError;
  }
  int status = kClean;
  schema::json all = schema::json::array();
  Output text;
  for (const std::string& target : args.targets) {
    auto report = check_one(args, target, options);
    if (!report) {
      status = std::max(status, kError);
      continue;
    }
    const bool undecided =
        std::any_of(report->checks.begin(), report->checks.end(),
                    [](const IntegrityCheck& c) { return c.status == "inconclusive"; });
    if (!report->findings.empty()) status = std::max(status, kFindings);
    if (undecided && report->findings.empty()) status = std::max(status, kError);
    schema::json j = check_json(*report);
    if (args.targets.size() > 1) {
      j["target"] = target;
      text.out += fmt::format("{}{}:\n", text.out.empty() ? "" : "\n", target);
    }
    all.push_back(std::move(j));
    format_check(text, *report, false);
  }
  if (args.target.json) {
    if (args.targets.size() == 1 && !all.empty())
      fmt::print("{}\n", dump_json(all[0], 1));
    else
      fmt::print("{}\n", dump_json(all, 1));
  } else {
    print(text);
  }
  return status;
}

}  // namespace

void register_check(CLI::App& app) {
  auto args = std::make_shared<CheckArgs>();
  CLI::App* cmd = app.add_subcommand(
      "check",
      "Rootkit checks: hidden processes and modules, syscall hooks (exit 0 clean, 1 findings, "
      "2 error or inconclusive)");
  add_targets_options(*cmd, args->target, args->targets);
  std::string names;
  for (const CheckInfo& c : integrity_checks())
    names += fmt::format("\n  {:<15} {}", c.name, c.doc);
  cmd->add_option("--only", args->only, "run only these checks (comma-separated):" + names);
  cmd->footer(
      "Each check compares views the guest kernel keeps of the same objects; what one view\n"
      "lacks and another shows is hiding (docs/check.md). A disagreement is read twice\n"
      "before it is reported; one that does not settle makes the check inconclusive.\n"
      "Exit status: 0 every check clean, 1 findings, 2 an error or an inconclusive check.");
  run_with_exit_status(*cmd, [args] { return run_check(*args); });
}

}  // namespace nfm::app
