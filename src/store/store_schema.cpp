#include "store/store_schema.h"

#include <algorithm>

#include "frame/frame_json.h"

namespace nfm::store {

using json = nlohmann::json;

namespace {

std::vector<FeatureTable> make_tables() {
  std::vector<FeatureTable> tables;
  for (Feature feature : all_features()) {
    FeatureTable t{feature, std::string(feature.name()), feature.info().single_row, {}};
    for (const schema::Column& c : feature.info().columns)
      t.columns.push_back({std::string(c.name), c.type, c.nullable, c.fallback});
    tables.push_back(std::move(t));
  }
  return tables;
}

}  // namespace

const std::vector<FeatureTable>& feature_tables() {
  static const std::vector<FeatureTable> tables = make_tables();
  return tables;
}

void append_value_key(std::string& out, const json& v) {
  auto raw = [&](auto x) { out.append(reinterpret_cast<const char*>(&x), sizeof x); };
  auto text = [&](char tag, const std::string& t) {
    out += tag;
    raw(static_cast<uint64_t>(t.size()));
    out += t;
  };
  switch (v.type()) {
    case json::value_t::number_unsigned:
      out += 'u';
      raw(v.get<uint64_t>());
      break;
    case json::value_t::number_integer:
      out += 'i';
      raw(v.get<int64_t>());
      break;
    case json::value_t::number_float:
      out += 'f';
      raw(v.get<double>());
      break;
    case json::value_t::boolean:
      out += v.get<bool>() ? 'T' : 'F';
      break;
    case json::value_t::null:
      out += 'n';
      break;
    case json::value_t::discarded:
      out += 'd';
      break;
    case json::value_t::string:
      text('s', v.get_ref<const std::string&>());
      break;
    default:  // lists
      text('j', dump_json(v, -1));
  }
}

Result<json> match_versions(const FeatureTable& t, const std::any& section, LiveRows& live,
                            const VersionWriter& writer) {
  LiveRows now;
  json runs = json::array();
  int64_t run_first = 0, run_count = 0;
  Result<void> failed;
  std::string key;
  t.feature.info().each_row(section, [&](const std::vector<json>& values) {
    if (!failed) return;
    key.clear();
    for (const json& v : values) append_value_key(key, v);
    int64_t row_id = 0;
    if (auto seen = now.find(key); seen != now.end()) {
      row_id = seen->second;  // the same row twice in one frame: one version
    } else if (auto kept = live.find(key); kept != live.end()) {
      row_id = kept->second;
      live.erase(kept);
      now.emplace(key, row_id);
    } else {
      auto added = writer.add(values);
      if (!added) {
        failed = added.error();
        return;
      }
      row_id = *added;
      now.emplace(key, row_id);
    }
    if (run_count && row_id == run_first + run_count) {
      ++run_count;
    } else {
      if (run_count) runs.push_back({run_first, run_count});
      run_first = row_id;
      run_count = 1;
    }
  });
  if (!failed) return failed.error();
  if (run_count) runs.push_back({run_first, run_count});
  for (const auto& [_, row_id] : live) NFM_TRY(writer.end(row_id));
  live = std::move(now);
  return runs;
}

}  // namespace nfm::store
