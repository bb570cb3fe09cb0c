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

std::vector<const json*> section_rows(const FeatureTable& table, const json& frame) {
  std::vector<const json*> rows;
  auto it = frame.find(table.name);
  if (it == frame.end()) return rows;
  if (table.object) {
    if (it->is_object()) rows.push_back(&*it);
  } else if (it->is_array()) {
    for (const json& row : *it)
      if (row.is_object()) rows.push_back(&row);
  }
  return rows;
}

const json& column_value(const Column& column, const json& row) {
  auto it = row.find(column.name);
  return it == row.end() ? column.fallback : *it;
}

void KmsgDedup::begin_frame(const std::string& vm, const json& kmsg_rows) {
  auto it = last_seen_.find(vm);
  have_ = it != last_seen_.end();
  last_ = have_ ? it->second : Last{};
  any_ = false;
  max_ = {};
  if (!kmsg_rows.is_array()) return;
  bool rebooted = false;
  for (const json& r : kmsg_rows) {
    auto seq = r.find("seq");
    auto ts = r.find("ts_ns");
    if (seq == r.end() || !seq->is_number_unsigned() || ts == r.end() || !ts->is_number_unsigned())
      continue;
    const Last record{seq->get<uint64_t>(), ts->get<uint64_t>()};
    if (!any_ || record.seq > max_.seq) max_ = record;
    any_ = true;
    if (have_ && record.seq == last_.seq && record.ts_ns != last_.ts_ns) rebooted = true;
  }
  if (have_ && any_ && (rebooted || max_.seq < last_.seq)) have_ = false;
}

void KmsgDedup::end_frame(const std::string& vm) {
  if (any_ && (!have_ || max_.seq > last_.seq)) last_seen_[vm] = max_;
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

int64_t frame_key(const FrameMeta& meta) {
  // FNV-1a over the VM's identity and the frame's time.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    h = (h ^ 0xff) * 0x100000001b3ull;
  };
  mix(meta.vm.host);
  mix(meta.vm.name);
  mix(meta.vm.uuid);
  mix(std::to_string(meta.vm.pid));
  mix(std::to_string(meta.host_time_ns));
  mix(meta.target);
  return static_cast<int64_t>(h & 0x7fffffffffffffffull);
}

}  // namespace nfm::store
