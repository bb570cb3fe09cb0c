// The memory_maps feature: its columns and its place in the frame.
#include "features/feature.h"

#include "features/memory_maps/memory_maps.h"
#include "features/processes/processes.h"

namespace nfm {

namespace {

using R = MemoryMapRow;
using schema::json;

// The present pages of a VMA (`nfm maps --pages`): a list per row, not a column.
json pages_json(const MemoryMapRow& r) {
  json list = json::array();
  for (const MappedPage& p : r.pages)
    list.push_back({{"va", schema::hex_address(p.va)},
                    {"pa", schema::hex_address(p.pa)},
                    {"size", p.size},
                    {"writable", p.writable}});
  return list;
}

void read_pages(const json& row, const std::string& path, MemoryMapRow& r) {
  auto it = row.find("pages");
  if (it == row.end()) return;
  const std::string pages = schema::member_path(path, "pages");
  if (!it->is_array())
    schema::fail(pages, fmt::format("expected an array, got {}", it->type_name()));
  for (size_t i = 0; i < it->size(); ++i) {
    const std::string p = fmt::format("{}[{}]", pages, i);
    const json& o = schema::read_object((*it)[i], p);
    auto at = [&](const char* key) -> const json& {
      auto v = o.find(key);
      if (v == o.end()) schema::fail(schema::member_path(p, key), "missing");
      return *v;
    };
    r.pages.push_back({schema::read_address(at("va"), schema::member_path(p, "va")),
                       schema::read_address(at("pa"), schema::member_path(p, "pa")),
                       schema::read_integer<uint64_t>(at("size"), schema::member_path(p, "size")),
                       schema::read_boolean(at("writable"), schema::member_path(p, "writable"))});
  }
}

}  // namespace

const schema::Fields<MemoryMapRow>& memory_map_fields() {
  using schema::Column;
  using schema::field;
  using schema::Type;
  static const schema::Fields<MemoryMapRow> fields{{
      field("pid", &R::pid, "the process's id"),
      field("comm", &R::comm, "the process's command name"),
      schema::address_field("start", &R::start, "first address of the mapping"),
      schema::address_field("end", &R::end, "address past the mapping"),
      field("perms", &R::perms, "permissions as /proc/PID/maps shows them (\"r-xp\")"),
      field("offset", &R::offset, "file offset (0 for anonymous memory)", "bytes"),
      schema::custom_field<R>(
          Column{.name = "dev", .type = Type::text, .doc = "device as MAJOR:MINOR in hex"},
          [](const R& r) {
            return json(fmt::format("{:02x}:{:02x}", r.dev >> 20, r.dev & 0xfffff));
          },
          [](R& r, const json& v, const std::string& path) {
            r.dev = schema::parse_device_number(schema::read_string(v, path), path);
          }),
      field("inode", &R::inode, "the mapped file's inode number"),
      field("path", &R::path, "file path, [heap], [stack], [vdso], [anon:NAME] or \"\""),
      schema::address_field("vma", &R::vma, "struct vm_area_struct address"),
  }};
  return fields;
}

json memory_maps_json(const std::vector<MemoryMapRow>& rows, bool pages) {
  json out = json::array();
  for (const MemoryMapRow& r : rows) {
    json row = memory_map_fields().write(r);
    if (pages) row["pages"] = pages_json(r);
    out.push_back(std::move(row));
  }
  return out;
}

NFM_FEATURE(memory_maps) {
  FeatureInfo f{.name = "memory_maps",
                .aliases = {"maps"},
                .doc = "every process's memory maps, as /proc/PID/maps",
                .order = 100};
  set_rows_codec(f, &MemoryMapList::rows, memory_map_fields());
  // Rows may carry their pages (`nfm maps --pages --json`): read them back too.
  f.read = [](const json& j) -> std::any {
    if (!j.is_array())
      schema::fail("memory_maps", fmt::format("expected an array, got {}", j.type_name()));
    MemoryMapList list;
    for (size_t i = 0; i < j.size(); ++i) {
      const std::string path = fmt::format("memory_maps[{}]", i);
      list.rows.push_back(memory_map_fields().read(j[i], path));
      read_pages(j[i], path, list.rows.back());
    }
    return list;
  };
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    MemoryMapReader* reader = feature_reader<MemoryMapReader>(ctx, "memory_maps", status);
    if (!reader) return {};
    auto r = reader->list(ctx.options<MemoryMapOptions>("memory_maps"), shared_tasks(ctx));
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    status.walk = walk_end_name(r->walk.end);
    status.count_error("task_errors", r->task_errors);
    status.count_error("vma_walk_errors", r->vma_walk_errors);
    status.count_error("row_errors", r->row_errors);
    status.count_error("page_errors", r->page_errors);
    status.rows = r->rows.size();
    return std::move(*r);
  };
  return f;
}

}  // namespace nfm
