#include "frame/frame_json.h"

#include <fmt/core.h>

namespace nfm {

using json = nlohmann::json;

namespace {

json status_json(const FeatureStatus& s) {
  json j = {
      {"ok", s.ok}, {"partial", s.partial()}, {"rows", s.rows}, {"duration_ns", s.duration_ns}};
  if (!s.error.empty()) j["error"] = s.error;
  if (!s.walk.empty()) j["walk"] = s.walk;
  j["errors"] = json::object();
  for (const auto& [name, n] : s.errors) j["errors"][name] = n;
  j["skipped"] = json::object();
  for (const auto& [name, n] : s.skipped) j["skipped"][name] = n;
  return j;
}

json meta_json(const FrameMeta& m) {
  json features = json::object();
  for (const auto& [feature, status] : m.features)
    features[std::string(feature.name())] = status_json(status);
  json kernel = {{"release", m.kernel.release},
                 {"banner", m.kernel.banner},
                 {"symbols", m.kernel.symbols_source},
                 {"types", m.kernel.types_source}};
  if (!m.kernel.build_id.empty()) kernel["build_id"] = m.kernel.build_id;
  if (!m.kernel.warnings.empty()) kernel["warnings"] = m.kernel.warnings;
  const CrawlCost& c = m.cost;
  json j = {{"target", m.target},
            {"kernel", std::move(kernel)},
            {"host_time_ns", m.host_time_ns},
            {"duration_ns", m.duration_ns},
            {"cost",
             {{"reads", c.reads},
              {"bytes", c.bytes},
              {"syscalls", c.syscalls},
              {"read_failures", c.read_failures},
              {"page_walks", c.page_walks},
              {"translation_cache_hits", c.translation_cache_hits},
              {"direct_map_hits", c.direct_map_hits},
              {"translation_faults", c.translation_faults}}},
            {"features", std::move(features)}};
  if (!m.budget_spent.empty()) j["budget_spent"] = m.budget_spent;
  if (!m.vm.empty()) {
    json vm = {{"name", m.vm.name}, {"host", m.vm.host}, {"pid", m.vm.pid}};
    if (!m.vm.uuid.empty()) vm["uuid"] = m.vm.uuid;
    j["vm"] = std::move(vm);
  }
  return j;
}

// Reading: a JSON object with its path, for messages ("meta.cost.reads: missing").
class Obj {
 public:
  Obj(const json& j, std::string path) : j_(schema::read_object(j, path)), path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  const json& self() const { return j_; }
  bool has(const char* key) const { return j_.contains(key); }
  std::string sub(const char* key) const { return schema::member_path(path_, key); }
  const json& at(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end()) schema::fail(sub(key), "missing");
    return *it;
  }
  Obj object(const char* key) const { return Obj(at(key), sub(key)); }
  template <typename T>
  T integer(const char* key) const {
    return schema::read_integer<T>(at(key), sub(key));
  }
  bool boolean(const char* key) const { return schema::read_boolean(at(key), sub(key)); }
  std::string string(const char* key) const { return schema::read_string(at(key), sub(key)); }
  std::string string_or(const char* key, std::string fallback) const {
    return has(key) ? string(key) : std::move(fallback);
  }

 private:
  const json& j_;
  std::string path_;
};

std::map<std::string, uint64_t> parse_counts(const Obj& o) {
  std::map<std::string, uint64_t> out;
  for (const auto& [name, value] : o.self().items())
    out[name] = schema::read_integer<uint64_t>(value, o.path() + "." + name);
  return out;
}

FeatureStatus parse_status(const Obj& o) {
  FeatureStatus s;
  s.ok = o.boolean("ok");
  s.rows = o.integer<uint64_t>("rows");
  s.duration_ns = o.integer<uint64_t>("duration_ns");
  s.error = o.string_or("error", "");
  s.walk = o.string_or("walk", "");
  s.errors = parse_counts(o.object("errors"));
  s.skipped = parse_counts(o.object("skipped"));
  return s;
}

FrameMeta parse_meta(const Obj& o) {
  FrameMeta m;
  m.target = o.string("target");
  const Obj kernel = o.object("kernel");
  m.kernel.release = kernel.string("release");
  m.kernel.banner = kernel.string("banner");
  m.kernel.symbols_source = kernel.string("symbols");
  m.kernel.types_source = kernel.string("types");
  m.kernel.build_id = kernel.string_or("build_id", "");
  if (kernel.has("warnings"))
    for (const json& w : kernel.self().at("warnings"))
      if (w.is_string()) m.kernel.warnings.push_back(w.get<std::string>());
  m.host_time_ns = o.integer<uint64_t>("host_time_ns");
  m.duration_ns = o.integer<uint64_t>("duration_ns");
  const Obj cost = o.object("cost");
  CrawlCost& c = m.cost;
  c.reads = cost.integer<uint64_t>("reads");
  c.bytes = cost.integer<uint64_t>("bytes");
  c.syscalls = cost.integer<uint64_t>("syscalls");
  c.read_failures = cost.integer<uint64_t>("read_failures");
  c.page_walks = cost.integer<uint64_t>("page_walks");
  c.translation_cache_hits = cost.integer<uint64_t>("translation_cache_hits");
  c.direct_map_hits = cost.integer<uint64_t>("direct_map_hits");
  c.translation_faults = cost.integer<uint64_t>("translation_faults");
  m.budget_spent = o.string_or("budget_spent", "");
  const Obj features = o.object("features");
  for (const auto& [name, status] : features.self().items()) {
    const auto feature = Feature::find(name);
    if (!feature || feature->name() != name) continue;  // a newer writer's feature
    m.features[*feature] = parse_status(Obj(status, features.path() + "." + name));
  }
  if (o.has("vm")) {
    const Obj vm = o.object("vm");
    m.vm.name = vm.string("name");
    m.vm.host = vm.string("host");
    m.vm.pid = vm.integer<int64_t>("pid");
    m.vm.uuid = vm.string_or("uuid", "");
  }
  return m;
}

}  // namespace

json frame_meta_json(const Frame& f) {
  return {{"schema", "nfm.frame"}, {"version", kFrameSchemaVersion}, {"meta", meta_json(f.meta)}};
}

json frame_json(const Frame& f) {
  json j = frame_meta_json(f);
  for (Feature feature : all_features()) {
    auto it = f.sections.find(feature.name());
    if (it != f.sections.end()) j[std::string(feature.name())] = feature.info().write(it->second);
  }
  return j;
}

Result<Frame> frame_from_json(const json& j) {
  try {
    const Obj root(j, "");
    const std::string schema = root.string("schema");
    if (schema != "nfm.frame")
      return make_error(Errc::bad_format,
                        fmt::format("frame: schema is '{}', not 'nfm.frame'", schema));
    const int version = root.integer<int>("version");
    if (version != kFrameSchemaVersion)
      return make_error(Errc::unsupported,
                        fmt::format("frame: schema version {} (this nfm reads version {})", version,
                                    kFrameSchemaVersion));
    Frame f;
    f.meta = parse_meta(root.object("meta"));
    for (Feature feature : all_features()) {
      auto it = root.self().find(feature.name());
      if (it != root.self().end())
        f.sections.insert_or_assign(feature.name(), feature.info().read(*it));
    }
    return f;
  } catch (const schema::ParseError& e) {
    return make_error(Errc::bad_format, "frame: " + e.message);
  }
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace nfm
