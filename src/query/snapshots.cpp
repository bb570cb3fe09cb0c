#include "query/snapshots.h"

#include <fmt/core.h>

namespace nfm::query {

bool narrows_by_pid(Feature feature) {
  return feature.name() == "open_files" || feature.name() == "memory_maps";
}

namespace {

// "walk torn, 2 cmdline_errors"
std::string why_partial(const FeatureStatus& status) {
  std::string out;
  if (!status.walk.empty() && status.walk != "complete") out = "walk " + status.walk;
  for (const auto& [name, n] : status.errors)
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", n, name);
  return out;
}

}  // namespace

const SectionRows* SnapshotSource::section(size_t i, Feature feature, std::optional<int64_t> pid) {
  // A section that could not be read stays cached (not read again this statement) but
  // serves no rows.
  auto usable = [](const SectionRows& rows) { return rows.status.ok ? &rows : nullptr; };
  if (!narrows_by_pid(feature)) pid.reset();
  if (pid) {
    // A whole section made earlier in this statement serves every pid.
    auto whole = cache_.find(Key{i, feature.name(), std::nullopt});
    if (whole != cache_.end()) return usable(whole->second);
    // A join that asks pid by pid (listening_ports' fd) gets the whole section
    // after a few: each narrowed crawl walks the task list again.
    if (!cache_.contains(Key{i, feature.name(), pid}) &&
        ++narrowed_[{i, std::string(feature.name())}] > kMaxNarrowedCrawls)
      pid.reset();
  }
  const Key key{i, feature.name(), pid};
  if (auto cached = cache_.find(key); cached != cache_.end()) return usable(cached->second);
  Result<SectionRows> made = make(i, feature, pid);
  // A VM or feature that could not be read at all is a section that failed.
  SectionRows& rows =
      cache_
          .emplace(key,
                   made ? std::move(made).value()
                        : SectionRows{.feature = feature,
                                      .status = {.ok = false, .error = made.error().to_string()},
                                      .time_ns = known_time(i)})
          .first->second;
  const VmIdentity& vm = snapshots().at(i);
  records_.push_back({.statement = statement_,
                      .snapshot = i,
                      .vm = vm.name,
                      .host = vm.host,
                      .time_ns = rows.time_ns,
                      .feature = std::string(feature.name()),
                      .status = rows.status,
                      .pid = pid});
  any_failed_ |= !rows.status.ok;
  if (!rows.status.ok)
    warnings_.push_back(fmt::format("{}: {}: {}", vm.name, feature.name(), rows.status.error));
  else if (rows.status.partial())
    warnings_.push_back(fmt::format("{}: {}: rows may be missing ({})", vm.name, feature.name(),
                                    why_partial(rows.status)));
  return usable(rows);
}

SectionRows section_of_frame(const Frame& frame, Feature feature) {
  SectionRows out{.feature = feature, .time_ns = frame.meta.host_time_ns};
  if (auto status = frame.meta.features.find(feature); status != frame.meta.features.end())
    out.status = status->second;
  auto section = frame.sections.find(feature.name());
  if (section == frame.sections.end()) {
    if (out.status.error.empty()) out.status.error = "the frame has no such section";
    out.status.ok = false;
    return out;
  }
  schema::json j = feature.info().write(section->second);
  if (j.is_array()) {
    out.rows.reserve(j.size());
    for (schema::json& row : j) out.rows.push_back(std::move(row));
  } else {
    out.rows.push_back(std::move(j));
  }
  out.status.ok = true;
  return out;
}

}  // namespace nfm::query
