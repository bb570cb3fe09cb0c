// A feature is one section of a frame (processes, modules, ...). Each registers
// itself from its own directory under src/features/ (a feature.cpp with
// NFM_FEATURE): its name, its columns (schema/fields.h), its JSON both ways and
// how to crawl it. The frame crawler, the frame JSON, the stores and the schema
// document go through this registry; nothing else lists the features.
//
// This header knows no kernel internals: the stores and apps include it.
#pragma once

#include <fmt/core.h>

#include <any>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schema/fields.h"
#include "util/result.h"

namespace nfm {

class Kernel;
struct ProcessOptions;

// How one feature's part of the crawl went. A feature either produced rows (maybe
// partial: a walk that ended early, rows skipped) or failed as a whole (`error`).
struct FeatureStatus {
  bool ok = false;
  std::string error;                        // why it failed, when !ok
  std::string walk;                         // how its main walk ended ("complete", "torn", ...)
  std::map<std::string, uint64_t> errors;   // items lost to bad reads or torn data (non-zero)
  std::map<std::string, uint64_t> skipped;  // items absent for normal reasons (non-zero)
  uint64_t rows = 0;
  uint64_t duration_ns = 0;
  bool partial() const { return !ok || (!walk.empty() && walk != "complete") || !errors.empty(); }
  // Counters of a reader's result, kept only when non-zero.
  void count_error(const char* name, uint64_t n) {
    if (n) errors[name] = n;
  }
  void count_skipped(const char* name, uint64_t n) {
    if (n) skipped[name] = n;
  }
};

// A frame's sections by feature name; each value is that feature's section type
// (ProcessList, UnameInfo, ...), whose `kFeature` names it.
using Sections = std::map<std::string_view, std::any, std::less<>>;

// Options for features by feature name, each that feature's own options type
// (OpenFileOptions for "open_files", ...): what single commands narrow (lsof -p).
using FeatureOptions = std::map<std::string, std::any, std::less<>>;

// What a feature's crawl function is given: the kernel, the options, the sections
// this crawl already produced (features run in frame order) and a place for state
// that lives from one crawl to the next (a reader with its resolved layout).
class CrawlContext {
 public:
  explicit CrawlContext(Kernel& kernel) : kernel_(&kernel) {}
  Kernel& kernel() { return *kernel_; }

  // Called by the frame crawler before each crawl.
  void begin(const ProcessOptions& processes, const FeatureOptions& options,
             const Sections& sections) {
    processes_ = &processes;
    options_ = &options;
    sections_ = &sections;
    scratch_.clear();
  }
  const ProcessOptions& process_options() const { return *processes_; }
  // The options given for `feature`, or the options type's defaults.
  template <typename Options>
  Options options(std::string_view feature) const {
    auto it = options_->find(feature);
    if (it == options_->end()) return Options{};
    const Options* o = std::any_cast<Options>(&it->second);
    return o ? *o : Options{};
  }
  template <typename Section>
  const Section* section() const {
    auto it = sections_->find(Section::kFeature);
    return it == sections_->end() ? nullptr : std::any_cast<Section>(&it->second);
  }
  // A value kept across crawls, made on first use.
  template <typename T>
  T& state(std::string_view key) {
    return slot<T>(state_, key);
  }
  // A value shared by the features of this crawl only (the task list).
  template <typename T>
  T& scratch(std::string_view key) {
    return slot<T>(scratch_, key);
  }

 private:
  using Slots = std::map<std::string, std::shared_ptr<void>, std::less<>>;
  template <typename T>
  static T& slot(Slots& slots, std::string_view key) {
    auto it = slots.find(key);
    if (it == slots.end()) it = slots.emplace(std::string(key), std::make_shared<T>()).first;
    return *static_cast<T*>(it->second.get());
  }
  Kernel* kernel_;
  const ProcessOptions* processes_ = nullptr;
  const FeatureOptions* options_ = nullptr;
  const Sections* sections_ = nullptr;
  Slots state_, scratch_;
};

// Everything the rest of nfm knows about one feature.
struct FeatureInfo {
  std::string_view name;                  // section, JSON key, store table
  std::vector<std::string_view> aliases;  // the command names users know ("ps")
  std::string_view doc;                   // one line for the schema document
  int order = 0;                          // place in the frame and in the crawl
  bool single_row = false;                // one object (uname), not an array of rows
  bool on_request = false;                // not in "all": it needs options of its own (scan: rules)
  std::vector<schema::Column> columns;
  std::function<schema::json(const std::any&)> write;
  std::function<std::any(const schema::json&)> read;  // throws schema::ParseError
  // The section's rows without building its JSON: for each row, its columns' values
  // in `columns` order (discarded: an optional key left out). For stores that bind
  // columns (SQLite).
  using RowVisitor = std::function<void(const std::vector<schema::json>& values)>;
  std::function<void(const std::any&, const RowVisitor&)> each_row;
  // The section, or an empty value with status.error set. Sets rows, walk and
  // the error counters of `status`.
  std::function<std::any(CrawlContext&, FeatureStatus&)> crawl;
};

// A registered feature: a cheap handle, ordered by frame order.
class Feature {
 public:
  // By name or alias ("processes" or "ps").
  static std::optional<Feature> find(std::string_view name);
  // A feature that the calling code is built with; aborts on a typo.
  static Feature named(std::string_view name);
  const FeatureInfo& info() const { return *info_; }
  std::string_view name() const { return info_->name; }
  friend bool operator==(Feature a, Feature b) { return a.info_ == b.info_; }
  friend auto operator<=>(Feature a, Feature b) { return a.info_->order <=> b.info_->order; }

