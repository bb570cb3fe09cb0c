// The JSON form of frames and of each feature's rows. Commands print exactly these
// (`nfm ps --json` is the `processes` section of `nfm frame`), so a key means the
// same thing everywhere. Schema: docs/frame-schema.md.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "frame/frame.h"

namespace nfm {

// Kernel addresses as "0x..." strings: JSON numbers lose precision above 2^53.
std::string hex_address(uint64_t address);

nlohmann::json uname_json(const UnameInfo& u);
nlohmann::json uptime_json(const UptimeInfo& u);
nlohmann::json cpuinfo_json(const std::vector<CpuRow>& cpus);
nlohmann::json meminfo_json(const MemInfo& m);
nlohmann::json processes_json(const std::vector<ProcessRow>& rows);
nlohmann::json modules_json(const std::vector<ModuleRow>& rows);
nlohmann::json kmsg_json(const std::vector<KmsgRecord>& records);
nlohmann::json interfaces_json(const std::vector<InterfaceRow>& rows);
nlohmann::json open_files_json(const std::vector<OpenFileRow>& rows);
// `pages`: include each mapping's present pages (MemoryMapOptions::pages).
nlohmann::json memory_maps_json(const std::vector<MemoryMapRow>& rows, bool pages = false);
nlohmann::json sockets_json(const std::vector<SocketRow>& rows);

nlohmann::json frame_json(const Frame& frame);

// The inverse of frame_json: stores read frames back typed. Unknown keys are
// ignored (newer writers); a missing or mistyped required key is an error naming it.
// frame_from_json(frame_json(f)) reproduces f's JSON exactly.
Result<Frame> frame_from_json(const nlohmann::json& j);

// Guest text (comm, log lines) is bytes, not always UTF-8: dump() replaces what
// JSON cannot carry instead of throwing. indent < 0 = one line.
std::string dump_json(const nlohmann::json& j, int indent = 1);

}  // namespace nfm
