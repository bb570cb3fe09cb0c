// The text (and --json) every guest command prints, as functions of the rows, so that
// `nfm CMD TARGET` and `nfm shell`'s CMD (live or on a snapshot) print the same bytes.
// Each formatter appends the normal output to `out` and the warnings
// ("nfm: warning: ...") to `err`.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "features/cpuinfo/rows.h"
#include "features/integrity/rows.h"
#include "features/interfaces/rows.h"
#include "features/kmsg/rows.h"
#include "features/meminfo/rows.h"
#include "features/memory_maps/rows.h"
#include "features/modules/rows.h"
#include "features/open_files/rows.h"
#include "features/processes/rows.h"
#include "features/sockets/rows.h"
#include "features/uname/rows.h"
#include "features/uptime/rows.h"

namespace nfm::app {

inline constexpr uint64_t kNsPerSec = 1'000'000'000;

// Appends formatted text to `s`.
template <typename... Args>
void put(std::string& s, fmt::format_string<Args...> f, Args&&... args) {
  fmt::format_to(std::back_inserter(s), f, std::forward<Args>(args)...);
}

struct Output {
  std::string out;  // stdout
  std::string err;  // stderr: warnings
};

struct PsFormat {
  bool json = false;
  std::optional<int32_t> pid;  // -p: only this process (or thread, with -T)
  int64_t boot_time = 0;       // the guest's boot wall clock (UptimeInfo::boot_time), 0 unknown
  size_t max_cmdline = ProcessOptions{}.max_cmdline;
};
void format_ps(Output& o, const ProcessList& list, const PsFormat& f);

void format_lsmod(Output& o, const ModuleList& list, bool json);
// nfm check: every check's status and cost, then the findings. --json:
// {"findings": [...], "checks": [...]}. A report read back from a store has no
// checks (only the findings are a frame section).
schema::json check_json(const IntegrityReport& report);
void format_check(Output& o, const IntegrityReport& report, bool json);
void format_dmesg(Output& o, const KmsgLog& log, bool json);
void format_uname(Output& o, const UnameInfo& u, bool json);
void format_uptime(Output& o, const UptimeInfo& u, bool json);
void format_meminfo(Output& o, const MemInfo& m, bool json);
void format_cpuinfo(Output& o, const std::vector<CpuRow>& cpus, bool json);
void format_ifconfig(Output& o, const InterfaceList& list, bool json);

// Rows of other processes are left out when `pid` is set.
void format_lsof(Output& o, const OpenFileList& list, std::optional<int32_t> pid, bool json);
void format_maps(Output& o, const MemoryMapList& list, std::optional<int32_t> pid, bool pages,
                 bool json);

// `filter`: which protocols to show (and to warn about); rows of others are left out.
struct NetstatFilter {
  bool tcp = true, udp = true, unix_sockets = true;
};
void format_netstat(Output& o, const SocketList& list, const NetstatFilter& filter, bool json);

// Writes o.out to stdout and o.err to stderr.
void print(const Output& o);

}  // namespace nfm::app
