// The open_files feature: its columns and its place in the frame.
#include "features/feature.h"
#include "features/open_files/open_files.h"
#include "features/processes/processes.h"

namespace nfm {

namespace {

using R = OpenFileRow;
using schema::Column;
using schema::json;
using schema::Type;

// A socket's kernel objects, written only for sockets.
schema::Field<R> socket_address(std::string_view name, uint64_t R::*member, std::string_view doc) {
  return schema::custom_field<R>(
      Column{.name = name, .type = Type::text, .doc = doc, .optional = true, .fallback = ""},
      [member](const R& r) { return r.socket ? json(schema::hex_address(r.*member)) : schema::omitted(); },
      [member](R& r, const json& v, const std::string& path) {
        r.*member = schema::read_address(v, path);
      });
}

}  // namespace

const schema::Fields<OpenFileRow>& open_file_fields() {
  using schema::field;
  static const schema::Fields<OpenFileRow> fields{{
      field("pid", &R::pid, "the process's id"),
      field("comm", &R::comm, "the process's command name"),
      field("fd", &R::fd, "file descriptor"),
      field("type", &R::type, "file, dir, socket, pipe, fifo, anon, char, block, link, unknown"),
      field("path", &R::path, "as readlink(/proc/PID/fd/N) gives it"),
      field("inode", &R::inode, "i_ino"),
      field("pos", &R::pos, "file position (fdinfo pos)", "bytes"),
      schema::custom_field<R>(
          Column{.name = "flags", .type = Type::text, .doc = "f_flags in octal, as fdinfo shows them"},
          [](const R& r) { return json(fmt::format("0{:o}", r.flags)); },
          [](R& r, const json& v, const std::string& path) {
            const uint64_t flags = schema::parse_number(schema::read_string(v, path), path, "0", 8);
            if (flags > 0xffffffffu) schema::fail(path, "out of range");
            r.flags = static_cast<uint32_t>(flags);
          }),
      schema::custom_field<R>(
          Column{.name = "dev", .type = Type::text, .doc = "device as MAJOR:MINOR in hex"},
          [](const R& r) { return json(fmt::format("{:x}:{:x}", r.dev >> 20, r.dev & 0xfffff)); },
          [](R& r, const json& v, const std::string& path) {
            r.dev = schema::parse_device_number(schema::read_string(v, path), path);
          }),
      field("fs_type", &R::fs_type, "file system type (\"ext4\", \"sockfs\", ...)"),
      schema::address_field("file", &R::file, "struct file address"),
      socket_address("socket", &R::socket, "sockets: struct socket address"),
      socket_address("sock", &R::sock, "sockets: struct sock address"),
  }};
  return fields;
}

NFM_FEATURE(open_files) {
  FeatureInfo f{.name = "open_files",
                .aliases = {"lsof"},
                .doc = "every process's open files, as /proc/PID/fd and fdinfo",
                .order = 90};
  set_rows_codec(f, &OpenFileList::rows, open_file_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    OpenFileReader* reader = feature_reader<OpenFileReader>(ctx, "open_files", status);
    if (!reader) return {};
    auto r = reader->list(ctx.options<OpenFileOptions>("open_files"), shared_tasks(ctx));
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    status.walk = walk_end_name(r->walk.end);
    status.count_error("task_errors", r->task_errors);
    status.count_error("row_errors", r->row_errors);
    status.count_error("truncated_tables", r->truncated_tables);
    status.rows = r->rows.size();
    return std::move(*r);
  };
  return f;
}

}  // namespace nfm
