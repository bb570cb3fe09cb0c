// nfm schema: every feature's section of a frame, its keys, types and meaning,
// from the features' own declarations (the part of docs/frame-schema.md that is
// generated).
#include <fmt/core.h>

#include "apps/commands.h"
#include "frame/schema_doc.h"

namespace nfm::app {

void register_schema(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "schema", "Print every frame section's keys, types, units and meaning (Markdown)");
  cmd->callback([] { fmt::print("{}", frame_sections_markdown()); });
}

}  // namespace nfm::app
