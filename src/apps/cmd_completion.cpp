// nfm completion: a bash completion script made from the commands' own options, so it
// cannot fall behind them. The package installs it; by hand: source <(nfm completion).
// `--commands` lists the subcommands (name TAB description), for the man pages.
#include <fmt/core.h>

#include <string>
#include <vector>

#include "apps/commands.h"

namespace nfm::app {

namespace {

std::vector<const CLI::App*> subcommands_of(const CLI::App& app) {
  std::vector<const CLI::App*> out;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (!sub->get_name().empty()) out.push_back(sub);
  return out;
}

// Every flag spelling of `cmd`: --long and -s names.
std::string option_words(const CLI::App& cmd) {
  std::string words;
  for (const CLI::Option* op : cmd.get_options()) {
    for (const auto& l : op->get_lnames()) words += " --" + l;
    for (const auto& s : op->get_snames()) words += " -" + s;
  }
  return words;
}

std::string bash_completion(const CLI::App& root) {
  std::string names;
  std::string cases;
  for (const CLI::App* sub : subcommands_of(root)) {
    names += " " + sub->get_name();
    std::string words = option_words(*sub);
    for (const CLI::App* nested : subcommands_of(*sub)) words += " " + nested->get_name();
    cases += fmt::format("    {}) words=\"{}\" ;;\n", sub->get_name(), words.substr(1));
  }
  return fmt::format(
      R"SH(# bash completion for nfm (made by `nfm completion` from the commands' own options)
_nfm() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} sub="" i words
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${{COMP_WORDS[i]}}" in -*) ;; *) sub=${{COMP_WORDS[i]}}; break ;; esac
  done
  case "$sub" in
    "") COMPREPLY=($(compgen -W "{} --help" -- "$cur")); return ;;
{}    *) words="" ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
  else
    # TARGETs and paths: files, and the QEMU guests running here as qemu:PID.
    COMPREPLY=($(compgen -f -- "$cur") $(compgen -W "$(pgrep -d ' ' qemu-system 2>/dev/null | sed 's/[0-9]\+/qemu:&/g')" -- "$cur"))
  fi
}}
complete -o filenames -F _nfm nfm
)SH",
      names.substr(1), cases);
}

}  // namespace

void register_completion(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "completion", "Print a bash completion script for nfm (source <(nfm completion))");
  auto list = std::make_shared<bool>(false);
  cmd->add_flag("--commands", *list,
                "list the subcommands instead (name, tab, the description's first line)");
  cmd->callback([cmd, list] {
    const CLI::App& root = *cmd->get_parent();
    if (!*list) {
      fmt::print("{}", bash_completion(root));
      return;
    }
    for (const CLI::App* sub : subcommands_of(root)) {
      const std::string& d = sub->get_description();
      fmt::print("{}\t{}\n", sub->get_name(), d.substr(0, d.find('\n')));
    }
  });
}

}  // namespace nfm::app
