// A command's options from a file (`nfm crawl --config /etc/nfm/crawl.conf`), and the
// effective options written back as such a file (`--print-config`).
//
// The format is TOML's flat subset as CLI11 reads it: `key = value`, `key = ["a", "b"]`
// for repeatable options, `true`/`false` for flags, `#` comments. A key is an option's
// long name without the dashes (`emit`, `interval`, `max-crawl-bytes`) or `TARGET`.
// Options given on the command line win over the file. CLI11's reader takes values as
// written: a `#` starts a comment even inside quotes, and `\"` is not unescaped.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "util/result.h"

namespace nfm::app {

// Sets every option of `cmd` that the file names and the command line did not; errors
// name the file and the key (unknown option, a value its check refuses, a single-value
// option set twice, no such file). A repeatable option's lines add up.
Result<void> apply_config_file(CLI::App& cmd, const std::string& path);

// Every configurable option of `cmd` as a config file: its value (given or default),
// commented with its description; options with neither are written commented out.
std::string effective_config(const CLI::App& cmd);

}  // namespace nfm::app
