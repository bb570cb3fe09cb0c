#include "frame/schema_doc.h"

#include <fmt/core.h>

#include "features/feature.h"

namespace nfm {

namespace {

// Markdown table cells cannot hold '|'.
std::string cell(std::string_view text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

}  // namespace

std::string frame_sections_markdown() {
  std::string out;
  for (Feature feature : all_features()) {
    const FeatureInfo& f = feature.info();
    std::string aliases;
    for (std::string_view a : f.aliases) aliases += fmt::format(", `nfm {} --json`", a);
    out += fmt::format("### `{}`\n\n{} ({}{}).\n\n", f.name, cell(f.doc),
                       f.single_row ? "one object" : "an array of rows", aliases);
    out += "| key | type | unit | |\n|---|---|---|---|\n";
    for (const schema::Column& c : f.columns) {
      std::string type(schema::type_name(c.type));
      if (c.nullable) type += " or null";
      std::string doc = cell(c.doc);
      if (c.optional) doc += fmt::format(" (left out when {})", c.fallback.dump());
      if (c.derived) doc += " (derived: not read back)";
      out += fmt::format("| `{}` | {} | {} | {} |\n", c.name, type, c.unit, doc);
    }
    out += "\n";
  }
  return out;
}

}  // namespace nfm
