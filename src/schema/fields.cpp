#include "schema/fields.h"

#include <fmt/core.h>

#include <charconv>

namespace nfm::schema {

std::string_view type_name(Type type) {
  switch (type) {
    case Type::int64: return "integer";
    case Type::uint64: return "unsigned integer";
    case Type::real: return "number";
    case Type::text: return "string";
    case Type::boolean: return "boolean";
    case Type::text_list: return "array of strings";
  }
  return "?";
}

void fail(const std::string& path, const std::string& what) {
  throw ParseError{path.empty() ? what : path + ": " + what};
}

std::string member_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

namespace {

void require_integer(const json& v, const std::string& path) {
  if (!v.is_number_integer())
    fail(path,
         fmt::format("expected an integer, got {}", v.is_number() ? "a fraction" : v.type_name()));
}

}  // namespace

int64_t read_int64(const json& v, const std::string& path, int64_t min, int64_t max) {
  require_integer(v, path);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(max)) fail(path, fmt::format("{} is out of range", u));
    return static_cast<int64_t>(u);
  }
  const int64_t s = v.get<int64_t>();
  if (s < min || s > max) fail(path, fmt::format("{} is out of range", s));
  return s;
}

uint64_t read_uint64(const json& v, const std::string& path, uint64_t max) {
  require_integer(v, path);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > max) fail(path, fmt::format("{} is out of range", u));
    return u;
  }
  const int64_t s = v.get<int64_t>();
  if (s < 0) fail(path, fmt::format("{} is negative", s));
  if (static_cast<uint64_t>(s) > max) fail(path, fmt::format("{} is out of range", s));
  return static_cast<uint64_t>(s);
}

double read_number(const json& v, const std::string& path) {
  if (!v.is_number()) fail(path, fmt::format("expected a number, got {}", v.type_name()));
  return v.get<double>();
}

bool read_boolean(const json& v, const std::string& path) {
  if (!v.is_boolean()) fail(path, fmt::format("expected a boolean, got {}", v.type_name()));
  return v.get<bool>();
}

std::string read_string(const json& v, const std::string& path) {
  if (!v.is_string()) fail(path, fmt::format("expected a string, got {}", v.type_name()));
  return v.get<std::string>();
}

std::vector<std::string> read_strings(const json& v, const std::string& path) {
  if (!v.is_array()) fail(path, fmt::format("expected an array, got {}", v.type_name()));
  std::vector<std::string> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out.push_back(read_string(v[i], fmt::format("{}[{}]", path, i)));
  return out;
}

uint64_t parse_number(std::string_view text, const std::string& path, std::string_view prefix,
                      int base) {
  std::string_view digits = text;
  if (!prefix.empty()) {
    if (digits.substr(0, prefix.size()) != prefix)
      fail(path, fmt::format("'{}' does not start with {}", text, prefix));
    digits.remove_prefix(prefix.size());
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size())
    fail(path, fmt::format("'{}' is not a base-{} number", text, base));
  return value;
}

std::string hex_address(uint64_t address) {
  return fmt::format("{:#x}", address);
}

uint64_t read_address(const json& v, const std::string& path) {
  return parse_number(read_string(v, path), path, "0x", 16);
}

uint32_t parse_device_number(const std::string& text, const std::string& path) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) fail(path, fmt::format("'{}' is not MAJOR:MINOR", text));
  const uint64_t major = parse_number(text.substr(0, colon), path, "", 16);
  const uint64_t minor = parse_number(text.substr(colon + 1), path, "", 16);
  if (major > 0xfff || minor > 0xfffff) fail(path, fmt::format("'{}' is out of range", text));
  return static_cast<uint32_t>(major << 20 | minor);
}

const json& read_object(const json& v, const std::string& path) {
  if (!v.is_object()) fail(path, fmt::format("expected an object, got {}", v.type_name()));
  return v;
}

}  // namespace nfm::schema
