// Each command registers itself on the top-level app.
#pragma once

#include <CLI/CLI.hpp>

namespace nfm::app {

void register_ps(CLI::App& app);
void register_dmesg(CLI::App& app);
void register_lsmod(CLI::App& app);
void register_uname(CLI::App& app);
void register_uptime(CLI::App& app);
void register_meminfo(CLI::App& app);
void register_cpuinfo(CLI::App& app);
void register_frame(CLI::App& app);
void register_ifconfig(CLI::App& app);
void register_lsof(CLI::App& app);
void register_maps(CLI::App& app);
void register_netstat(CLI::App& app);
void register_profile(CLI::App& app);
void register_crawl(CLI::App& app);
void register_top(CLI::App& app);
void register_shell(CLI::App& app);
void register_schema(CLI::App& app);
void register_store(CLI::App& app);
void register_query(CLI::App& app);
void register_topology(CLI::App& app);
void register_check(CLI::App& app);
void register_scan(CLI::App& app);
void register_completion(CLI::App& app);

}  // namespace nfm::app
