// nfm: Near Field Monitoring. One binary, git-style subcommands.
#include <CLI/CLI.hpp>
#include <cstdio>

int main(int argc, char** argv) {
  CLI::App app{"nfm: agentless, out-of-band monitoring of Linux virtual machines.\n"
               "Reads a running guest's memory read-only from the host and reconstructs its kernel state."};
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
