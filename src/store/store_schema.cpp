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

}  // namespace nfm::store
