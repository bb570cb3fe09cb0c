// A feature's columns, declared once beside its row type: name, type, unit and
// meaning, and how the value is written to and read from JSON. From that one list
// come the frame's JSON both ways, the stores' tables and the schema document
// (docs/frame-schema.md). Knows nothing of kernels: row headers include only this.
//
//   const schema::Fields<MemInfo>& meminfo_fields() {
//     static const schema::Fields<MemInfo> fields{
//         schema::field("total_kb", &MemInfo::total_kb, "MemTotal", "kB"), ...};
//     return fields;
//   }
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace nfm::schema {

using json = nlohmann::json;

enum class Type {
  int64,      // JSON integer; SQLite INTEGER, ClickHouse Int64
  uint64,     // JSON integer >= 0; SQLite INTEGER, ClickHouse UInt64
  real,       // JSON number; SQLite REAL, ClickHouse Float64
  text,       // JSON string (addresses are "0x..." strings); SQLite TEXT, ClickHouse String
  boolean,    // JSON true/false; SQLite INTEGER 0/1, ClickHouse UInt8
  text_list,  // JSON array of strings; SQLite TEXT (a JSON array), ClickHouse Array(String)
};
std::string_view type_name(Type type);  // "integer", "string", ... as the schema doc says

// What every consumer of a column needs to know, whatever the row type.
struct Column {
  std::string_view name;  // the JSON key, the store column, the SQL column
  Type type = Type::text;
  std::string_view unit;  // "kB", "ns", "bytes", "" when none
  std::string_view doc;   // one line: what the value means, where the guest keeps it
  bool nullable = false;  // JSON null is a value (no owner, unknown)
  bool optional = false;  // the key is left out when the value is its default...
  json fallback;          // ...which then stands for it (stores fill it in)
  bool derived = false;   // computed from other columns: written, never read back
};

// Reading a frame fails on the first bad value with its JSON path; readers throw
// this and frame_from_json turns it into an Error.
struct ParseError {
  std::string message;
};
[[noreturn]] void fail(const std::string& path, const std::string& what);
std::string member_path(const std::string& path, std::string_view key);

// Typed reads of JSON values: "expected an integer, got string", "... is out of range".
int64_t read_int64(const json& v, const std::string& path, int64_t min, int64_t max);
uint64_t read_uint64(const json& v, const std::string& path, uint64_t max);
template <typename T>
T read_integer(const json& v, const std::string& path) {
  if constexpr (std::is_unsigned_v<T>)
    return static_cast<T>(read_uint64(v, path, std::numeric_limits<T>::max()));
  else
    return static_cast<T>(
        read_int64(v, path, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
}
double read_number(const json& v, const std::string& path);
bool read_boolean(const json& v, const std::string& path);
std::string read_string(const json& v, const std::string& path);
std::vector<std::string> read_strings(const json& v, const std::string& path);
// `text` as a base-`base` number after `prefix` ("0x1f", "0644").
uint64_t parse_number(std::string_view text, const std::string& path, std::string_view prefix,
                      int base);
// 64-bit addresses are hex strings in JSON: numbers above 2^53 lose precision in jq.
std::string hex_address(uint64_t address);
uint64_t read_address(const json& v, const std::string& path);
// A device number as "MAJOR:MINOR" in hex ("fe:01") back to the kernel's
// encoding, major << 20 | minor.
uint32_t parse_device_number(const std::string& text, const std::string& path);
// The object at `v`, or a failure naming what it was.
const json& read_object(const json& v, const std::string& path);

// One column of rows of type Row.
template <typename Row>
struct Field {
  Column column;
  // The JSON value; a discarded value leaves the key out (Column::optional).
  std::function<json(const Row&)> write;
  // Sets the row's value from `value` at `path`; throws ParseError. Empty for
  // derived columns.
  std::function<void(Row&, const json& value, const std::string& path)> read;
};

// The value a `write` returns to leave an optional key out.
inline json omitted() {
  return json(json::value_t::discarded);
}

// The columns of Row, in declaration order, with the row's JSON both ways.
template <typename Row>
class Fields {
 public:
  // `after_read` completes a row read back from JSON (values the JSON does not carry).
  Fields(std::vector<Field<Row>> fields, std::function<void(Row&)> after_read = nullptr)
      : fields_(std::move(fields)), after_read_(std::move(after_read)) {}

  json write(const Row& row) const {
    json out = json::object();
    for (const Field<Row>& f : fields_) {
      json value = f.write(row);
      if (!value.is_discarded()) out[std::string(f.column.name)] = std::move(value);
    }
    return out;
  }

  Row read(const json& j, const std::string& path) const {
    const json& object = read_object(j, path);
    Row row{};
    for (const Field<Row>& f : fields_) {
      if (f.column.derived) continue;
      const std::string key_path = member_path(path, f.column.name);
      auto it = object.find(f.column.name);
      if (it == object.end()) {
        if (f.column.optional) continue;
        fail(key_path, "missing");
      }
      f.read(row, *it, key_path);
    }
    if (after_read_) after_read_(row);
    return row;
  }

  std::vector<Column> columns() const {
    std::vector<Column> out;
    out.reserve(fields_.size());
    for (const Field<Row>& f : fields_) out.push_back(f.column);
    return out;
  }
  const std::vector<Field<Row>>& fields() const { return fields_; }

 private:
  std::vector<Field<Row>> fields_;
  std::function<void(Row&)> after_read_;
};

// Rows as a JSON array.
template <typename Row>
json rows_json(const Fields<Row>& fields, const std::vector<Row>& rows) {
  json out = json::array();
  for (const Row& r : rows) out.push_back(fields.write(r));
  return out;
}

// The column type a member of type M is written as.
template <typename M>
constexpr Type type_of() {
  if constexpr (std::is_same_v<M, bool>)
    return Type::boolean;
  else if constexpr (std::is_integral_v<M> && std::is_unsigned_v<M>)
    return Type::uint64;
  else if constexpr (std::is_integral_v<M>)
    return Type::int64;
  else if constexpr (std::is_floating_point_v<M>)
    return Type::real;
  else if constexpr (std::is_same_v<M, std::string>)
    return Type::text;
  else if constexpr (std::is_same_v<M, std::vector<std::string>>)
    return Type::text_list;
  else
    static_assert(sizeof(M) == 0, "no column type for this member type");
}

// A member written as itself.
template <typename Row, typename M>
Field<Row> field(std::string_view name, M Row::*member, std::string_view doc,
                 std::string_view unit = {}) {
  return {Column{.name = name, .type = type_of<M>(), .unit = unit, .doc = doc},
          [member](const Row& r) { return json(r.*member); },
          [member](Row& r, const json& v, const std::string& path) {
            if constexpr (std::is_same_v<M, bool>)
              r.*member = read_boolean(v, path);
            else if constexpr (std::is_integral_v<M>)
              r.*member = read_integer<M>(v, path);
            else if constexpr (std::is_floating_point_v<M>)
              r.*member = static_cast<M>(read_number(v, path));
            else if constexpr (std::is_same_v<M, std::string>)
              r.*member = read_string(v, path);
            else
              r.*member = read_strings(v, path);
          }};
}

// A 64-bit kernel or user address, written as a "0x..." string.
template <typename Row>
Field<Row> address_field(std::string_view name, uint64_t Row::*member, std::string_view doc) {
  return {Column{.name = name, .type = Type::text, .doc = doc},
          [member](const Row& r) { return json(hex_address(r.*member)); },
          [member](Row& r, const json& v, const std::string& path) {
            r.*member = read_address(v, path);
          }};
}

// A member left out of the JSON while it holds `fallback` (flags that are rarely set).
template <typename Row, typename M>
Field<Row> optional_field(std::string_view name, M Row::*member, M fallback, std::string_view doc) {
  Field<Row> f = field(name, member, doc);
  f.column.optional = true;
  f.column.fallback = fallback;
  f.write = [member, fallback](const Row& r) {
    return r.*member == fallback ? omitted() : json(r.*member);
  };
  return f;
}

// A member that may hold no value (JSON null): a match in kernel memory has no pid.
template <typename Row, typename M>
Field<Row> nullable_field(std::string_view name, std::optional<M> Row::*member,
                          std::string_view doc, std::string_view unit = {}) {
  Field<Row> f;
  f.column = Column{.name = name, .type = type_of<M>(), .unit = unit, .doc = doc, .nullable = true};
  f.write = [member](const Row& r) { return r.*member ? json(*(r.*member)) : json(nullptr); };
  f.read = [member](Row& r, const json& v, const std::string& path) {
    if (v.is_null()) {
      r.*member = std::nullopt;
      return;
    }
    if constexpr (std::is_same_v<M, std::string>)
      r.*member = read_string(v, path);
    else
      r.*member = read_integer<M>(v, path);
  };
  return f;
}

// An address that may be absent: "0x..." or null.
template <typename Row>
Field<Row> nullable_address_field(std::string_view name, std::optional<uint64_t> Row::*member,
                                  std::string_view doc) {
  return {Column{.name = name, .type = Type::text, .doc = doc, .nullable = true},
          [member](const Row& r) { return r.*member ? json(hex_address(*(r.*member))) : json(); },
          [member](Row& r, const json& v, const std::string& path) {
            if (v.is_null())
              r.*member = std::nullopt;
            else
              r.*member = read_address(v, path);
          }};
}

// Anything else: a column with its own conversions.
template <typename Row>
Field<Row> custom_field(Column column, std::function<json(const Row&)> write,
                        std::function<void(Row&, const json&, const std::string&)> read) {
  return {std::move(column), std::move(write), std::move(read)};
}

}  // namespace nfm::schema
