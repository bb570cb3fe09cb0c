#include "apps/config_file.h"

#include <fmt/core.h>

#include <algorithm>

namespace nfm::app {

namespace {

CLI::Option* find_option(CLI::App& cmd, const std::string& key) {
  if (key.empty()) return nullptr;
  if (CLI::Option* op = cmd.get_option_no_throw("--" + key)) return op;
  if (key.size() == 1)
    if (CLI::Option* op = cmd.get_option_no_throw("-" + key)) return op;
  return cmd.get_option_no_throw(key);  // a positional, by its name
}

// The file's key for an option: its first long name, else its positional name.
std::string key_of(const CLI::Option& op) {
  if (!op.get_lnames().empty()) return op.get_lnames().front();
  return op.get_name(true, false);
}

// Quoted as CLI11 reads it back: it does not unescape, so nothing is escaped.
std::string toml_string(const std::string& s) {
  return "\"" + s + "\"";
}

}  // namespace

Result<void> apply_config_file(CLI::App& cmd, const std::string& path) {
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const CLI::FileError&) {
    return make_error(Errc::not_found, fmt::format("--config {}: cannot read the file", path));
  } catch (const CLI::Error& e) {
    return make_error(Errc::bad_format, fmt::format("--config {}: {}", path, e.what()));
  }
  // A key may come back (CLI11 already joins consecutive lines): a repeatable option
  // takes every value in order, any other option only one.
  std::vector<CLI::ConfigItem> keys;
  for (const auto& item : items) {
    if (item.name == "++" || item.name == "--" || !item.parents.empty())
      return make_error(Errc::bad_format,
                        fmt::format("--config {}: sections are not used (\"{}\"): write every "
                                    "key at the top",
                                    path, item.fullname()));
    auto same = std::find_if(keys.begin(), keys.end(),
                             [&](const CLI::ConfigItem& k) { return k.name == item.name; });
    if (same == keys.end())
      keys.push_back(item);
    else
      same->inputs.insert(same->inputs.end(), item.inputs.begin(), item.inputs.end());
  }
  for (const auto& item : keys) {
    CLI::Option* op = find_option(cmd, item.name);
    if (op == nullptr)
      return make_error(Errc::invalid_argument,
                        fmt::format("--config {}: \"{}\" is not an option of nfm {} (see nfm {} "
                                    "--help)",
                                    path, item.name, cmd.get_name(), cmd.get_name()));
    if (!op->get_configurable())
      return make_error(Errc::invalid_argument,
                        fmt::format("--config {}: \"{}\" can only be given on the command line",
                                    path, item.name));
    if (op->get_expected_max() <= 1 && item.inputs.size() > 1)
      return make_error(Errc::invalid_argument,
                        fmt::format("--config {}: \"{}\" is set more than once", path, item.name));
    if (op->count() > 0) continue;  // the command line wins
    try {
      if (op->get_expected_min() == 0) {  // a flag: true/false
        op->add_result(op->get_flag_value(item.name, CLI::ConfigTOML().to_flag(item)));
      } else {
        op->add_result(item.inputs);
      }
      op->run_callback();
    } catch (const CLI::Error& e) {
      return make_error(Errc::invalid_argument,
                        fmt::format("--config {}: {}: {}", path, item.name, e.what()));
    }
  }
  return {};
}

std::string effective_config(const CLI::App& cmd) {
  std::string out = fmt::format("# nfm {}: the effective configuration (nfm {} --print-config)\n",
                                cmd.get_name(), cmd.get_name());
  for (const CLI::Option* op : cmd.get_options()) {
    if (!op->get_configurable() || op == cmd.get_help_ptr()) continue;
    const std::string key = key_of(*op);
    out += fmt::format("\n# {}\n", op->get_description());
    std::vector<std::string> values = op->results();
    if (values.empty() && !op->get_default_str().empty()) values = {op->get_default_str()};
    const bool repeatable = op->get_expected_max() > 1;
    if (op->get_expected_min() == 0) {  // a flag
      // "false" from a file is a result too: the value decides, not the count.
      bool on = false;
      if (!op->results().empty()) {
        try {
          on = op->as<bool>();
        } catch (const CLI::Error&) {
          on = true;
        }
      }
      out += fmt::format("{} = {}\n", key, on ? "true" : "false");
    } else if (values.empty()) {
      out += repeatable ? fmt::format("# {} = []\n", key) : fmt::format("# {} =\n", key);
    } else if (repeatable) {
      std::string list;
      for (const auto& v : values) list += (list.empty() ? "" : ", ") + toml_string(v);
      out += fmt::format("{} = [{}]\n", key, list);
    } else {
      out += fmt::format("{} = {}\n", key, toml_string(values.back()));
    }
  }
  return out;
}

}  // namespace nfm::app