 private:
  explicit Feature(const FeatureInfo* info) : info_(info) {}
  friend const std::vector<Feature>& all_features();
  const FeatureInfo* info_;
};

// Every feature, in frame order.
const std::vector<Feature>& all_features();
// What "all" means to users (--features all, a frame's default): every feature but
// those only on request (FeatureInfo::on_request), in frame order.
const std::vector<Feature>& default_features();
inline std::string_view feature_name(Feature feature) {
  return feature.name();
}
inline std::optional<Feature> parse_feature(std::string_view name) {
  return Feature::find(name);
}
// "ps,lsmod" style lists: feature names or aliases, or "all" (every feature but those
// only on request). Unknown names are an error.
Result<std::vector<Feature>> parse_feature_list(std::string_view list);

// The JSON of a section that is an array of rows (`rows` of Section).
template <typename Section, typename Row>
void set_rows_codec(FeatureInfo& info, std::vector<Row> Section::*rows,
                    const schema::Fields<Row>& fields) {
  info.columns = fields.columns();
  info.write = [rows, &fields](const std::any& section) {
    schema::json out = schema::json::array();
    for (const Row& r : std::any_cast<const Section&>(section).*rows)
      out.push_back(fields.write(r));
    return out;
  };
  info.each_row = [rows, &fields](const std::any& section, const FeatureInfo::RowVisitor& visit) {
    std::vector<schema::json> values(fields.fields().size());
    for (const Row& r : std::any_cast<const Section&>(section).*rows) {
      for (size_t i = 0; i < values.size(); ++i) values[i] = fields.fields()[i].write(r);
      visit(values);
    }
  };
  info.read = [rows, &fields, name = std::string(info.name)](const schema::json& j) {
    if (!j.is_array()) schema::fail(name, fmt::format("expected an array, got {}", j.type_name()));
    Section section{};
    for (size_t i = 0; i < j.size(); ++i)
      (section.*rows).push_back(fields.read(j[i], fmt::format("{}[{}]", name, i)));
    return std::any(std::move(section));
  };
}

// The JSON of a section that is one object.
template <typename Section>
void set_object_codec(FeatureInfo& info, const schema::Fields<Section>& fields) {
  info.single_row = true;
  info.columns = fields.columns();
  info.write = [&fields](const std::any& section) {
    return fields.write(std::any_cast<const Section&>(section));
  };
  info.each_row = [&fields](const std::any& section, const FeatureInfo::RowVisitor& visit) {
    std::vector<schema::json> values;
    values.reserve(fields.fields().size());
    for (const auto& f : fields.fields())
      values.push_back(f.write(std::any_cast<const Section&>(section)));
    visit(values);
  };
  info.read = [&fields, name = std::string(info.name)](const schema::json& j) {
    return std::any(fields.read(j, name));
  };
}

// Reader types with `static Result<Reader> create(Kernel&)`, made once per kernel
// and kept in the context: the layout is resolved on first use. nullptr (and
// status.error) when this kernel cannot provide the feature.
template <typename Reader>
Reader* feature_reader(CrawlContext& ctx, std::string_view key, FeatureStatus& status) {
  auto& slot = ctx.state<std::optional<Result<Reader>>>(key);
  if (!slot) slot.emplace(Reader::create(ctx.kernel()));
  if (!*slot) {
    status.error = (*slot).error().to_string();
    return nullptr;
  }
  return &(*slot).value();
}

}  // namespace nfm

// Defines the registration function of the feature in this directory: CMake
// collects one per src/features/*/feature.cpp into the registry.
#define NFM_FEATURE(dir) ::nfm::FeatureInfo nfm_feature_##dir()
